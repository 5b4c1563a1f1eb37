"""Manifests: validation naming the field, canonical bytes, round trips, diffs."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from _registry_helpers import NAMES, TRAIN, make_manifest
from hypothesis import given
from hypothesis import strategies as st

from edgeloop.registry import (
    DataFingerprint,
    InputSchema,
    Manifest,
    ManifestError,
    QuantisationMeasurement,
    artifact_id,
    data_hash,
    diff,
)


def test_artifact_ids_are_content_addresses() -> None:
    assert artifact_id(b"abc") == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert artifact_id(b"abc") != artifact_id(b"abd")


def test_data_hash_is_the_training_fingerprint() -> None:
    from edgeloop.learn.train import fingerprint

    assert data_hash(TRAIN) == fingerprint(TRAIN)
    assert data_hash(TRAIN.astype(np.float64)) == fingerprint(TRAIN)


def test_canonical_bytes_are_deterministic_sorted_and_round_trip() -> None:
    m = make_manifest("v1")
    data = m.canonical_bytes()
    assert data == make_manifest("v1").canonical_bytes()
    assert b" " not in data.replace(b"ONNX model", b"")
    obj = json.loads(data)
    assert list(obj) == sorted(obj)
    back = Manifest.from_bytes(data)
    assert back == m and back.canonical_bytes() == data
    assert back.training_data.source_nodes == ("gw1", "gw2")


def test_non_canonical_bytes_are_refused() -> None:
    data = make_manifest("v1").canonical_bytes()
    pretty = json.dumps(json.loads(data), indent=1).encode()
    with pytest.raises(ManifestError, match="bytes are not canonical"):
        Manifest.from_bytes(pretty)
    with pytest.raises(ManifestError, match="not UTF-8 JSON"):
        Manifest.from_bytes(b"\xff{")


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.floats(allow_nan=False, allow_infinity=False),
        max_size=5,
    ),
    st.text(max_size=20),
)
def test_any_metrics_and_creator_round_trip_exactly(
    metrics: dict[str, float], creator: str
) -> None:
    m = make_manifest("v1", metrics=metrics, creator=creator, drift_reference=None)
    back = Manifest.from_bytes(m.canonical_bytes())
    assert back == m and dict(back.metrics) == metrics


def test_quantisation_measurement_round_trips() -> None:
    q = QuantisationMeasurement("fp32", 40_000, 12_000, 3.1, 2.9, "f1", 0.95, 0.91)
    m = make_manifest("v1", quantisation=q)
    assert Manifest.from_bytes(m.canonical_bytes()).quantisation == q


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"parent": "bad name"}, "parent: 'bad name' is not a valid name"),
        ({"artifact": "md5:abc"}, "artifact: expected 'sha256:'"),
        ({"size": -1}, r"size: expected an int >= 0"),
        ({"metrics": {"f1": float("nan")}}, r"metrics\.f1: expected a finite number"),
        ({"parent": "v1"}, "cannot be its own parent"),
        ({"kind": ""}, "kind: must be a non-empty string"),
        ({"schema": "edgeloop.manifest/9"}, "schema: 'edgeloop.manifest/9' is not understood"),
    ],
)
def test_invalid_fields_are_named(over: dict[str, Any], match: str) -> None:
    with pytest.raises(ManifestError, match=match):
        make_manifest("v1", **over)


def test_invalid_nested_fields_are_named() -> None:
    with pytest.raises(ManifestError, match=r"input_schema\.feature_names: expected distinct"):
        InputSchema(("a", "a"), "factory")
    with pytest.raises(ManifestError, match="end_ns 1 is before start_ns 5"):
        DataFingerprint("0" * 64, 5, 1, (), 3)
    with pytest.raises(ManifestError, match=r"training_data\.sha256: expected 64"):
        DataFingerprint("xyz", 0, 1, (), 3)
    with pytest.raises(ManifestError, match=r"drift_reference\.names: \['x'\] differ"):
        from edgeloop.drift import Sketch

        make_manifest("v1", drift_reference=Sketch.empty(["x"], [[0.0, 1.0]]))


def test_from_dict_names_source_and_field() -> None:
    d = make_manifest("v1").to_dict()
    del d["training_data"]["end_ns"]
    with pytest.raises(ManifestError, match=r"m\.json: training_data\.end_ns: missing"):
        Manifest.from_dict(d, "m.json")
    d = make_manifest("v1").to_dict()
    d["colour"] = "blue"
    with pytest.raises(ManifestError, match=r"unknown fields \['colour'\]"):
        Manifest.from_dict(d)
    d = make_manifest("v1").to_dict()
    d["drift_reference"]["edges"] = [[0.0]]
    with pytest.raises(ManifestError, match=r"drift_reference\.edges"):
        Manifest.from_dict(d)


def test_diff_lists_changed_fields_only() -> None:
    a = make_manifest("v1")
    train2 = TRAIN[:400]
    b = make_manifest(
        "v2",
        parent="v1",
        metrics={"recall": 0.98, "false_alarms_per_hour": 0.4, "f1": 0.9},
        training_data=DataFingerprint.of(train2, 0, 10, ["gw3"]),
    )
    changes = {c.path: (c.before, c.after) for c in diff(a, b)}
    assert changes["metrics.recall"] == (0.97, 0.98)
    assert changes["metrics.f1"] == (None, 0.9)
    assert changes["parent"] == (None, "v1")
    assert changes["training_data.source_nodes"] == (["gw1", "gw2"], ["gw3"])
    assert changes["training_data.n_rows"] == (500, 400)
    assert "metrics.false_alarms_per_hour" not in changes
    assert "input_schema.feature_names" not in changes
    assert "drift_reference" not in changes  # same layout and rows
    assert diff(a, a) == ()
    assert [c.path for c in diff(a, b)] == sorted(changes)


def test_version_names_are_checked() -> None:
    with pytest.raises(ManifestError, match="version: 'a/b' is not a valid name"):
        make_manifest("a/b")


def test_input_schema_keeps_feature_order() -> None:
    m = make_manifest("v1")
    assert m.input_schema.feature_names == NAMES

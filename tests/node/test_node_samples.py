"""Curated normal windows on the node: the collector keeps a bounded, seeded, uniform
sample of the acting model's rows that are not clearly anomalous (not of
machines in an incident), capped in bytes; its documents decode with every field
checked, and bad documents name the field."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from edgeloop.errors import RejectReason, TelemetryError
from edgeloop.node.samples import (
    KIND_SAMPLE,
    SAMPLE_SCHEMA,
    SampleCollector,
    encode_sample,
    sample_rows,
)
from edgeloop.outbox.base import Priority
from edgeloop.pipeline.types import Features, Scores

NAMES = ("rms", "kurtosis", "peak")
SEC = 1_000_000_000


def block(values: np.ndarray, sensors: np.ndarray, score: np.ndarray, group: str = "vib") -> Any:
    n = values.shape[0]
    t = np.arange(n, dtype=np.int64)
    feats = Features(group, NAMES, sensors.astype(np.uint32), t, t + 1, values.astype(np.float32))
    sc = Scores(
        score.astype(np.float32), 0.8, np.ones(n, np.float32), np.full(n, -1, np.int32), "c"
    )
    return feats, sc


def collector(busy: list[bool] | None = None, **kw: Any) -> SampleCollector:
    state = np.array(busy or [False, False], dtype=bool)
    c = SampleCollector("gw1", lambda: state, np.array([0, 1]), **kw)
    c.begin("v1", "vib", NAMES, 0)
    return c


def test_keeps_a_bounded_uniform_sample_of_clearly_normal_rows() -> None:
    c = collector(max_rows=200, seed=3)
    # Row i carries i in every column: which rows were kept is visible in the sample.
    for start in range(0, 10_000, 500):
        i = np.arange(start, start + 500, dtype=np.float32)
        c(*block(np.column_stack([i, i, i]), np.zeros(500), np.full(500, 0.1)))
    entry = c.take(60 * SEC)
    assert entry is not None and entry.kind == KIND_SAMPLE
    assert entry.priority == Priority.SUMMARY
    doc = json.loads(entry.payload)
    x = sample_rows(doc)
    assert x.shape == (200, 3) and doc["eligible"] == 10_000 and doc["windows"] == 10_000
    kept = np.sort(x[:, 0])
    assert len(np.unique(kept)) == 200  # each row once
    # Uniform over the whole period, not the first rows: each quarter gets its share.
    per_quarter = np.histogram(kept, bins=4, range=(0, 10_000))[0]
    assert per_quarter.min() > 30, per_quarter
    # Seeded: the same input gives the same sample; another seed another one.
    again, other = collector(max_rows=200, seed=3), collector(max_rows=200, seed=4)
    for start in range(0, 10_000, 500):
        i = np.arange(start, start + 500, dtype=np.float32)
        again(*block(np.column_stack([i, i, i]), np.zeros(500), np.full(500, 0.1)))
        other(*block(np.column_stack([i, i, i]), np.zeros(500), np.full(500, 0.1)))
    a, b = again.take(60 * SEC), other.take(60 * SEC)
    assert a is not None and b is not None
    assert a.payload == entry.payload and b.payload != entry.payload


def test_leaves_out_alerting_rows_incidents_and_other_groups() -> None:
    c = collector(busy=[False, True], max_rows=1000, max_score_ratio=0.5)
    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    # threshold 0.8: 0.39 is clearly normal, 0.41 is not (ratio 0.5), 0.9 alerts.
    c(*block(values, np.array([0, 0, 0, 1]), np.array([0.39, 0.41, 0.9, 0.1])))
    c(*block(values, np.zeros(4), np.zeros(4), group="process"))
    entry = c.take(SEC)
    assert entry is not None
    doc = json.loads(entry.payload)
    np.testing.assert_array_equal(sample_rows(doc), values[:1])
    assert doc["excluded"] == {"score": 2, "incident": 1}
    assert doc["windows"] == 4 and doc["version"] == "v1" and doc["group"] == "vib"
    # A period without a kept row sends nothing; nothing before a model acts.
    assert c.take(2 * SEC) is None
    idle = SampleCollector("gw1", lambda: np.zeros(2, bool), np.array([0, 1]))
    idle(*block(values, np.zeros(4), np.zeros(4)))
    assert idle.take(SEC) is None


def test_by_default_the_normal_tail_stays_in_and_clear_anomalies_go() -> None:
    # threshold 0.5: a calibrated model scores 0.5 at its 99.9 % quantile distance and
    # 0.75 at three times it. Rows just above the threshold are the normal tail, which
    # the next model's calibration needs; 0.8 is a clear anomaly.
    c = collector(max_rows=1000)
    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    feats, sc = block(values, np.zeros(4), np.array([0.2, 0.55, 0.7, 0.8]))
    sc = Scores(sc.score, 0.5, sc.confidence, sc.top_feature, sc.detector)
    c(feats, sc)
    entry = c.take(SEC)
    assert entry is not None
    doc = json.loads(entry.payload)
    np.testing.assert_array_equal(sample_rows(doc), values[:3])
    assert doc["excluded"] == {"score": 1, "incident": 0}
    with pytest.raises(ValueError, match="max_score_ratio"):
        collector(max_score_ratio=0.0)


def test_document_stays_under_its_byte_cap() -> None:
    c = collector(max_rows=100_000, max_bytes=8 * 1024)
    rng = np.random.default_rng(0)
    c(*block(rng.normal(size=(5000, 3)) * 1e6, np.zeros(5000), np.zeros(5000)))
    entry = c.take(SEC)
    assert entry is not None
    assert len(entry.payload) <= 8 * 1024
    assert sample_rows(json.loads(entry.payload)).shape[0] > 400  # near the cap, not tiny


def _doc(**change: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        encode_sample(
            node="gw1",
            version="v1",
            group="vib",
            names=NAMES,
            period_start_ns=0,
            period_end_ns=SEC,
            rows=np.ones((2, 3), np.float32),
        )
    )
    doc.update(change)
    return doc


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"feature_names": ["rms", "rms", "peak"]}, "sample.feature_names", "malformed"),
        ({"feature_names": []}, "sample.feature_names", "malformed"),
        ({"shape": [2, 4]}, "sample.shape", "malformed"),
        ({"shape": [3, 3]}, "sample.data", "malformed"),
        ({"data": "***"}, "sample.data", "malformed"),
        ({"dtype": "<f8"}, "sample.dtype", "malformed"),
        ({"version": ""}, "sample.version", "malformed"),
        ({"period_end_ns": -1}, "sample.period_end_ns", "malformed"),
        (
            {"data": base64.b64encode(np.array([1, 2, np.nan, 4, 5, 6], "<f4").tobytes()).decode()},
            "sample.data",
            "non_finite",
        ),
    ],
)
def test_bad_documents_name_the_field(change: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(TelemetryError) as info:
        sample_rows(_doc(**change))
    assert info.value.field == field and info.value.reason == RejectReason(reason)
    assert _doc()["schema"] == SAMPLE_SCHEMA and sample_rows(_doc()).shape == (2, 3)

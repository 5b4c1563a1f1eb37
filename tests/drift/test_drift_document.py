"""The ``sketch`` document: round trip through bytes, and every bad field named."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from edgeloop.drift import Sketch, SketchError, quantile_edges
from edgeloop.drift.document import (
    SKETCH_SCHEMA,
    decode_sketch_document,
    encode_sketch_document,
    score_sketch,
    sketch_document,
)


def _ref_and_period() -> tuple[Sketch, Sketch, Sketch]:
    rng = np.random.default_rng(4)
    train = rng.normal(size=(1000, 3))
    ref = Sketch.build(("a", "b", "c"), quantile_edges(train, 8), train)
    cur = Sketch.empty(ref.names, ref.edges).update(
        np.vstack([rng.normal(0.5, 2.0, size=(300, 3)), [[np.nan, np.inf, 0.0]]])
    )
    scores = score_sketch().update(rng.uniform(0, 1.2, size=(301, 1)))
    return ref, cur, scores


def _doc() -> dict[str, Any]:
    _, cur, scores = _ref_and_period()
    return sketch_document("gw1", "v3", "vibration", 10, 20, cur, scores)


def test_a_document_round_trips_exactly_through_its_bytes() -> None:
    ref, cur, scores = _ref_and_period()
    data = encode_sketch_document(sketch_document("gw1", "v3", "vibration", 10, 20, cur, scores))
    doc = decode_sketch_document(data)
    assert (doc.node, doc.version, doc.group) == ("gw1", "v3", "vibration")
    assert (doc.period_start_ns, doc.period_end_ns) == (10, 20)
    assert doc.features(ref) == cur  # counts, sums, sums of squares, non-finite: exact
    assert doc.scores == scores
    assert int(cur.nonfinite.sum()) == 2 and int(scores.counts[0, -1]) > 0
    # Compact: counts are int lists, no edges travel.
    raw = json.loads(data)
    assert raw["schema"] == SKETCH_SCHEMA and "edges" not in raw
    assert all(isinstance(c, int) for row in raw["counts"] for c in row)
    # Without scores it still round-trips.
    bare = decode_sketch_document(
        encode_sketch_document(sketch_document("gw1", "v3", "g", 0, 1, cur))
    )
    assert bare.scores is None and bare.features(ref) == cur


def test_a_sketch_on_other_edges_or_columns_is_refused_against_the_reference() -> None:
    ref, _, _ = _ref_and_period()
    other = Sketch.empty(ref.names, ref.edges + 0.01).update(np.zeros((5, 3)))
    doc = decode_sketch_document(
        encode_sketch_document(sketch_document("gw1", "v3", "g", 0, 1, other))
    )
    with pytest.raises(SketchError, match=r"^sketch\.layout:"):
        doc.features(ref)
    renamed = Sketch.empty(("a", "b", "x"), ref.edges)
    doc = decode_sketch_document(
        encode_sketch_document(sketch_document("gw1", "v3", "g", 0, 1, renamed))
    )
    with pytest.raises(SketchError, match=r"^sketch\.names:"):
        doc.features(ref)
    coarse = Sketch.empty(ref.names, ref.edges[:, ::2])
    doc = decode_sketch_document(
        encode_sketch_document(sketch_document("gw1", "v3", "g", 0, 1, coarse))
    )
    with pytest.raises(SketchError, match=r"^sketch\.counts:"):
        doc.features(ref)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"schema": "other/1"}, "sketch.schema"),
        ({"node": ""}, "sketch.node"),
        ({"version": 3}, "sketch.version"),
        ({"period_end_ns": -1}, "sketch.period_end_ns"),
        ({"period_start_ns": 30}, "sketch.period_end_ns"),
        ({"period_start_ns": True}, "sketch.period_start_ns"),
        ({"names": ["a", "a", "c"]}, "sketch.names"),
        ({"counts": [[1, 2, 3]]}, "sketch.counts"),
        ({"counts": [[1, -2] + [0] * 8] * 3}, "sketch.counts"),
        ({"counts": [[1.5] + [0] * 9] * 3}, "sketch.counts"),
        ({"counts": [[0] * 10, [0] * 10, [0] * 9]}, "sketch.counts"),
        ({"sums": [[0.0] * 9] * 3}, "sketch.sums"),
        ({"sumsq": [1.0, "x", 2.0]}, "sketch.sumsq"),
        ({"nonfinite": [0, 0]}, "sketch.nonfinite"),
        ({"scores": [1]}, "sketch.scores"),
        (
            {"scores": {"counts": [0] * 5, "sums": [0.0] * 22, "sumsq": 0, "nonfinite": 0}},
            "sketch.scores.counts",
        ),
        (
            {"scores": {"counts": [0] * 22, "sums": [0.0] * 22, "sumsq": None, "nonfinite": 0}},
            "sketch.scores.sumsq",
        ),
    ],
)
def test_each_bad_field_is_named(change: dict[str, Any], field: str) -> None:
    doc = {**_doc(), **change}
    with pytest.raises(SketchError) as err:
        decode_sketch_document(json.dumps(doc).encode())
    assert str(err.value).split(":")[0] == field, err.value


def test_bytes_that_are_not_a_json_object_are_named() -> None:
    for payload in (b"\xff", b"[1]", b"{"):
        with pytest.raises(SketchError, match=r"^sketch\.payload:"):
            decode_sketch_document(payload)

"""The node's drift sketch collector: the acting model's features in its reference's
column order and edges, per period, the scores beside them; nothing for other groups or
a model without a reference; the reference read from the verified manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeloop.drift import Sketch, quantile_edges
from edgeloop.drift.document import KIND_SKETCH, decode_sketch_document, score_sketch
from edgeloop.node import drift_sketches
from edgeloop.node.drift_sketches import SketchCollector, read_reference
from edgeloop.outbox.base import Priority
from edgeloop.pipeline.types import Features, Scores

GROUP_NAMES = ("a", "b", "c")  # the pipeline's column order


def block(x: np.ndarray, group: str = "vib") -> tuple[Features, Scores]:
    n = len(x)
    z = np.zeros(n, np.int64)
    feats = Features(group, GROUP_NAMES, np.zeros(n, np.uint32), z, z, x.astype(np.float32))
    score = np.linspace(0, 1, n, dtype=np.float32)
    return feats, Scores(score, 0.5, np.ones(n, np.float32), np.zeros(n, np.int32), "m")


def reference() -> Sketch:
    rng = np.random.default_rng(1)
    train = rng.normal(size=(500, 2))
    return Sketch.build(("c", "a"), quantile_edges(train, 6), train)  # the model's order


def test_a_period_is_sketched_in_the_reference_order_and_sent_once() -> None:
    ref = reference()
    col = SketchCollector("gw1")
    assert col.take(5) is None  # no model yet
    assert col.begin("v1", "vib", ref, 100) is None
    rng = np.random.default_rng(2)
    blocks = [rng.normal(size=(n, 3)) for n in (7, 300, 1)]
    for x in blocks:
        col(*block(x))
    col(*block(rng.normal(size=(50, 3)), group="process"))  # another group: ignored
    entry = col.take(900)
    assert entry is not None and entry.kind == KIND_SKETCH and entry.priority is Priority.SUMMARY
    doc = decode_sketch_document(entry.payload)
    assert (doc.node, doc.version, doc.group) == ("gw1", "v1", "vib")
    assert (doc.period_start_ns, doc.period_end_ns) == (100, 900)
    x = np.concatenate(blocks).astype(np.float32)
    assert doc.features(ref) == Sketch.empty(ref.names, ref.edges).update(x[:, [2, 0]])
    assert doc.scores is not None and int(doc.scores.total[0]) == 308
    assert col.take(1000) is None  # an empty period sends nothing
    # A new model: the old one's last period comes back from begin().
    col(*block(np.ones((4, 3))))
    last = col.begin("v2", "vib", None, 1200)
    assert last is not None and decode_sketch_document(last.payload).period_end_ns == 1200
    col(*block(np.ones((4, 3))))  # v2 has no reference: nothing is sketched
    assert col.take(1300) is None and col.periods == 2 and col.rows_total == 312


def test_rows_are_binned_in_bulk_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drift_sketches, "FLUSH_ROWS", 10)
    ref = reference()
    col = SketchCollector("gw1")
    col.begin("v1", "vib", ref, 0)
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(6, 3)) for _ in range(9)]
    for x in xs:
        col(*block(x))
    entry = col.take(10)
    assert entry is not None
    got = decode_sketch_document(entry.payload)
    x = np.concatenate(xs).astype(np.float32)
    want, have = Sketch.build(ref.names, ref.edges, x[:, [2, 0]]), got.features(ref)
    assert np.array_equal(have.counts, want.counts)  # the bins exactly; the sums up to
    assert np.allclose(have.sums, want.sums) and np.allclose(have.sumsq, want.sumsq)  # order
    scores = np.concatenate([block(x)[1].score for x in xs])[:, None]
    assert got.scores is not None
    assert np.array_equal(got.scores.counts, score_sketch().update(scores).counts)


def test_a_model_reading_features_the_group_lacks_gives_no_sketches() -> None:
    rng = np.random.default_rng(4)
    train = rng.normal(size=(100, 2))
    col = SketchCollector("gw1")
    col.begin("v1", "vib", Sketch.build(("a", "zz"), quantile_edges(train, 4), train), 0)
    col(*block(rng.normal(size=(20, 3))))
    assert col.take(10) is None


def test_the_reference_comes_from_the_stored_manifest(tmp_path: Path) -> None:
    ref = reference()
    path = tmp_path / "m.manifest"
    path.write_text(json.dumps({"version": "v1", "drift_reference": ref.to_dict()}))
    assert read_reference(path) == ref
    path.write_text(json.dumps({"version": "v1", "drift_reference": None}))
    assert read_reference(path) is None
    path.write_text(json.dumps({"drift_reference": {"names": ["a"]}}))
    assert read_reference(path) is None  # malformed: logged, no sketches
    assert read_reference(tmp_path / "missing.manifest") is None

"""Sketches: binning rules, exact merging, plain-value round trip, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgeloop.drift import Sketch, SketchError, merge_all, quantile_edges

EDGES = np.array([[0.0, 1.0, 2.0, 3.0], [-1.0, 0.0, 0.0, 1.0]])

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)
cells = st.one_of(finite, st.sampled_from([0.0, 1.0, 2.0, 3.0, -1.0, np.nan, np.inf, -np.inf]))
blocks = st.integers(0, 40).flatmap(lambda n: arrays(np.float64, (n, 2), elements=cells))


def test_bins_are_half_open_and_the_last_is_closed() -> None:
    x = np.array([[-0.5, 0.0, 0.5, 1.0, 2.999, 3.0, 3.5]]).T
    s = Sketch.build(["a"], EDGES[:1], x)
    # underflow | [0,1) | [1,2) | [2,3] | overflow
    assert s.counts.tolist() == [[1, 2, 1, 2, 1]]
    assert s.sums[0].tolist() == pytest.approx([-0.5, 0.5, 1.0, 5.999, 3.5])


def test_tied_edges_leave_an_empty_bin() -> None:
    s = Sketch.build(["b"], EDGES[1:], np.array([[-1.0], [0.0], [0.5], [1.0]]))
    assert s.counts.tolist() == [[0, 1, 0, 3, 0]]


def test_non_finite_values_are_counted_not_binned() -> None:
    x = np.array([[np.nan, 0.5], [1.5, np.inf], [2.5, -np.inf]])
    s = Sketch.build(["a", "b"], EDGES, x)
    assert s.nonfinite.tolist() == [1, 2]
    assert s.total.tolist() == [2, 1]
    assert np.isfinite(s.sums).all() and np.isfinite(s.sumsq).all()


@given(blocks, blocks, blocks)
def test_merge_equals_sketch_of_all_rows_and_is_associative(
    a: np.ndarray, b: np.ndarray, c: np.ndarray
) -> None:
    sa, sb, sc = (Sketch.build(["a", "b"], EDGES, v) for v in (a, b, c))
    whole = Sketch.build(["a", "b"], EDGES, np.concatenate([a, b, c]))
    left = sa.merge(sb).merge(sc)
    right = sa.merge(sb.merge(sc))
    for m in (left, right, merge_all([sc, sa, sb])):
        assert np.array_equal(m.counts, whole.counts)
        assert np.array_equal(m.nonfinite, whole.nonfinite)
        np.testing.assert_allclose(m.sums, whole.sums, rtol=1e-9, atol=1e-3)
        np.testing.assert_allclose(m.sumsq, whole.sumsq, rtol=1e-9, atol=1e-3)
    assert sa.merge(sb).counts.tolist() == sb.merge(sa).counts.tolist()


@given(blocks)
def test_update_in_pieces_equals_one_build(x: np.ndarray) -> None:
    half = len(x) // 2
    s = Sketch.empty(["a", "b"], EDGES).update(x[:half]).update(x[half:])
    assert np.array_equal(s.counts, Sketch.build(["a", "b"], EDGES, x).counts)
    assert s.total.sum() + s.nonfinite.sum() == x.size


def test_centroids_mean_and_std_are_exact() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(1.5, 0.7, size=(2000, 1))
    s = Sketch.build(["a"], EDGES[:1], x)
    mean, std = s.mean_std()
    assert mean[0] == pytest.approx(x.mean()) and std[0] == pytest.approx(x.std())
    inside = (x[:, 0] >= 1.0) & (x[:, 0] < 2.0)
    assert s.centroids()[0, 2] == pytest.approx(x[inside, 0].mean())


def test_quantile_edges_give_equal_mass_bins_and_no_tails() -> None:
    x = np.random.default_rng(1).gamma(2.0, size=(10_000, 3))
    e = quantile_edges(x, 8)
    assert e.shape == (3, 9)
    s = Sketch.build(["a", "b", "c"], e, x)
    assert s.counts[:, 0].tolist() == [0, 0, 0] and s.counts[:, -1].tolist() == [0, 0, 0]
    assert np.abs(s.counts[:, 1:-1] - 1250).max() <= 1


def test_quantile_edges_ignore_non_finite_and_reject_empty_columns() -> None:
    x = np.array([[1.0, np.nan], [2.0, np.nan], [np.inf, np.nan]])
    with pytest.raises(SketchError, match=r"columns \[1\] have no finite value"):
        quantile_edges(x, 2)
    assert quantile_edges(x[:, :1], 2).tolist() == [[1.0, 1.5, 2.0]]


def test_round_trip_through_json_is_exact() -> None:
    x = np.random.default_rng(5).normal(size=(300, 2))
    s = Sketch.build(["a", "b"], quantile_edges(x, 5), x)
    back = Sketch.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s and back.layout_id() == s.layout_id()


def test_arrays_are_read_only() -> None:
    s = Sketch.build(["a", "b"], EDGES, np.zeros((3, 2)))
    with pytest.raises(ValueError):
        s.counts[0, 0] = 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"names": ("a", "a")}, "names: expected distinct"),
        ({"edges": np.array([[0.0, 1.0], [2.0, 1.0]])}, r"edges: not non-decreasing for \['b'\]"),
        ({"edges": np.array([[0.0, np.inf], [0.0, 1.0]])}, "edges: must be finite"),
        ({"edges": np.zeros((3, 2))}, r"edges: expected shape \(2, b \+ 1\)"),
    ],
)
def test_invalid_layouts_are_named(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"names": ("a", "b"), "edges": EDGES}
    args.update(kwargs)
    with pytest.raises(SketchError, match=match):
        Sketch.empty(args["names"], args["edges"])  # type: ignore[arg-type]


def test_merging_different_layouts_names_the_difference() -> None:
    a = Sketch.empty(["a", "b"], EDGES)
    with pytest.raises(SketchError, match=r"names differ"):
        a.merge(Sketch.empty(["a", "c"], EDGES))
    other = EDGES.copy()
    other[1, 1] = -0.5
    with pytest.raises(SketchError, match=r"edges differ \(\['b'\]\)"):
        a.merge(Sketch.empty(["a", "b"], other))
    with pytest.raises(SketchError, match=r"sketches\[1\]: names differ"):
        merge_all([a, Sketch.empty(["x", "b"], EDGES)])
    with pytest.raises(SketchError, match=r"values: expected shape \(n, 2\)"):
        a.update(np.zeros((4, 3)))


def test_from_dict_names_missing_fields() -> None:
    with pytest.raises(SketchError, match=r"ref: missing fields \['sumsq', 'nonfinite'\]"):
        Sketch.from_dict(
            {"names": ["a"], "edges": [[0, 1]], "counts": [[0, 0, 0]], "sums": [[0, 0, 0]]}, "ref"
        )


def test_select_reorders_columns() -> None:
    x = np.array([[0.5, -0.5], [2.5, 0.5]])
    s = Sketch.build(["a", "b"], EDGES, x)
    t = s.select(["b", "a"])
    assert t.names == ("b", "a") and np.array_equal(t.counts[0], s.counts[1])
    with pytest.raises(SketchError, match=r"\['z'\] not in sketch columns"):
        s.select(["z"])

"""PSI, KS and W1 from sketches against their definitions and against raw-sample values."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from edgeloop.drift import Sketch, SketchError, compare, compare_many, quantile_edges
from edgeloop.drift.stats import PSEUDO_COUNT


@pytest.mark.parametrize("name", ["edgeloop.drift.sketch", "edgeloop.drift.stats"])
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def reference(seed: int = 0, bins: int = 20) -> tuple[np.ndarray, Sketch]:
    train = np.random.default_rng(seed).normal(size=(20_000, 2)) * [1.0, 5.0] + [0.0, 10.0]
    return train, Sketch.build(["a", "b"], quantile_edges(train, bins), train)


def test_psi_matches_its_formula_on_the_bins() -> None:
    _, ref = reference()
    cur = Sketch.empty(ref.names, ref.edges).update(
        np.random.default_rng(9).normal(size=(3000, 2)) * [1.3, 5.0] + [0.4, 10.0]
    )
    nb = ref.counts.shape[1]
    p = (cur.counts + PSEUDO_COUNT) / (cur.total[:, None] + PSEUDO_COUNT * nb)
    q = (ref.counts + PSEUDO_COUNT) / (ref.total[:, None] + PSEUDO_COUNT * nb)
    expected = ((p - q) * np.log(p / q)).sum(axis=1)
    np.testing.assert_allclose(compare(ref, cur).psi, expected)


def test_statistics_are_near_zero_for_the_same_distribution_and_grow_with_shift() -> None:
    _, ref = reference()
    rng = np.random.default_rng(2)
    values = []
    for shift in (0.0, 0.25, 0.5, 1.0, 2.0):
        x = rng.normal(size=(5000, 2)) * [1.0, 5.0] + [shift, 10.0 + 5.0 * shift]
        values.append(compare(ref, Sketch.empty(ref.names, ref.edges).update(x)))
    psi = [v.psi[0] for v in values]
    ks = [v.ks[0] for v in values]
    w1 = [v.w1[0] for v in values]
    assert psi[0] < 0.01 and ks[0] < 0.03 and w1[0] < 0.05
    assert psi == sorted(psi) and ks == sorted(ks) and w1 == sorted(w1)
    # In units of the reference's std, both columns moved by the same amount.
    np.testing.assert_allclose(values[3].w1, [1.0, 1.0], atol=0.05)


@given(st.floats(-3.0, 3.0), st.floats(0.3, 3.0), st.integers(0, 2**31))
def test_w1_is_within_the_bin_widths_of_the_exact_distance(
    shift: float, scale: float, seed: int
) -> None:
    train, ref = reference(bins=40)
    x = np.random.default_rng(seed).normal(shift, scale, size=(2000, 2)) * [1.0, 5.0]
    x = x + np.array([0.0, 10.0])
    # Keep the current data inside the training range: the bound is the widest bin.
    x = np.clip(x, ref.edges[:, 0], ref.edges[:, -1])
    got = compare(ref, Sketch.empty(ref.names, ref.edges).update(x)).w1
    _, std = ref.mean_std()
    for j in range(2):
        exact = sps.wasserstein_distance(train[:, j], x[:, j]) / std[j]
        width = np.diff(ref.edges[j]).max() / std[j]
        assert abs(got[j] - exact) <= 2 * width


@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=200),
    st.lists(st.integers(0, 5), min_size=1, max_size=200),
)
def test_ks_is_exact_when_each_value_has_its_own_bin(a: list[int], b: list[int]) -> None:
    edges = np.arange(7, dtype=np.float64)[None]
    ref = Sketch.build(["x"], edges, np.asarray(a, dtype=np.float64)[:, None])
    cur = Sketch.build(["x"], edges, np.asarray(b, dtype=np.float64)[:, None])
    # The two-sample KS statistic from its definition: the largest ECDF gap.
    xa, xb = np.sort(a), np.sort(b)
    grid = np.union1d(xa, xb)
    fa = np.searchsorted(xa, grid, side="right") / len(xa)
    fb = np.searchsorted(xb, grid, side="right") / len(xb)
    exact = np.abs(fa - fb).max()
    assert compare(ref, cur).ks[0] == pytest.approx(exact)


def test_values_beyond_the_training_range_are_measured() -> None:
    train, ref = reference()
    far = Sketch.empty(ref.names, ref.edges).update(train + np.array([10.0, 0.0]))
    farther = Sketch.empty(ref.names, ref.edges).update(train + np.array([20.0, 0.0]))
    a, b = compare(ref, far), compare(ref, farther)
    assert a.w1[0] == pytest.approx(10.0, rel=0.02) and b.w1[0] == pytest.approx(20.0, rel=0.02)
    assert a.ks[0] == pytest.approx(1.0)  # every value is in the overflow bin
    assert a.w1[1] < 1e-9 and a.psi[1] < 1e-9


def test_compare_many_is_row_by_row_compare_and_empty_rows_are_nan() -> None:
    _, ref = reference()
    rng = np.random.default_rng(4)
    cur = [
        Sketch.empty(ref.names, ref.edges).update(rng.normal(size=(n, 2)) * [1.0, 5.0] + [s, 10.0])
        for n, s in ((1000, 0.0), (0, 0.0), (500, 1.0))
    ]
    many = compare_many(ref, cur)
    assert many.psi.shape == (3, 2) and many.n[:, 0].tolist() == [1000, 0, 500]
    assert np.isnan(many.psi[1]).all() and np.isnan(many.ks[1]).all() and np.isnan(many.w1[1]).all()
    for i in (0, 2):
        one = compare(ref, cur[i])
        for m in ("psi", "ks", "w1"):
            np.testing.assert_allclose(many.metric(m)[i], one.metric(m))
    with pytest.raises(SketchError, match="unknown 'kl'"):
        many.metric("kl")


def test_a_constant_reference_column_measures_absolute_movement() -> None:
    ref = Sketch.build(["c"], np.array([[2.0, 2.0]]), np.full((100, 1), 2.0))
    moved = Sketch.empty(["c"], ref.edges).update(np.full((50, 1), 2.5))
    assert compare(ref, moved).w1[0] == pytest.approx(0.5)


def test_incompatible_sketches_are_refused() -> None:
    _, ref = reference()
    with pytest.raises(SketchError, match=r"current\[0\]: names differ"):
        compare_many(ref, [Sketch.empty(["a", "z"], ref.edges)])

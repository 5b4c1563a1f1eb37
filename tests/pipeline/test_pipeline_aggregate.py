"""SummaryAggregator: every sample in exactly one row; exact stats across frames."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeloop.errors import ConfigError
from edgeloop.pipeline.aggregate import SummaryAggregator
from edgeloop.telemetry.frame import Frame
from edgeloop.telemetry.records import SummaryBatch

PERIOD = 100


def run(agg: SummaryAggregator, frames: list[Frame]) -> SummaryBatch | None:
    out = []
    now = np.iinfo(np.int64).min
    for f in frames:
        # The clock follows the data; an empty frame does not move it (a clock jumping
        # ahead of the data would rightly make later samples late, with rows of their own).
        now = max(now, int(f.ts.max())) if len(f) else now
        b = agg.process(f, now)
        if b is not None:
            out.append(b)
    tail = agg.flush()
    if tail is not None:
        out.append(tail)
    return SummaryBatch.concat(out) if out else None


@st.composite
def streams(draw: st.DrawFn) -> tuple[Frame, list[int]]:
    n_sensors = draw(st.integers(1, 4))
    # Values from a seeded generator: the split and the timing are what vary here.
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    parts = []
    for s in range(n_sensors):
        n = draw(st.integers(0, 60))
        gaps = np.array(draw(st.lists(st.integers(0, 70), min_size=n, max_size=n)), np.int64)
        ts = -150 + np.cumsum(gaps, dtype=np.int64)  # negative times: floor division
        vals = rng.normal(0.0, 10.0 ** rng.uniform(-2, 3), n)
        parts.append(Frame.from_arrays(np.full(n, s), ts, vals))
    whole = Frame.concat(parts)
    cuts = draw(st.lists(st.integers(-200, 4500), max_size=5))
    return whole, sorted(cuts)


@settings(max_examples=120, deadline=None)
@given(streams())
def test_every_sample_is_counted_once_and_stats_are_exact(data: tuple[Frame, list[int]]) -> None:
    whole, cuts = data
    edges = [np.iinfo(np.int64).min, *cuts, np.iinfo(np.int64).max]
    frames = [whole.between(a, b) for a, b in itertools.pairwise(edges)]
    agg = SummaryAggregator(PERIOD, ["a", "b", "c", "d"])
    out = run(agg, frames)
    if len(whole) == 0:
        assert out is None
        return
    assert out is not None
    assert out.samples == len(whole) == agg.samples_in == agg.samples_out
    assert agg.open_rows == 0
    # Frames arrive in time order, so each (sensor, period) is exactly one row.
    period = whole.ts // PERIOD
    keys = np.stack([whole.sensor.astype(np.int64), period], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.ravel()
    v = whole.value.astype(np.float64)
    n = np.bincount(inv)
    mean = np.bincount(inv, v) / n
    std = np.sqrt(np.bincount(inv, (v - mean[inv]) ** 2) / n)
    lo = np.full(len(uniq), np.inf)
    hi = np.full(len(uniq), -np.inf)
    np.minimum.at(lo, inv, v)
    np.maximum.at(hi, inv, v)
    order = np.lexsort((out.t0_ns // PERIOD, out.sensor))  # the order of np.unique
    assert np.array_equal(out.sensor[order], uniq[:, 0])
    assert np.array_equal(out.t0_ns[order], uniq[:, 1] * PERIOD)
    assert np.all(out.t1_ns - out.t0_ns == PERIOD)
    assert np.array_equal(out.count[order], n)
    np.testing.assert_allclose(out.mean[order], mean, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(out.std[order], std, rtol=1e-4, atol=1e-2)
    assert np.array_equal(out.min[order], lo) and np.array_equal(out.max[order], hi)
    assert out.sensor_names == ("a", "b", "c", "d")


def test_periods_close_after_their_end_plus_lateness() -> None:
    agg = SummaryAggregator(PERIOD, ["a"], lateness_ns=50)
    f = Frame.from_arrays([0, 0, 0], [10, 120, 130], [1.0, 2.0, 4.0])
    assert agg.process(f, now_ns=149) is None  # period 0 ends at 100, +50 lateness
    b = agg.process(Frame.empty(), now_ns=150)
    assert b is not None and b.count.tolist() == [1] and b.t0_ns.tolist() == [0]
    assert agg.open_rows == 1
    b = agg.process(Frame.empty(), now_ns=250)
    assert b is not None and b.mean.tolist() == [3.0] and b.std.tolist() == [1.0]
    assert agg.flush() is None


def test_repeated_contributions_merge_into_one_row_with_exact_std() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(1e4, 1.0, 300).astype(np.float32)  # large offset, small spread
    ts = np.arange(300, dtype=np.int64)  # all in period 0 with a period of 1000
    agg = SummaryAggregator(1000, ["a"])
    for part in np.array_split(np.arange(300), 7):
        assert agg.process(Frame.from_arrays(np.zeros(part.size), ts[part], v[part]), 300) is None
    b = agg.flush()
    assert b is not None and len(b) == 1 and b.count[0] == 300
    assert b.std[0] == pytest.approx(v.astype(np.float64).std(), rel=1e-4)
    assert b.mean[0] == pytest.approx(v.astype(np.float64).mean(), rel=1e-7)


def test_late_samples_get_their_own_row_and_are_still_counted() -> None:
    agg = SummaryAggregator(PERIOD, ["a", "b"])
    first = agg.process(Frame.from_arrays([0, 1], [10, 20], [1.0, 2.0]), now_ns=500)
    late = agg.process(Frame.from_arrays([0], [30], [5.0]), now_ns=500)
    assert first is not None and late is not None
    assert first.samples + late.samples == 3
    assert late.t0_ns.tolist() == [0] and late.mean.tolist() == [5.0]


def test_unsorted_frames_are_grouped_correctly() -> None:
    f = Frame.from_arrays([1, 0, 1, 0], [150, 10, 20, 110], [4.0, 1.0, 3.0, 2.0])
    agg = SummaryAggregator(PERIOD, ["a", "b"])
    b = agg.process(f, now_ns=10_000)
    assert b is not None
    rows = sorted(zip(b.sensor.tolist(), b.t0_ns.tolist(), b.mean.tolist(), strict=True))
    assert rows == [(0, 0, 1.0), (0, 100, 2.0), (1, 0, 3.0), (1, 100, 4.0)]


def test_bad_periods_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="period"):
        SummaryAggregator(0, ["a"])
    with pytest.raises(ConfigError, match="lateness"):
        SummaryAggregator(10, ["a"], lateness_ns=-1)

"""Windower: count-based windows per sensor, identical whatever the frame split."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeloop.errors import ConfigError
from edgeloop.pipeline.types import Windows
from edgeloop.pipeline.windows import Windower, ensure_sorted, is_sorted
from edgeloop.telemetry.frame import Frame


def stream(counts: list[int], sensors: list[int] | None = None) -> Frame:
    """Sensor s gets counts[i] samples; value = 1000*s + k (k-th sample), ts = 10*k."""
    sensors = list(range(len(counts))) if sensors is None else sensors
    s = np.concatenate([np.full(c, sid) for sid, c in zip(sensors, counts, strict=True)])
    k = np.concatenate([np.arange(c) for c in counts])
    return Frame.from_arrays(s, 10 * k, 1000 * s + k)


def split_by_time(frame: Frame, cuts: list[int]) -> list[Frame]:
    """Frames of ``frame``'s samples with ts in consecutive [cut_i, cut_i+1) ranges."""
    edges = [np.iinfo(np.int64).min, *sorted(cuts), np.iinfo(np.int64).max]
    return [frame.between(a, b) for a, b in itertools.pairwise(edges)]


def reference(frame: Frame, sensors: list[int], size: int, hop: int) -> dict[int, np.ndarray]:
    """Naive per-sensor windows (rows) of the whole stream."""
    out = {}
    for s in sensors:
        v = frame.value[frame.sensor == s]
        starts = range(0, v.size - size + 1, hop)
        out[s] = np.array([v[a : a + size] for a in starts]).reshape(-1, size)
    return out


def by_sensor(chunks: list[Windows], size: int) -> dict[int, np.ndarray]:
    out: dict[int, list[np.ndarray]] = {}
    for w in chunks:
        for s in np.unique(w.sensor):
            out.setdefault(int(s), []).append(w.values[w.sensor == s])
    return {s: np.concatenate(v).reshape(-1, size) for s, v in out.items()}


def test_tumbling_and_sliding_exact_values() -> None:
    f = stream([5, 3])
    tum = Windower("g", [0, 1], size=2).process(f)
    assert tum.values.tolist() == [[0, 1], [2, 3], [1000, 1001]]
    assert tum.sensor.tolist() == [0, 0, 1]
    assert tum.t0_ns.tolist() == [0, 20, 0]
    assert tum.t1_ns.tolist() == [10, 30, 10]
    sl = Windower("g", [0, 1], size=3, hop=1).process(f)
    assert sl.values.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4], [1000, 1001, 1002]]
    assert sl.values.dtype == np.float32 and sl.values.flags.c_contiguous


@settings(max_examples=150, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), min_size=1, max_size=4),
    size=st.integers(1, 9),
    hop_frac=st.floats(0.0, 1.0),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_any_split_yields_the_windows_of_the_whole_stream(
    counts: list[int], size: int, hop_frac: float, cuts: list[int]
) -> None:
    hop = max(1, round(hop_frac * size))
    whole = stream(counts)
    sensors = list(range(len(counts)))
    expected = reference(whole, sensors, size, hop)

    one = Windower("g", sensors, size, hop)
    many = Windower("g", sensors, size, hop)
    got_whole = by_sensor([one.process(whole)], size)
    got_split = by_sensor([many.process(f) for f in split_by_time(whole, cuts)], size)

    for s in sensors:
        want = expected[s]
        assert np.array_equal(got_whole.get(s, np.empty((0, size))), want)
        assert np.array_equal(got_split.get(s, np.empty((0, size))), want)
    # Same carries afterwards, and never a full window's worth.
    assert one.pending == many.pending <= len(sensors) * (size - 1)


@settings(max_examples=60, deadline=None)
@given(
    n_sensors=st.integers(1, 5),
    per_frame=st.integers(1, 30),
    n_frames=st.integers(1, 6),
    size=st.integers(1, 12),
    hop_frac=st.floats(0.0, 1.0),
    interleave=st.booleans(),
)
def test_uniform_fast_path_with_carries_matches_reference(
    n_sensors: int, per_frame: int, n_frames: int, size: int, hop_frac: float, interleave: bool
) -> None:
    """Equal counts per sensor (the simulator's case), aligned or not, contiguous or not."""
    hop = max(1, round(hop_frac * size))
    # With interleave, odd catalog indices belong to another group in the same frame.
    group = [2 * i for i in range(n_sensors)] if interleave else list(range(n_sensors))
    all_sensors = list(range(2 * n_sensors)) if interleave else group
    whole = stream([per_frame * n_frames] * len(all_sensors), all_sensors)
    frames = split_by_time(whole, [10 * per_frame * j for j in range(1, n_frames)])
    w = Windower("g", group, size, hop)
    outs = [w.process(f) for f in frames]
    got = by_sensor(outs, size)
    exp = reference(whole, group, size, hop)
    for s in group:
        assert np.array_equal(got.get(s, np.empty((0, size))), exp[s])
    for o in outs:  # never another group's sensor, never mixed within a row
        assert set(o.sensor.tolist()) <= set(group)
        assert np.array_equal(o.values // 1000, np.repeat(o.sensor[:, None], size, axis=1))
        # t0/t1 are the first and last sample times of each row (value k <-> ts 10*k).
        assert np.array_equal(o.t0_ns, 10 * (o.values[:, 0] % 1000).astype(np.int64))
        assert np.array_equal(o.t1_ns, 10 * (o.values[:, -1] % 1000).astype(np.int64))


def test_aligned_tumbling_windows_are_a_zero_copy_view() -> None:
    f = stream([8, 8, 8])
    out = Windower("g", [0, 1, 2], size=4).process(f)
    assert len(out) == 6
    assert np.shares_memory(out.values, f.value)


def test_unsorted_frame_is_sorted_first() -> None:
    f = stream([4, 4])
    perm = np.random.default_rng(0).permutation(len(f))
    shuffled = f.take(perm)
    assert not is_sorted(shuffled) and is_sorted(ensure_sorted(shuffled))
    a = Windower("g", [0, 1], 2).process(f)
    b = Windower("g", [0, 1], 2).process(shuffled)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.t0_ns, b.t0_ns)


def test_is_sorted_requires_time_order_within_each_sensor() -> None:
    assert is_sorted(Frame.from_arrays([0, 0, 1, 1], [5, 6, 1, 2], [0, 0, 0, 0]))
    assert not is_sorted(Frame.from_arrays([0, 0, 1], [6, 5, 7], [0, 0, 0]))
    assert not is_sorted(Frame.from_arrays([1, 0], [1, 2], [0, 0]))


def test_sensors_added_later_start_with_an_empty_carry() -> None:
    w = Windower("g", [0], 3)
    w.process(stream([2]))
    w.add_sensors([1, 0])
    out = w.process(Frame.from_arrays([0, 1, 1, 1], [20, 0, 10, 20], [2, 1000, 1001, 1002]))
    assert out.sensor.tolist() == [0, 1]
    assert out.values.tolist() == [[0, 1, 2], [1000, 1001, 1002]]


def test_empty_frames_and_groups() -> None:
    w = Windower("g", [0, 1], 4)
    assert len(w.process(Frame.empty())) == 0
    assert w.process(Frame.empty()).values.shape == (0, 4)
    assert len(Windower("g", [], 4).process(stream([9]))) == 0


@pytest.mark.parametrize(("size", "hop"), [(0, None), (4, 5), (4, 0)])
def test_bad_window_config_names_the_field(size: int, hop: int | None) -> None:
    with pytest.raises(ConfigError, match=r"windows\.g\.(size|hop)"):
        Windower("g", [0], size, hop)

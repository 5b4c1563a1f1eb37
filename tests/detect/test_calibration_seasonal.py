"""The novelty detector's parts: capped self-calibration, the season in rows, the seasonal
distance, and the seasonal channel inside the detector (a missing busy phase)."""

from __future__ import annotations

import numpy as np

from edgeloop.detect.calibration import LAG, rolling_bar
from edgeloop.detect.novelty import NoveltyDetector
from edgeloop.detect.seasonal import INTERVALS, record_stamps, season_rows, seasonal_distance
from edgeloop.pipeline.types import Features

STEP_NS = 300 * 10**9
DAY = 288  # rows of 5 minutes


def calibrate(raw: np.ndarray, cap: float, width: int = 200) -> np.ndarray:
    """Bars of a single-sensor raw series, calibrated chunk by chunk."""
    big_l = 500
    hist, lagged = np.zeros((1, big_l)), np.full((1, LAG), np.inf)
    out = []
    for c0 in range(0, len(raw), width):
        r = raw[None, c0 : c0 + width]
        t = np.arange(c0, c0 + r.shape[1])[None, :]
        valid = np.ones_like(r, dtype=bool)
        bar, hist, lagged = rolling_bar(
            hist, lagged, r, t, valid, z=3.0, floor=np.full(r.shape, 0.1), cap=cap, active=t >= 50
        )
        out.append(bar[0])
    return np.concatenate(out)


def test_the_bar_follows_the_noise_and_a_burst_cannot_inflate_it_when_capped() -> None:
    rng = np.random.default_rng(0)
    raw = np.abs(rng.normal(0, 1.0, 2000))
    raw[1000:1020] = 200.0  # a burst of huge raw scores (a jump, say)
    capped, free = calibrate(raw, cap=5.0), calibrate(raw, cap=1e12)
    # before the burst both follow the noise: mean + 3 std of |N(0, 1)| is about 2.6
    assert 2.0 < capped[900] < 3.2 and capped[900] == free[900]
    # after it, the uncapped bar is blown up for the length of the calibration window
    assert free[1100] > 30 and free[1400] > 30
    # the capped one learnt each burst score as 5 bars at most: it stays near the noise
    assert capped[1100] < 10 and capped[1400] < 10
    # the same series in other chunk sizes gives the same bars (the cap lags LAG rows)
    np.testing.assert_allclose(calibrate(raw, 5.0, width=37), capped, rtol=1e-9)
    np.testing.assert_allclose(calibrate(raw, 5.0, width=LAG), capped, rtol=1e-9)


def test_the_floor_holds_on_a_flat_series() -> None:
    bar = calibrate(np.zeros(600), cap=5.0)
    assert np.all(bar == 0.1)


def test_season_rows_come_from_the_median_of_the_first_steps() -> None:
    stamps = np.zeros((3, INTERVALS + 1), np.int64)
    steps = np.full(INTERVALS, 300, np.int64) * 10**9
    steps[5] = 3600 * 10**9  # one gap does not move the median
    stamps[0] = np.concatenate([[0], np.cumsum(steps)])
    stamps[1] = np.arange(INTERVALS + 1) * 3600 * 10**9  # hourly: 24 rows a day
    stamps[2] = np.arange(INTERVALS + 1) * 10**9  # every second: a day is 86400 rows
    seen = np.full(3, INTERVALS + 1)
    rows = season_rows(stamps, seen, 86400e9, most=3000)
    assert rows.tolist() == [DAY, 24, 0]  # too long to keep: off
    assert season_rows(stamps, seen - 1, 86400e9, most=3000).tolist() == [0, 0, 0]  # not known yet


def test_record_stamps_keeps_only_the_first_rows() -> None:
    stamps = np.zeros((1, INTERVALS + 1), np.int64)
    t = (np.arange(100, dtype=np.int64) * 7)[None, :]
    valid = np.ones((1, 100), bool)
    got = record_stamps(stamps, np.zeros(1, np.int64), t, valid)
    assert got[0].tolist() == list(range(0, 7 * (INTERVALS + 1), 7))
    later = record_stamps(got, np.array([100]), t + 10**6, valid)
    assert np.array_equal(later, got)


def test_seasonal_distance_compares_with_the_same_phase_a_period_earlier() -> None:
    period, w, h, n = 10, 3, 3, 120
    x = np.tile(np.array([0.0, 0, 0, 0, 0, 5, 5, 5, 5, 5]), n // period)
    x[95:100] = 0.0  # the tenth period's busy half is missing
    seq = np.concatenate([[x[0]] * h, x])[None, :]
    t = np.arange(n)[None, :]
    valid = np.ones((1, n), bool)
    dist, ring = seasonal_distance(np.zeros((1, 40)), seq, h, w, np.array([period]), t, valid)
    # nothing is compared before the sampling interval is known (the first INTERVALS rows)
    assert np.all(dist[0, : INTERVALS + 1] == 0)
    # a regular period matches the one before it; the missing phase does not
    assert np.allclose(dist[0, INTERVALS + 1 : 95], 0)
    assert dist[0, 97] == 5.0  # three missing busy values against three busy ones
    assert np.allclose(dist[0, 107:110], 5.0)  # the next period misses its model too
    np.testing.assert_allclose(ring[0, -1], x[-w:].mean())
    off, _ = seasonal_distance(np.zeros((1, 40)), seq, h, w, np.array([0]), t, valid)
    assert np.all(off == 0)


def busy_days(n_days: int, missing: int | None, seed: int = 0) -> np.ndarray:
    """Quiet nights at 20, busy afternoons at 80, noisy; day ``missing`` stays quiet."""
    rng = np.random.default_rng(seed)
    k = np.arange(n_days * DAY)
    busy = (k % DAY >= 100) & (k % DAY < 260)
    if missing is not None:
        busy &= k // DAY != missing
    return np.where(busy, 80.0, 20.0) + rng.normal(0, 2.0, len(k))


def scores(det: NoveltyDetector, x: np.ndarray) -> np.ndarray:
    t = np.arange(len(x), dtype=np.int64) * STEP_NS
    f = Features("nab", ("mean",), np.zeros(len(x), np.uint32), t, t, x.astype(np.float32)[:, None])
    sc = det.score(f)
    det.learn(f, sc)
    return sc.score.astype(np.float64)


def test_a_day_without_its_busy_phase_is_found_by_the_seasonal_channel_only() -> None:
    params = {"memory": 600, "calibration": 1000}
    x = busy_days(9, missing=7)
    start = 7 * DAY + 100  # where the busy phase should begin
    seasonal = scores(NoveltyDetector(1, ("mean",), **params), x)
    blind = scores(NoveltyDetector(1, ("mean",), season=0, **params), x)
    hits = np.flatnonzero(seasonal >= 0.5)
    late = hits[hits >= start]
    assert late.size and late[0] - start <= 40, hits
    assert not np.any(blind[start : start + DAY // 2] >= 0.5)  # quiet is a known pattern
    # and on regular days the channel keeps quiet
    normal = scores(NoveltyDetector(1, ("mean",), **params), busy_days(9, None))
    assert (normal[2 * DAY :] >= 0.5).sum() <= 2

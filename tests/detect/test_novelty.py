"""NoveltyDetector: detection, causality, determinism, bounded state, sensors, params, NAB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeloop.detect.base import Detector
from edgeloop.detect.novelty import NoveltyDetector
from edgeloop.errors import ConfigError
from edgeloop.eval import nab
from edgeloop.pipeline.types import Features, Scores

DATA = Path(__file__).parents[2].parent / "shared" / "data" / "nab"
STEP_NS = 300 * 10**9
SMALL = {"memory": 400, "calibration": 500}  # fast variants for the behaviour tests


def block(x: np.ndarray, sensor: np.ndarray | None = None, t: np.ndarray | None = None) -> Features:
    n = len(x)
    sensor = np.zeros(n, np.uint32) if sensor is None else sensor.astype(np.uint32)
    t = np.arange(n, dtype=np.int64) * STEP_NS if t is None else t
    return Features("nab", ("mean",), sensor, t, t, np.asarray(x, np.float32)[:, None])


def run(det: NoveltyDetector, x: np.ndarray, sizes: int | None = None) -> np.ndarray:
    """Score a single-sensor series in blocks of ``sizes`` rows (all at once by default)."""
    out = []
    size = len(x) if sizes is None else sizes
    for b0 in range(0, len(x), size):
        t = np.arange(b0, min(b0 + size, len(x)), dtype=np.int64) * STEP_NS
        f = block(x[b0 : b0 + size], t=t)
        sc = det.score(f)
        det.learn(f, sc)
        out.append(sc.score)
    return np.concatenate(out).astype(np.float64)


def series(seed: int, n: int = 3000) -> np.ndarray:
    """A daily-like cycle with noise."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    return 50 + 10 * np.sin(2 * np.pi * k / 288) + rng.normal(0, 1.0, n)


def test_is_a_detector_warms_up_and_stays_quiet_on_normal_data() -> None:
    det = NoveltyDetector(1, ("mean",), **SMALL)
    assert isinstance(det, Detector)
    f = block(series(0))
    sc = det.score(f)
    det.learn(f, sc)
    assert isinstance(sc, Scores) and sc.threshold == 0.5 and sc.detector == "novelty"
    assert np.all(sc.score[: det.warmup] == 0)
    assert sc.confidence[0] == 0 and sc.confidence[-1] == 1
    assert np.all(np.diff(sc.confidence[: det.warmup + 1]) > 0)
    # pure noise still holds a novel-looking pattern now and then: ~1 alarm per 500 rows
    assert (sc.score >= 0.5).sum() <= 8
    assert np.all((sc.score >= 0) & (sc.score <= 1))


@pytest.mark.parametrize("kind", ["level_shift", "spike", "new_pattern"])
def test_detects_an_anomaly_early_and_once(kind: str) -> None:
    x = series(1)
    at = 2200
    if kind == "level_shift":
        x[at:] += 25
    elif kind == "spike":
        x[at] += 40
    else:  # the cycle flattens: no new level, a new shape
        x[at:] = 50 + np.random.default_rng(2).normal(0, 1.0, len(x) - at)
    s = run(NoveltyDetector(1, ("mean",), **SMALL), x)
    hits = np.flatnonzero(s >= 0.5)
    late = hits[hits >= at]
    assert late.size and late[0] - at <= 30, (kind, hits)
    assert (hits < at).sum() <= 6  # ~1 noise alarm per 500 rows (see above)
    # the refractory period: no second alarm right after the first
    assert not np.any((hits > late[0]) & (hits <= late[0] + 100))


def test_large_offsets_keep_their_precision() -> None:
    # distances are computed in float32 around the sensor's first value: a level near
    # 1e5 with unit noise (|c|^2 ~ 1e11, far beyond float32's 7 digits if uncentred)
    # behaves like the same series near 0 (Features hold float32 values themselves)
    x = series(9, 1500)
    x[1200:] += 25
    near_zero = run(NoveltyDetector(1, ("mean",), **SMALL), x)
    far = run(NoveltyDetector(1, ("mean",), **SMALL), x + 1e5)
    assert np.array_equal(near_zero >= 0.5, far >= 0.5)
    assert far[1200] >= 0.5


def test_non_finite_values_score_one_and_are_not_learnt() -> None:
    x = series(3, 1000)
    y = x.copy()
    y[600] = np.nan
    a = run(NoveltyDetector(1, ("mean",), **SMALL), x)
    b = run(NoveltyDetector(1, ("mean",), **SMALL), y)
    assert b[600] == 1.0
    assert np.array_equal(a[:600], b[:600])


def test_causal_a_row_score_does_not_change_when_later_rows_follow() -> None:
    x = series(4, 2000)
    x[1500:] += 20
    full = run(NoveltyDetector(1, ("mean",), **SMALL), x)
    for k in (700, 1499, 1510):
        head = run(NoveltyDetector(1, ("mean",), **SMALL), x[:k])
        np.testing.assert_allclose(head, full[:k], atol=1e-4)


def test_block_sizes_do_not_matter_and_runs_are_deterministic() -> None:
    x = series(5, 1500)
    x[1200] -= 30
    whole = run(NoveltyDetector(1, ("mean",), **SMALL), x)
    again = run(NoveltyDetector(1, ("mean",), **SMALL), x)
    assert np.array_equal(whole, again)
    for size in (1, 37, 300):
        np.testing.assert_allclose(
            run(NoveltyDetector(1, ("mean",), **SMALL), x, size), whole, atol=1e-4
        )


def test_sensors_side_by_side_score_as_one_at_a_time() -> None:
    xs = [series(10 + i, 1200 + 100 * i) for i in range(4)]
    xs[2][1000:] += 15
    alone = [run(NoveltyDetector(1, ("mean",), **SMALL), x) for x in xs]
    # interleaved by time, in one block, sensors growing on demand
    sensor = np.concatenate([np.full(len(x), i) for i, x in enumerate(xs)])
    t = np.concatenate([np.arange(len(x), dtype=np.int64) * STEP_NS for x in xs])
    vals = np.concatenate(xs)
    order = np.lexsort((sensor, t))
    det = NoveltyDetector(0, ("mean",), **SMALL)
    f = block(vals[order], sensor[order], t[order])
    sc = det.score(f)
    det.learn(f, sc)
    got = np.empty(len(vals))
    got[order] = sc.score
    assert det.n_sensors == 4
    bounds = np.cumsum([len(x) for x in xs])[:-1]
    for a, b in zip(alone, np.split(got, bounds), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-4)


def test_state_is_bounded() -> None:
    det = NoveltyDetector(1, ("mean",), **SMALL)
    run(det, series(6, 600))
    before = det.state_nbytes()
    run(det, series(7, 5000))
    assert det.state_nbytes() == before
    assert det.rows_seen(0) == 5600


def test_score_is_speculative_until_learn() -> None:
    det = NoveltyDetector(1, ("mean",), **SMALL)
    x = series(8, 800)
    f = block(x)
    a = det.score(f)
    b = det.score(f)
    assert np.array_equal(a.score, b.score) and det.rows_seen(0) == 0
    det.learn(f, b)
    assert det.rows_seen(0) == 800


def test_bad_parameters_are_all_named() -> None:
    with pytest.raises(ConfigError) as err:
        NoveltyDetector(
            1,
            ("std",),
            window=1,
            scales=(0,),
            memory=0,
            calibration=1,
            z=-1,
            floor=0,
            cap=0.5,
            range_excess=0,
            season=-1,
            season_window=0,
            season_factor=0,
            refractory=-1,
            warmup=0,
        )
    msg = str(err.value)
    for name in (
        "feature",
        "window",
        "scales",
        "memory",
        "calibration",
        "z",
        "floor",
        "cap",
        "range_excess",
        "season",
        "season_window",
        "season_factor",
        "refractory",
        "warmup",
    ):
        assert f"{name}:" in msg
    det = NoveltyDetector(1, ("mean",))
    with pytest.raises(ValueError, match=r"features\.names"):
        det.score(
            Features(
                "g",
                ("std",),
                np.zeros(1, np.uint32),
                *(np.zeros(1, np.int64),) * 2,
                np.zeros((1, 1), np.float32),
            )
        )


# --- the 31 NAB development files, replayed as 31 sensors side by side -------------------


def test_nab_scores_with_the_preset() -> None:
    if not DATA.is_dir():
        pytest.fail(
            f"benchmark data not found at {DATA}: the tests read ../shared/data beside "
            "the project (see ../shared/data/README.md); it is never copied in"
        )
    corpus = nab.load_corpus(DATA / "data", DATA / "labels" / "combined_windows.json")
    profiles = nab.load_profiles(DATA / "profiles.json")
    files = corpus.files
    sensor = np.concatenate([np.full(len(f.values), i) for i, f in enumerate(files)])
    t = np.concatenate([f.timestamps.astype("datetime64[ns]").astype(np.int64) for f in files])
    step = np.concatenate([np.arange(len(f.values)) for f in files])
    vals = np.concatenate([f.values for f in files])
    order = np.lexsort((sensor, step))  # row k of every file side by side
    det = NoveltyDetector(len(files), ("mean",))
    got = np.empty(len(vals))
    for rows in np.array_split(order, 24):
        f = block(vals[rows], sensor[rows], t[rows])
        sc = det.score(f)
        det.learn(f, sc)
        got[rows] = sc.score
    bounds = np.cumsum(corpus.lengths)[:-1]
    scores = dict(zip(corpus.names, np.split(got, bounds), strict=True))
    best = nab.optimise_thresholds(scores, corpus, profiles)
    board = {
        p: nab.score_corpus(scores, corpus, profiles[p], best[p].threshold).normalised
        for p in profiles
    }
    fixed = {
        p: nab.score_corpus(scores, corpus, profiles[p], det.threshold).normalised for p in profiles
    }
    # Measured (board / fixed threshold 0.5): standard 77.06 / 76.52, reward_low_FP_rate
    # 68.32 / 67.23, reward_low_FN_rate 81.97 / 81.61 (56 of 61 windows). Issue #3 asks for
    # >= 76 standard and ARTime's 65.60 / 79.70 on the other two, with the fixed threshold
    # within 3 points of the scoreboard's.
    assert board["standard"] >= 76.0 and fixed["standard"] >= 76.0
    assert board["reward_low_FP_rate"] > 65.60 and fixed["reward_low_FP_rate"] > 65.60
    assert board["reward_low_FN_rate"] > 79.70 and fixed["reward_low_FN_rate"] > 79.70
    for p in profiles:
        assert board[p] - fixed[p] <= 3.0

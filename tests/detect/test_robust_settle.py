"""RobustDetector with ``settle``: a lasting shift alarms once, then is the new normal;
a short fault stays anomalous; going back home raises nothing."""

from __future__ import annotations

import numpy as np
import pytest

from edgeloop.detect.robust import RobustDetector
from edgeloop.errors import ConfigError
from edgeloop.pipeline.spec import RobustParams
from edgeloop.pipeline.types import Features, Scores

N = 8  # sensors


def feats(values: np.ndarray, t0: int) -> Features:
    n = values.shape[0]
    t = np.full(n, t0, np.int64)
    names = tuple(f"f{i}" for i in range(values.shape[1]))
    return Features("g", names, np.arange(n, dtype=np.uint32), t, t, values.astype(np.float32))


class Plant:
    """Noisy rows for N sensors with two features; ``level`` is added to feature 0."""

    def __init__(self, det: RobustDetector, seed: int = 0) -> None:
        self.det = det
        self.rng = np.random.default_rng(seed)
        self.t = 0

    def run(self, n: int, level: float = 0.0, level1: float = 0.0) -> np.ndarray:
        """Flags of ``n`` steps, shape (n, N)."""
        out = []
        for _ in range(n):
            v = self.rng.normal(0.0, 1.0, (N, 2))
            v[:, 0] += level
            v[:, 1] += level1
            f = feats(v, self.t)
            self.t += 1
            sc = self.det.score(f)
            self.det.learn(f, sc)
            out.append(sc.anomalous)
        return np.array(out)


def settled(settle: int, seed: int = 0) -> Plant:
    plant = Plant(RobustDetector(N, ("f0", "f1"), warmup=20, settle=settle), seed)
    assert not plant.run(80).any()
    return plant


def test_a_lasting_shift_alarms_for_settle_windows_then_is_normal() -> None:
    plant = settled(10)
    flags = plant.run(100, level=30.0)
    assert flags[:10].all()  # raised at once, held for `settle` windows
    assert flags[10:].mean() < 0.01  # then the new level is normal
    assert all(plant.det.settled_away(s) for s in range(N))


def test_without_settle_the_same_shift_stays_anomalous() -> None:
    plant = settled(0)
    assert plant.run(100, level=30.0).all()


def test_a_fault_shorter_than_settle_stays_anomalous_and_leaves_the_baseline() -> None:
    plant = settled(20)
    loc0 = [plant.det.baseline(s)[0].copy() for s in range(N)]
    assert plant.run(15, level=30.0).all()
    assert not plant.run(40).any()  # back to normal: nothing moved
    for s in range(N):
        assert not plant.det.settled_away(s)
        assert plant.det.baseline(s)[0][0] == pytest.approx(loc0[s][0], abs=0.5)


def test_going_back_home_raises_no_alarm() -> None:
    plant = settled(10)
    plant.run(60, level=30.0)
    # A long fault that ended, or the old regime again: normal against home at once.
    assert not plant.run(60).any()
    assert not any(plant.det.settled_away(s) for s in range(N))
    # Home is the old baseline again: the same shift alarms again.
    assert plant.run(5, level=30.0).all()


def test_features_that_did_not_move_keep_their_baseline() -> None:
    plant = settled(10)
    before = [plant.det.baseline(s)[0][1] for s in range(N)]
    plant.run(30, level=30.0)
    after = [plant.det.baseline(s)[0][1] for s in range(N)]
    # Feature 1 did not move: only its normal tracking changed it (a fraction of a scale).
    assert np.allclose(before, after, atol=0.5)
    assert all(plant.det.baseline(s)[0][0] == pytest.approx(30.0, abs=1.5) for s in range(N))


def test_a_level_that_keeps_moving_settles_again_and_again() -> None:
    # A slow approach to a new level (a temperature after a load change): a few bursts,
    # each `settle` windows long, then quiet once the level stops moving.
    plant = settled(10)
    steps = np.arange(300)
    level = 40.0 * (1.0 - np.exp(-steps / 40.0))
    flags = np.concatenate([plant.run(1, level=float(x)) for x in level])
    starts = (flags[1:] & ~flags[:-1]).sum(axis=0) + flags[0]
    # (A sensor whose scale widens while the level is still slow may never alarm.)
    assert starts.max() >= 2 and (starts <= 8).all()
    assert not flags[-60:].any()


def test_a_sensor_sending_nan_settles_without_moving_or_warning() -> None:
    plant = settled(5)
    loc0 = plant.det.baseline(0)[0].copy()
    f = feats(np.full((N, 2), [np.nan, 0.0]), 10_000)
    for _ in range(12):  # scored 1 (anomalous) every window: runs reach settle twice
        sc = plant.det.score(f)
        plant.det.learn(f, sc)
        assert (sc.score == 1.0).all()
    loc, scale = plant.det.baseline(0)
    assert loc[0] == loc0[0] and np.isfinite(scale).all()


def test_the_scale_of_a_level_still_moving_widens_at_settling() -> None:
    plant = settled(10)
    scale0 = plant.det.baseline(0)[1][0]
    for k in range(11):  # a ramp of 2 scales per window: alarms, then settles moving
        plant.run(1, level=12.0 + 2.0 * k)
    assert plant.det.settled_away(0)
    assert plant.det.baseline(0)[1][0] > 2.0 * scale0
    # Steps to levels that then stand still keep their scale (but for the rare sensor
    # whose last windows happened to spread beyond 4 scales).
    still = settled(10, seed=1)
    s1 = np.array([still.det.baseline(s)[1][0] for s in range(N)])
    still.run(11, level=30.0)
    s2 = np.array([still.det.baseline(s)[1][0] for s in range(N)])
    assert all(still.det.settled_away(s) for s in range(N))
    assert (s2 < 1.2 * s1).sum() >= N - 1


def test_speculative_score_matches_learning_while_settling() -> None:
    # score() alone must not change state; learn() with other flags must be honoured.
    a, b = settled(5, seed=3), settled(5, seed=3)
    a.run(3, level=30.0)
    b.run(3, level=30.0)
    f = feats(np.full((N, 2), [30.0, 0.0]), 10_000)
    for _ in range(3):
        a.det.score(f)  # discarded speculation
    sa = a.det.score(f)
    a.det.learn(f, sa)
    sb = b.det.score(f)
    b.det.learn(f, sb)
    assert np.array_equal(sa.score, sb.score)
    # Told every window is normal, the run is broken: no settling two windows later.
    c = settled(5, seed=3)
    c.run(3, level=30.0)
    sc = c.det.score(f)
    c.det.learn(f, Scores(np.zeros(N, np.float32), 0.5, sc.confidence, sc.top_feature, "x"))
    c.run(1, level=30.0)
    assert not any(c.det.settled_away(s) for s in range(N))
    a.run(1, level=30.0)
    assert all(a.det.settled_away(s) for s in range(N))


def test_settle_is_checked() -> None:
    with pytest.raises(ConfigError, match="settle: must be >= 0"):
        RobustDetector(2, ("f0",), settle=-1)
    assert RobustParams().settle == 0
    with pytest.raises(ValueError, match="settle"):
        RobustParams(settle=-3)

"""RobustDetector: warm-up, sensitivity, robustness, slow adaptation, bounded state."""

from __future__ import annotations

import numpy as np
import pytest

from edgeloop.detect.base import Detector
from edgeloop.detect.robust import RobustDetector
from edgeloop.errors import ConfigError
from edgeloop.pipeline.features import compute_features
from edgeloop.pipeline.types import Features, Scores, Windows

VIB = ("mean", "std", "rms", "p2p", "kurtosis", "crest")
FS = 2000.0


def feats(values: np.ndarray, sensor: np.ndarray | None = None, t0: int = 0) -> Features:
    """A block from a (n, F) matrix; one window per sensor unless ``sensor`` says so."""
    n = values.shape[0]
    sensor = np.arange(n) if sensor is None else sensor
    names = tuple(f"f{i}" for i in range(values.shape[1]))
    t = np.full(n, t0, np.int64)
    return Features("g", names, sensor.astype(np.uint32), t, t, values.astype(np.float32))


def windows_features(
    x: np.ndarray, names: tuple[str, ...], bands: int = 0, t0: int = 0
) -> Features:
    """Real features of raw windows x (n_sensors, w): one window per sensor."""
    n = x.shape[0]
    t = np.full(n, t0, np.int64)
    w = Windows("g", np.arange(n, dtype=np.uint32), t, t, x.astype(np.float32))
    return compute_features(w, names, bands)


def step(det: RobustDetector, f: Features) -> Scores:
    sc = det.score(f)
    det.learn(f, sc)
    return sc


def noise(rng: np.random.Generator, n: int, w: int, sigma: float = 1.0) -> np.ndarray:
    return rng.normal(0.0, sigma, (n, w))


def warm(det: RobustDetector, make: object, n: int) -> None:
    for k in range(n):
        step(det, make(k))  # type: ignore[operator]


def test_is_a_detector_and_warms_up() -> None:
    det = RobustDetector(3, ("f0", "f1"), warmup=10)
    assert isinstance(det, Detector)
    rng = np.random.default_rng(0)
    for k in range(14):
        sc = step(det, feats(rng.normal(0, 1, (3, 2)) + (50 if k == 12 else 0)))
        assert sc.threshold == 0.5 and sc.detector == "robust"
        assert np.allclose(sc.confidence, min(k / 10, 1.0))
        if k < 10:
            assert np.all(sc.score == 0) and np.all(sc.top_feature == -1)
        else:
            assert np.all(sc.top_feature >= 0)
    assert det.windows_seen(0) == 14


def baseline_then(
    det: RobustDetector,
    names: tuple[str, ...],
    make: object,
    n_normal: int = 80,
    bands: int = 0,
) -> None:
    rng = np.random.default_rng(11)
    for k in range(n_normal):
        step(det, windows_features(make(rng), names, bands, t0=k))  # type: ignore[operator]


def test_step_in_mean_scores_high() -> None:
    det = RobustDetector(8, VIB)
    baseline_then(det, VIB, lambda r: noise(r, 8, 256))
    x = noise(np.random.default_rng(5), 8, 256) + 1.5
    sc = det.score(windows_features(x, VIB, t0=999))
    assert np.all(sc.score > 0.9)
    assert {VIB[i] for i in sc.top_feature} <= {"mean", "rms"}


def test_step_in_spread_scores_high() -> None:
    det = RobustDetector(8, VIB)
    baseline_then(det, VIB, lambda r: noise(r, 8, 256))
    x = noise(np.random.default_rng(5), 8, 256, sigma=2.0)
    sc = det.score(windows_features(x, VIB))
    assert np.all(sc.score > 0.8)  # |z| > 12
    assert {VIB[i] for i in sc.top_feature} <= {"std", "rms", "p2p"}


def test_new_tone_scores_high_on_its_band() -> None:
    names = ("rms",)
    det = RobustDetector(8, (*names, *(f"band_{i}" for i in range(8))))
    baseline_then(det, names, lambda r: noise(r, 8, 1024), bands=8)
    t = np.arange(1024) / FS
    # A unit tone at 610 Hz (band 4) beside unit noise: rms moves by ~22 % (|z| ~ 10),
    # band_4 (one eighth of the noise power before) by far more.
    x = noise(np.random.default_rng(5), 8, 1024) + np.sin(2 * np.pi * 610 * t)
    sc = det.score(windows_features(x, names, bands=8))
    assert np.all(sc.score > 0.8)
    assert np.all(sc.top_feature == 1 + 4)


@pytest.mark.parametrize("w", [10, 1024])
def test_stuck_sensor_scores_high(w: int) -> None:
    """std -> 0 after a normal baseline, even for 10-sample process windows."""
    names = ("mean", "std", "min", "max")
    det = RobustDetector(4, names, alpha=0.01, warmup=30)
    baseline_then(det, names, lambda r: 20.0 + noise(r, 4, w, sigma=0.2), n_normal=120)
    stuck = np.full((4, w), 20.05)
    sc = det.score(windows_features(stuck, names))
    assert np.all(sc.score > 0.9)
    assert np.all(sc.top_feature == 1)


def test_always_constant_features_do_not_explode() -> None:
    """A feature constant since the start reacts to real change, not to float rounding."""
    det = RobustDetector(4, ("f0", "f1", "f2"), warmup=10)
    rng = np.random.default_rng(3)

    def block(c1: float, c2: float) -> Features:
        v = np.column_stack([rng.normal(0, 1, 4), np.full(4, c1), np.full(4, c2)])
        return feats(v)

    for _ in range(40):
        sc = step(det, block(5.0, 0.0))
        assert np.isfinite(sc.score).all()
    assert np.all(sc.score < 0.5)
    # float32 rounding-level wiggles of the constants: still normal.
    sc = det.score(block(float(np.nextafter(np.float32(5.0), np.float32(6.0))), 1e-9))
    assert np.all(sc.score < 0.5)
    # A real change of a constant feature is an anomaly, with a finite score.
    sc = det.score(block(5.5, 0.0))
    assert np.all(sc.score > 0.9) and np.all(sc.top_feature == 1)


def test_false_positive_rate_on_gaussian_noise() -> None:
    names, bands = VIB, 8
    all_names = (*names, *(f"band_{i}" for i in range(bands)))
    det = RobustDetector(50, all_names)
    rng = np.random.default_rng(7)
    flagged = total = 0
    for k in range(200):
        sc = step(det, windows_features(noise(rng, 50, 256), names, bands, t0=k))
        ready = sc.confidence >= 1
        flagged += int(sc.anomalous[ready].sum())
        total += int(ready.sum())
    assert total == 50 * (200 - 20)
    assert flagged / total < 0.002, flagged


def sustained_shift(det: RobustDetector, n: int, shift: float, seed: int = 0) -> np.ndarray:
    """Flags of n windows whose mean feature is ``shift`` sigmas off (after a baseline)."""
    rng = np.random.default_rng(seed)
    for _ in range(60):
        step(det, feats(rng.normal(0, 1, (16, 2))))
    out = []
    for _ in range(n):
        v = rng.normal(0, 1, (16, 2))
        v[:, 0] += shift
        out.append(step(det, feats(v)).anomalous)
    return np.array(out)


def test_a_long_fault_is_not_absorbed_into_the_baseline() -> None:
    slow = sustained_shift(RobustDetector(16, ("f0", "f1")), 300, shift=15.0)
    assert slow.all()  # flagged throughout
    # Learning flagged windows at the full rate would forget the fault within ~150.
    fast = sustained_shift(RobustDetector(16, ("f0", "f1"), anomalous_rate=1.0), 300, 15.0)
    assert fast[:25].all() and not fast[200:].any()


def test_a_regime_change_eventually_becomes_normal() -> None:
    det = RobustDetector(16, ("f0", "f1"), alpha=0.05, anomalous_rate=0.2)
    flags = sustained_shift(det, 600, shift=15.0)
    assert flags[:40].all()
    assert flags[-200:].mean() < 0.01


def test_outliers_barely_move_the_baseline() -> None:
    det = RobustDetector(1, ("f0",), warmup=10)
    rng = np.random.default_rng(1)
    for _ in range(50):
        step(det, feats(rng.normal(0, 1, (1, 1))))
    loc0, scale0 = det.baseline(0)
    step(det, feats(np.array([[1e6]])))
    loc1, scale1 = det.baseline(0)
    # Clipped at 3 scales and learnt at the slow rate: a shift of a few hundredths.
    assert abs(loc1[0] - loc0[0]) < 0.05 * scale0[0] * 3
    assert scale1[0] < scale0[0] * 1.05


def test_block_with_several_windows_per_sensor_equals_one_by_one() -> None:
    rng = np.random.default_rng(2)
    blocks = [rng.normal(0, 1, (3, 2)) + (8.0 if k == 30 else 0.0) for k in range(40)]
    one = RobustDetector(3, ("f0", "f1"), warmup=10)
    seq = [step(one, feats(b, t0=k)) for k, b in enumerate(blocks)]
    many = RobustDetector(3, ("f0", "f1"), warmup=10)
    # Four windows per sensor per block, rows shuffled: ranks follow t0 per sensor.
    for start in range(0, 40, 4):
        vals = np.concatenate(blocks[start : start + 4])
        sens = np.tile(np.arange(3), 4)
        t0 = np.repeat(np.arange(start, start + 4), 3).astype(np.int64)
        perm = rng.permutation(vals.shape[0])
        f = Features(
            "g",
            ("f0", "f1"),
            sens[perm].astype(np.uint32),
            t0[perm],
            t0[perm],
            vals[perm].astype(np.float32),
        )
        sc = step(many, f)
        for r, p in enumerate(perm):
            k, s = start + p // 3, p % 3
            assert sc.score[r] == pytest.approx(seq[k].score[s], abs=1e-6)
            assert sc.confidence[r] == seq[k].confidence[s]
    for s in range(3):
        assert np.allclose(one.baseline(s)[0], many.baseline(s)[0])


def test_learn_uses_the_flags_it_is_given() -> None:
    rng = np.random.default_rng(4)
    a, b = RobustDetector(2, ("f0",), warmup=5), RobustDetector(2, ("f0",), warmup=5)
    for _ in range(20):
        f = feats(rng.normal(0, 1, (2, 1)))
        step(a, f)
        step(b, f)
    f = feats(np.array([[3.0], [3.0]]))  # below threshold: normally learnt at full rate
    sa = a.score(f)
    a.learn(f, sa)
    sb = b.score(f)
    flagged = Scores(np.ones(2, np.float32), 0.5, sb.confidence, sb.top_feature, "x")
    b.learn(f, flagged)
    assert np.all(sa.score < 0.5)
    moved_a = a.baseline(0)[0][0]
    moved_b = b.baseline(0)[0][0]
    assert moved_a - moved_b > 0  # b adapted at the slow rate


def test_non_finite_features_score_one_and_do_not_corrupt_state() -> None:
    det = RobustDetector(2, ("f0", "f1"), warmup=5)
    rng = np.random.default_rng(6)
    for _ in range(20):
        step(det, feats(rng.normal(0, 1, (2, 2))))
    sc = step(det, feats(np.array([[np.nan, 0.0], [np.inf, 0.0]])))
    assert sc.score.tolist() == [1.0, 1.0] and sc.top_feature.tolist() == [0, 0]
    loc, scale = det.baseline(0)
    assert np.isfinite(loc).all() and np.isfinite(scale).all()
    assert np.all(step(det, feats(rng.normal(0, 1, (2, 2)))).score < 0.5)


def test_state_is_bounded_and_grows_only_with_sensors() -> None:
    det = RobustDetector(2, ("f0",), warmup=5)
    rng = np.random.default_rng(8)
    for _ in range(300):
        step(det, feats(rng.normal(0, 1, (2, 1))))
    sizes = (det._state.loc.shape, det._state.scale.shape, det._warm.shape)
    for _ in range(300):
        step(det, feats(rng.normal(0, 1, (2, 1))))
    assert (det._state.loc.shape, det._state.scale.shape, det._warm.shape) == sizes
    step(det, feats(np.zeros((1, 1)), sensor=np.array([9])))
    assert det.n_sensors == 10 and det.windows_seen(9) == 1 and det.windows_seen(42) == 0


def test_deterministic() -> None:
    def run() -> list[list[float]]:
        det = RobustDetector(4, ("f0", "f1"), warmup=5)
        rng = np.random.default_rng(9)
        return [step(det, feats(rng.normal(0, 1, (4, 2)))).score.tolist() for _ in range(30)]

    assert run() == run()


def test_bad_inputs() -> None:
    det = RobustDetector(2, ("f0",))
    with pytest.raises(ValueError, match="names"):
        det.score(feats(np.zeros((2, 2))))
    with pytest.raises(ConfigError, match="alpha"):
        RobustDetector(2, ("f0",), alpha=0.0)
    with pytest.raises(ConfigError, match="warmup"):
        RobustDetector(2, ("f0",), warmup=0)

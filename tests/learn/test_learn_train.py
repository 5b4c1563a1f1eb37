"""fit_model: determinism, calibration, detection of shifted and decorrelated windows."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from edgeloop.errors import ConfigError, TelemetryError
from edgeloop.learn.train import THRESHOLD, Calibration, PcaT2Q, TrainedModel, fit_model

K = 14
NAMES = tuple(f"f{i:02d}" for i in range(K))


def normal_windows(n: int, seed: int) -> np.ndarray:
    """Correlated 'normal operation' features: 3 latent factors + noise, varied units."""
    structure = np.random.default_rng(2024)  # the same machine for every draw
    loadings = structure.normal(size=(3, K))
    offset = structure.uniform(-5, 50, size=K)
    scale = structure.uniform(0.1, 20, size=K)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) @ loadings + 0.3 * rng.normal(size=(n, K))
    return (offset + scale * x).astype(np.float32)


TRAIN = normal_windows(4000, seed=1)
HELD_OUT = normal_windows(20000, seed=2)
FAST = {"iforest": {"n_estimators": 30}, "pca_t2q": {}}


@pytest.fixture(scope="module", params=["pca_t2q", "iforest"])
def model(request: pytest.FixtureRequest) -> TrainedModel:
    kind = request.param
    return fit_model(TRAIN, NAMES, kind, seed=3, quantile=0.99, **FAST[kind])


def test_same_seed_gives_the_same_model(model: TrainedModel) -> None:
    again = fit_model(TRAIN, NAMES, model.kind, seed=3, quantile=0.99, **FAST[model.kind])
    assert again.calibration == model.calibration
    assert again.info == model.info
    np.testing.assert_array_equal(again.score(HELD_OUT[:500]), model.score(HELD_OUT[:500]))


def test_forest_depends_on_the_seed() -> None:
    kw = {"quantile": 0.99, "cv_folds": 2, "n_estimators": 10}
    a = fit_model(TRAIN, NAMES, "iforest", seed=1, **kw)
    b = fit_model(TRAIN, NAMES, "iforest", seed=2, **kw)
    assert not np.array_equal(a.raw(HELD_OUT[:200]), b.raw(HELD_OUT[:200]))


def test_training_info_records_rows_seed_and_fingerprint(model: TrainedModel) -> None:
    expected = hashlib.sha256(TRAIN.astype(np.float32).tobytes()).hexdigest()
    assert model.info.fingerprint == expected
    assert model.info.n_rows == len(TRAIN)
    assert model.info.seed == 3
    assert model.info.rejected == {}
    assert model.feature_names == NAMES
    assert model.threshold == THRESHOLD == 0.5


def test_non_finite_rows_are_dropped_and_counted() -> None:
    dirty = TRAIN.copy()
    dirty[[5, 17, 300], [0, 3, 13]] = [np.nan, np.inf, -np.inf]
    m = fit_model(dirty, NAMES, quantile=0.99)
    clean = fit_model(np.delete(TRAIN, [5, 17, 300], axis=0), NAMES, quantile=0.99)
    assert m.info.rejected == {"non_finite": 3}
    assert m.info.n_rows == len(TRAIN) - 3
    assert m.info.fingerprint == clean.info.fingerprint
    np.testing.assert_array_equal(m.score(HELD_OUT[:100]), clean.score(HELD_OUT[:100]))


def test_false_positive_rate_on_held_out_normal_is_near_the_quantile(
    model: TrainedModel,
) -> None:
    scores = model.score(HELD_OUT)
    assert scores.min() >= 0.0 and scores.max() < 1.0
    fpr = float(np.mean(scores >= model.threshold))
    assert 0.005 <= fpr <= 0.02, fpr  # calibrated at quantile 0.99


def test_default_quantile_is_0999() -> None:
    train = normal_windows(5000, seed=4)
    m = fit_model(train, NAMES)
    assert m.calibration.quantile == 0.999
    fpr = float(np.mean(m.score(normal_windows(50000, seed=5)) >= 0.5))
    assert 0.0002 <= fpr <= 0.003, fpr


def test_mean_shift_scores_above_threshold(model: TrainedModel) -> None:
    # 4 training standard deviations on every feature: both kinds must see it.
    shifted = HELD_OUT[:2000] + 4.0 * TRAIN.std(axis=0)
    assert np.mean(model.score(shifted) >= model.threshold) > 0.95


def test_pca_sees_a_broken_correlation_that_marginals_hide() -> None:
    m = fit_model(TRAIN, NAMES, quantile=0.99)
    mu, sd = TRAIN.mean(axis=0), TRAIN.std(axis=0)
    broken = HELD_OUT[:2000].copy()
    broken[:, :4] = 2 * mu[:4] - broken[:, :4]  # mirror 4 features: same marginals
    # Each feature on its own looks normal...
    assert np.median(np.abs((broken - mu) / sd).max(axis=1)) < 2.0
    # ...but the joint model flags most windows, through Q (off the normal subspace).
    flagged = m.score(broken) >= m.threshold
    assert flagged.mean() > 0.8
    est = m.estimator
    assert isinstance(est, PcaT2Q)
    t2, q = est.statistics(broken[flagged])
    assert np.mean(q / est.q_ref > t2 / est.t2_ref) > 0.9


def test_pca_keeps_the_latent_dimension() -> None:
    m = fit_model(TRAIN, NAMES)
    assert m.info.params["n_components"] == 3  # 3 latent factors, 95 % variance
    m2 = fit_model(TRAIN, NAMES, n_components=5)
    assert m2.info.params["n_components"] == 5


def test_calibration_maps_the_quantile_to_one_half() -> None:
    cal = Calibration(quantile=0.99, zero=0.2, at_quantile=0.6)
    s = cal.apply([-1.0, 0.2, 0.4, 0.6, 1.0, 100.0, np.inf])
    assert s[0] == s[1] == 0.0
    assert s[3] == pytest.approx(0.5)
    assert np.all(np.diff(s[1:]) > 0) and s[-2] < 1.0 and s[-1] == 1.0


def test_scores_reject_a_wrong_width(model: TrainedModel) -> None:
    with pytest.raises(TelemetryError, match=r"features.*\(n, 14\)"):
        model.score(HELD_OUT[:10, :13])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kind": "kmeans"}, ConfigError, "kind: unknown model kind 'kmeans'"),
        ({"quantile": 1.0}, ConfigError, r"quantile: must be in \(0, 1\)"),
        (
            {"quantile": 0.9999},
            ConfigError,
            "features: 4000 usable normal rows, need at least 10000",
        ),
        (
            {"kind": "iforest", "n_estimators": 0},
            ConfigError,
            "params: The 'n_estimators' parameter",
        ),
        ({"cv_folds": 1}, ConfigError, "cv_folds"),
        ({"depth": 3}, ConfigError, r"\['depth'\] not understood by kind 'pca_t2q'"),
        ({"variance": 1.0}, ConfigError, "variance"),
        ({"n_components": 15}, ConfigError, r"n_components: must be an int in \[1, 14\]"),
        ({"feature_names": NAMES[:13]}, TelemetryError, "has 14 columns but 13 feature_names"),
        ({"feature_names": ("a",) * K}, ConfigError, r"duplicate names \['a'\]"),
        ({"feature_names": "abc"}, ConfigError, "single string"),
        ({"features": TRAIN[:, 0]}, TelemetryError, "expected a 2-D"),
        ({"features": np.ones((4000, K))}, TelemetryError, "every column is constant"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], error: type, match: str) -> None:
    args: dict[str, object] = {"features": TRAIN, "feature_names": NAMES, **kwargs}
    with pytest.raises(error, match=match):
        fit_model(**args)  # type: ignore[arg-type]

"""Fit the multivariate anomaly model on windows of normal operation (hub side).

Two model kinds share one calibration:

``pca_t2q``
    ``StandardScaler`` → ``PCA`` keeping the components that explain ``variance`` (default
    95 %) of the standardised variance. Two statistics per window: Hotelling's T² on the
    retained components (``sum(p_j**2 / lambda_j)``, "unusual *within* the normal
    subspace", e.g. a mean shift) and Q, the squared prediction error of the
    reconstruction ("outside the normal subspace", e.g. a broken correlation between
    features). Each is divided by its own ``quantile`` on normal data and the raw
    statistic is the larger of the two ratios.
``iforest``
    ``IsolationForest``; the raw statistic is ``-score_samples`` (the path-length anomaly
    score of Liu et al., in (0, 1], about 0.5 for typical points).

Calibration (see :class:`Calibration`): a raw statistic ``r`` becomes

    ``d = max(r - zero, 0) / (r_q - zero)``,  ``score = d / (1 + d)``

where ``r_q`` is the ``quantile`` (default 0.999) of ``r`` on normal data and ``zero`` is
the statistic's natural zero (0 for T²/Q, which vanish at the centre of the training
data; the normal-data median for the isolation forest, whose score has no natural zero,
so the typical half of normal windows scores exactly 0). The map is monotone and smooth
above ``zero``, lands in [0, 1) (1 only when ``r`` overflows to infinity), and a window scores ``>= THRESHOLD`` (0.5) exactly when ``r >= r_q``: the fixed
threshold flags the chosen ``1 - quantile`` fraction of normal windows.

``r_q`` is estimated *out of fold*: the model is fitted ``cv_folds`` times on the other
folds and scored on the held-out one, so the quantile reflects unseen normal windows
(an in-sample PCA fits its own training rows too well and would under-state Q, raising
the false-positive rate on new data). The final model is then refitted on every row. An
empirical tail quantile needs rows: at least ``1 / (1 - quantile)`` of them.

Everything is deterministic for a ``seed``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

from edgeloop.errors import ConfigError, RejectReason, TelemetryError

ModelKind = Literal["pca_t2q", "iforest"]
F64 = npt.NDArray[np.float64]

THRESHOLD = 0.5
"""Score at or above which a window is anomalous; the calibration puts ``r_q`` here."""

_PARAMS: dict[str, dict[str, Any]] = {
    "pca_t2q": {"variance": 0.95, "n_components": None},
    "iforest": {"n_estimators": 100, "max_samples": "auto", "max_features": 1.0},
}
# Floors that keep the statistics finite on degenerate data (a rank-deficient matrix
# leaves Q identically 0; a component can carry almost no variance).
_TINY = 1e-9


@dataclass(frozen=True, slots=True)
class Calibration:
    """Maps a raw statistic ``r`` (larger = more anomalous) to a score in [0, 1].

    ``score = d / (1 + d)`` with ``d = max(r - zero, 0) / (at_quantile - zero)``, so
    ``score == 0.5`` exactly at ``r == at_quantile`` (and 1 for ``r = inf``).

    Attributes:
        quantile: the normal-data quantile that maps to 0.5.
        zero: raw value that maps to 0.
        at_quantile: raw value at ``quantile`` on (out-of-fold) normal data.
    """

    quantile: float
    zero: float
    at_quantile: float

    def apply(self, raw: npt.ArrayLike) -> F64:
        """Calibrated scores in [0, 1] for raw statistics ``raw``."""
        d = np.maximum(np.asarray(raw, dtype=np.float64) - self.zero, 0.0)
        d /= self.at_quantile - self.zero
        return 1.0 - 1.0 / (1.0 + d)  # = d / (1 + d), but 1 (not inf / inf) for d = inf


@dataclass(frozen=True, slots=True)
class PcaT2Q:
    """Standardise → PCA, and the T² / Q statistics with their normalisers.

    Attributes:
        scaler: fitted ``StandardScaler``.
        pca: fitted ``PCA`` (not whitened).
        t2_ref: T² at the calibration quantile (out of fold).
        q_ref: Q at the calibration quantile (out of fold).
    """

    scaler: StandardScaler
    pca: PCA
    t2_ref: float
    q_ref: float

    @property
    def eigenvalues(self) -> F64:
        """Variance of each retained component (floored; T² divides by it)."""
        return np.maximum(np.asarray(self.pca.explained_variance_, dtype=np.float64), _TINY)

    def statistics(self, x: npt.ArrayLike) -> tuple[F64, F64]:
        """Hotelling's T² and Q (squared reconstruction error) per row of ``x``."""
        return _t2_q(self.scaler, self.pca, np.asarray(x, dtype=np.float64))

    def raw(self, x: npt.ArrayLike) -> F64:
        """``max(T² / t2_ref, Q / q_ref)`` per row."""
        t2, q = self.statistics(x)
        return np.maximum(t2 / self.t2_ref, q / self.q_ref)


@dataclass(frozen=True, slots=True)
class IForestModel:
    """An isolation forest; the raw statistic is ``-score_samples`` (in (0, 1])."""

    forest: IsolationForest

    def raw(self, x: npt.ArrayLike) -> F64:
        """Path-length anomaly score per row (about 0.5 typical, towards 1 anomalous)."""
        s = self.forest.score_samples(np.asarray(x, dtype=np.float32))
        return -np.asarray(s, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class TrainingInfo:
    """Provenance of a trained model.

    Attributes:
        n_rows: rows used for training (after dropping rejected ones).
        fingerprint: sha256 (hex) of the used training matrix as C-ordered float32 bytes.
        seed: the random seed.
        rejected: rows dropped, by :class:`~edgeloop.errors.RejectReason` value.
        params: the effective model parameters (defaults filled in, plus derived values
            such as ``n_components``).
    """

    n_rows: int
    fingerprint: str
    seed: int
    rejected: Mapping[str, int] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, eq=False)  # holds arrays and estimators: identity eq
class TrainedModel:
    """A fitted, calibrated multivariate model, ready for :func:`~edgeloop.learn.to_onnx`.

    Attributes:
        kind: ``"pca_t2q"`` or ``"iforest"``.
        feature_names: one name per input column, in order.
        group: the window group the model was trained for (``""`` = any).
        estimator: :class:`PcaT2Q` or :class:`IForestModel`.
        calibration: raw statistic → [0, 1] score.
        feature_mean, feature_scale: per-feature mean and standard deviation of the
            training data (the edge uses them to name the most deviant feature).
        info: training provenance.
        threshold: score at or above which a window is anomalous.
    """

    kind: ModelKind
    feature_names: tuple[str, ...]
    group: str
    estimator: PcaT2Q | IForestModel
    calibration: Calibration
    feature_mean: F64
    feature_scale: F64
    info: TrainingInfo
    threshold: float = THRESHOLD

    def raw(self, features: npt.ArrayLike) -> F64:
        """Uncalibrated anomaly statistic per row of ``features`` ``(n, k)``."""
        return self.estimator.raw(self._check(features))

    def score(self, features: npt.ArrayLike) -> F64:
        """Calibrated anomaly score in [0, 1] per row of ``features`` ``(n, k)``."""
        return self.calibration.apply(self.raw(features))

    def _check(self, features: npt.ArrayLike) -> npt.NDArray[np.float32]:
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise TelemetryError(
                "features",
                RejectReason.MALFORMED,
                f"expected shape (n, {len(self.feature_names)}), got {x.shape}",
            )
        return x


def fingerprint(features: npt.ArrayLike) -> str:
    """sha256 (hex) of a matrix as C-ordered float32 bytes: the training-data identity."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    return hashlib.sha256(x.tobytes()).hexdigest()


CV_FOLDS = 5
"""Folds of the out-of-fold calibration unless ``fit_model`` is told otherwise."""


def _tail(x: F64, quantile: float) -> float:
    """The ``quantile`` of ``x`` as an exceedance level: the order statistic at rank
    ``quantile * (n + 1)`` (numpy's "weibull" method), which a new normal row exceeds with
    probability ``1 - quantile`` on average. numpy's default (linear) method puts the
    0.999 quantile of 1000 rows on the second-largest, exceeded twice as often: measured,
    6 models calibrated on 1000 rows of the simulator's vibration features flagged a median
    0.25 % of fresh normal windows (0.15 % with this rank; 0.11 % from 4000 rows).
    """
    return float(np.quantile(x, quantile, method="weibull"))


def rows_needed(quantile: float, cv_folds: int, n_features: int) -> int:
    """The fewest normal rows :func:`fit_model` accepts: an empirical ``quantile`` needs
    ``1 / (1 - quantile)`` of them, each fold two, and PCA one more than the features."""
    # round(): 1 / (1 - 0.9999) is 10000.0000000005 in floating point, not 10001 rows.
    return max(math.ceil(round(1.0 / (1.0 - quantile), 6)), 2 * cv_folds, n_features + 1)


def fit_model(
    features: npt.ArrayLike,
    feature_names: Sequence[str],
    kind: ModelKind = "pca_t2q",
    seed: int = 0,
    quantile: float = 0.999,
    *,
    group: str = "",
    cv_folds: int = CV_FOLDS,
    **params: Any,
) -> TrainedModel:
    """Fit and calibrate a model on feature windows of normal operation.

    Args:
        features: ``(n, k)`` feature matrix of normal windows. Rows with a non-finite
            value are dropped and counted in ``info.rejected``.
        feature_names: ``k`` distinct, non-empty names, in column order.
        kind: ``"pca_t2q"`` (default) or ``"iforest"``.
        seed: random seed (fold split, isolation forest).
        quantile: normal-data quantile that maps to the 0.5 threshold; ``1 - quantile``
            is the expected false-positive rate per window.
        group: window group the model is for (recorded in the model).
        cv_folds: folds for the out-of-fold calibration (>= 2).
        **params: ``pca_t2q``: ``variance`` (fraction of variance kept, default 0.95) or
            ``n_components`` (int, overrides ``variance``). ``iforest``:
            ``n_estimators`` (100), ``max_samples`` ("auto"), ``max_features`` (1.0).

    Returns:
        The fitted :class:`TrainedModel`.

    Raises:
        ConfigError: unknown kind or parameter, bad quantile, too few rows.
        TelemetryError: ``features`` is not a 2-D matrix matching ``feature_names``.
    """
    if kind not in get_args(ModelKind):
        raise ConfigError(
            f"kind: unknown model kind {kind!r}; expected one of {get_args(ModelKind)}"
        )
    names = _check_names(feature_names)
    x, rejected = _check_matrix(features, len(names))
    opts = _check_params(kind, params, len(names))
    if not 0.0 < quantile < 1.0:
        raise ConfigError(f"quantile: must be in (0, 1), got {quantile}")
    if cv_folds < 2:
        raise ConfigError(f"cv_folds: must be >= 2, got {cv_folds}")
    need = rows_needed(quantile, cv_folds, len(names))
    if x.shape[0] < need:
        raise ConfigError(
            f"features: {x.shape[0]} usable normal rows, need at least {need} for quantile "
            f"{quantile}, {cv_folds} folds and {len(names)} features (lower the quantile or "
            "train on more windows)"
        )

    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    std = x64.std(axis=0)
    if not np.any(std > _TINY):
        raise TelemetryError("features", RejectReason.MALFORMED, "every column is constant")
    scale = np.where(std > _TINY, std, 1.0)
    folds = list(KFold(n_splits=cv_folds, shuffle=True, random_state=seed).split(x))

    estimator: PcaT2Q | IForestModel
    if kind == "pca_t2q":
        estimator, calibration = _fit_pca_t2q(x64, folds, quantile, seed, opts)
        opts["n_components"] = int(estimator.pca.n_components_)
        opts["explained_variance_ratio"] = float(estimator.pca.explained_variance_ratio_.sum())
    else:
        estimator, calibration = _fit_iforest(x, folds, quantile, seed, opts)
    info = TrainingInfo(
        n_rows=int(x.shape[0]),
        fingerprint=fingerprint(x),
        seed=seed,
        rejected=rejected,
        params={"cv_folds": cv_folds, **opts},
    )
    return TrainedModel(kind, names, group, estimator, calibration, mean, scale, info)


def _fit_pca_t2q(
    x: F64, folds: list[tuple[Any, Any]], quantile: float, seed: int, opts: dict[str, Any]
) -> tuple[PcaT2Q, Calibration]:
    # Fix the component count on all rows first so that every fold model has the same
    # subspace dimension as the final one (a variance fraction could pick differently).
    n_comp = opts["n_components"]
    if n_comp is None:
        scaler, pca = _fit_scaler_pca(x, float(opts["variance"]), seed)
        n_comp = int(pca.n_components_)
    else:
        scaler, pca = _fit_scaler_pca(x, int(n_comp), seed)
    t2_oof = np.empty(x.shape[0])
    q_oof = np.empty(x.shape[0])
    for train, test in folds:
        s, p = _fit_scaler_pca(x[train], n_comp, seed)
        t2_oof[test], q_oof[test] = _t2_q(s, p, x[test])
    k = x.shape[1]
    # Floors scale with k (Q sums k squared standardised residuals) so that a residual
    # subspace that is empty (all variance retained) yields finite, tiny ratios.
    t2_ref = max(_tail(t2_oof, quantile), _TINY * k)
    q_ref = max(_tail(q_oof, quantile), _TINY * k)
    raw_oof = np.maximum(t2_oof / t2_ref, q_oof / q_ref)
    at_q = max(_tail(raw_oof, quantile), _TINY)
    return PcaT2Q(scaler, pca, t2_ref, q_ref), Calibration(quantile, 0.0, at_q)


def _fit_iforest(
    x: npt.NDArray[np.float32],
    folds: list[tuple[Any, Any]],
    quantile: float,
    seed: int,
    opts: dict[str, Any],
) -> tuple[IForestModel, Calibration]:
    raw_oof = np.empty(x.shape[0])
    for train, test in folds:
        raw_oof[test] = _forest(x[train], seed, opts).raw(x[test])
    zero = float(np.median(raw_oof))
    at_q = max(_tail(raw_oof, quantile), zero + _TINY)
    return _forest(x, seed, opts), Calibration(quantile, zero, at_q)


def _forest(x: npt.NDArray[np.float32], seed: int, opts: dict[str, Any]) -> IForestModel:
    try:
        return IForestModel(IsolationForest(random_state=seed, **opts).fit(x))
    except ValueError as exc:  # the data is validated by now: sklearn rejects a parameter
        raise ConfigError(f"params: {exc}") from exc


def _fit_scaler_pca(x: F64, n_components: float | int, seed: int) -> tuple[StandardScaler, PCA]:
    scaler = StandardScaler().fit(x)
    # "auto" picks the eigendecomposition of the k x k covariance for tall data (n >= 10 k,
    # the usual case: ~5x faster than a full SVD of the n x k matrix, equally exact); the
    # seed only matters if it ever picks the randomized solver (both dims > 500).
    pca = PCA(n_components=n_components, svd_solver="auto", random_state=seed)
    return scaler, pca.fit(scaler.transform(x))


def _t2_q(scaler: StandardScaler, pca: PCA, x: F64) -> tuple[F64, F64]:
    z = scaler.transform(x)
    p = pca.transform(z)
    lam = np.maximum(np.asarray(pca.explained_variance_, dtype=np.float64), _TINY)
    t2 = np.einsum("ij,ij->i", p, p / lam)
    resid = z - pca.inverse_transform(p)
    q = np.einsum("ij,ij->i", resid, resid)
    return t2, q


def _check_names(feature_names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(feature_names, str):
        raise ConfigError("feature_names: expected a sequence of names, got a single string")
    names = tuple(feature_names)
    if not names:
        raise ConfigError("feature_names: empty")
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise ConfigError(f"feature_names: names must be non-empty strings, got {bad!r}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"feature_names: duplicate names {dup}")
    return names


def _check_matrix(
    features: npt.ArrayLike, k: int
) -> tuple[npt.NDArray[np.float32], dict[str, int]]:
    try:
        x = np.asarray(features, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TelemetryError("features", RejectReason.WRONG_TYPE, str(exc)) from exc
    if x.ndim != 2:
        raise TelemetryError(
            "features", RejectReason.MALFORMED, f"expected a 2-D (n, k) matrix, got shape {x.shape}"
        )
    if x.shape[1] != k:
        raise TelemetryError(
            "features",
            RejectReason.MALFORMED,
            f"has {x.shape[1]} columns but {k} feature_names were given",
        )
    finite = np.isfinite(x).all(axis=1)
    n_bad = int(x.shape[0] - np.count_nonzero(finite))
    rejected = {RejectReason.NON_FINITE.value: n_bad} if n_bad else {}
    return np.ascontiguousarray(x[finite]), rejected


def _check_params(kind: str, params: Mapping[str, Any], k: int) -> dict[str, Any]:
    allowed = _PARAMS[kind]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"params: {unknown} not understood by kind {kind!r}; expected some of {sorted(allowed)}"
        )
    opts = {**allowed, **params}
    if kind == "pca_t2q":
        v = opts["variance"]
        # A float of exactly 1 would mean "one component" to sklearn: keep (0, 1) open.
        if isinstance(v, bool) or not isinstance(v, float | int) or not 0.0 < v < 1.0:
            raise ConfigError(f"variance: must be in (0, 1), got {v!r}")
        n = opts["n_components"]
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= k):
            raise ConfigError(f"n_components: must be an int in [1, {k}], got {n!r}")
    return opts

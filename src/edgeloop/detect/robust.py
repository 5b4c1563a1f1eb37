"""A streaming robust z-score detector, vectorized over sensors.

For every (sensor, feature) the detector keeps a location and a scale:

* **warm-up**: the first ``warmup`` windows of a sensor are buffered; their median and
  MAD (or, if over half of them are identical, their mean absolute deviation) start the
  baseline. Scores are 0 and ``confidence`` ramps from 0 to 1 meanwhile.
* **tracking**: after warm-up, location and scale follow an EWMA with rate ``alpha`` of
  the *clipped* residual (Huber-style, at ``clip`` scales), so one outlier moves the
  baseline by a bounded amount. Windows the detector flags as anomalous do not update
  the scale and move the location at ``alpha * anomalous_rate`` only, by at most
  ``clip`` scales: a long fault stays anomalous, yet a genuine regime change of ``z``
  scales becomes normal after about ``(z - z_threshold) / (alpha * anomalous_rate *
  clip)`` windows (~3000 for ``z = 15`` with the defaults).
* **settling** (``settle > 0``, off by default): a sensor flagged for ``settle``
  consecutive windows is at a new operating point (a load change, a new product on the
  line), not in a fault that must stay visible: the features that moved get the median of
  its last few windows as their location, so the alarm is raised once and ends. A level
  clearly still moving then (a temperature approaching its new equilibrium) gets half the
  range of those windows as its scale, narrowing back as it stills, so its approach
  does not alarm again and again. The location it left is kept as the sensor's *home*; a
  later window that is normal against home returns the sensor there silently, so the end
  of a long fault, or going back to the old regime, raises no second alarm. See :mod:`edgeloop.detect.multivariate` for the same idea over a
  machine's sensors together.

The score of a window is the largest robust ``|z|`` over its features mapped smoothly to
[0, 1] with ``s = z**2 / (z**2 + z_threshold**2)``: ``s == 0.5`` exactly at
``|z| == z_threshold``, the detector's threshold. Non-finite features score 1.

Dispersion features (``log_features``, by default ``std`` and ``p2p``) are tracked as
``log(x + eps)`` with ``eps`` a thousandth of the warm-up median: their spread is
relative, and a stuck sensor whose std drops to exactly 0 lands ~7 log-units below a
baseline whose spread is a fraction of one, even for 10-sample windows. The scale has a
floor ``max(min_scale, rel_scale * |location|)``: a feature that was *always* constant
(scale 0) then reacts to real changes but not to float rounding.

State is bounded per sensor: location, scale, ``eps`` and home per feature, a window
count, an alarm-run count, the warm-up buffer (``warmup`` feature rows) and, when
settling, the last few windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgeloop.detect.params import bound, require
from edgeloop.detect.ranks import ranks
from edgeloop.pipeline.types import Features, Scores

__all__ = ["RobustDetector"]

_F64 = npt.NDArray[np.float64]
# sigma of a Gaussian from its mean absolute deviation and from its MAD.
_MEAN_ABS_TO_SIGMA = float(np.sqrt(np.pi / 2.0))
_MAD_TO_SIGMA = 1.4826
_EPS_REL = 1e-3
_EPS_ABS = 1e-12
# Settling moves a feature's location to the median of this many of its last windows
# (fewer if ``settle`` is smaller): enough to be robust to one noisy window, few enough to
# land near the level the sensor has now rather than where the alarm began.
_RECENT = 5
# A feature moves at settling only if its recent median is more than this many scales
# from its location: the features that did not change keep their baseline.
_SETTLE_MOVED = 3.0
# Half the range of _RECENT noisy windows exceeds this many scales rarely (~5 % for 5
# Gaussian windows): above it, a settling level is still moving.
_MOVING = 2.0
# Widen the warm-up scale by this many standard errors (relative SE ~ 1/sqrt(warmup)):
# a spread estimated from ~20 windows is too small in a few (sensor, feature) pairs out
# of thousands, and each would raise false alarms until the EWMA corrects it.
_WARMUP_WIDEN = 2.0


@dataclass(slots=True)
class _State:
    """The part of the state that :meth:`RobustDetector.score` advances speculatively."""

    seen: npt.NDArray[np.int64]  # (S,) windows learned per sensor
    loc: _F64  # (S, F)
    scale: _F64  # (S, F), a sigma estimate
    eps: _F64  # (S, F), offset of the log transform (0 for linear features)
    run: npt.NDArray[np.int64]  # (S,) consecutive flagged windows
    away: npt.NDArray[np.bool_]  # (S,) settled away from home
    home: _F64  # (S, F), the location settling left (valid where away)
    recent: _F64  # (S, R, F), the last R transformed windows (ring, by seen % R)

    def copy(self) -> _State:
        return _State(
            self.seen.copy(), self.loc.copy(), self.scale.copy(), self.eps.copy(),
            self.run.copy(), self.away.copy(), self.home.copy(), self.recent.copy(),
        )  # fmt: skip

    @classmethod
    def zeros(cls, s: int, f: int, r: int) -> _State:
        i, b = np.zeros(s, np.int64), np.zeros(s, np.bool_)
        return _State(
            i, np.zeros((s, f)), np.zeros((s, f)), np.zeros((s, f)),
            i.copy(), b, np.zeros((s, f)), np.zeros((s, r, f)),
        )  # fmt: skip

    def grown(self, k: int) -> _State:
        """This state with ``k`` new, empty sensors."""
        n = _State.zeros(k, self.loc.shape[1], self.recent.shape[1])
        c = np.concatenate
        return _State(
            c([self.seen, n.seen]), c([self.loc, n.loc]), c([self.scale, n.scale]),
            c([self.eps, n.eps]), c([self.run, n.run]), c([self.away, n.away]),
            c([self.home, n.home]), c([self.recent, n.recent]),
        )  # fmt: skip


class RobustDetector:
    """Per (sensor, feature) robust z-scores with a clipped EWMA baseline.

    Args:
        n_sensors: initial number of sensors (catalog indices); grows on demand.
        feature_names: the feature columns this detector expects, in order.
        alpha: EWMA rate of the baseline for normal windows, in (0, 1].
        z_threshold: robust ``|z|`` at which a window is anomalous (score 0.5).
        warmup: windows per sensor before scores are given (>= 1).
        clip: residuals are clipped at ``clip`` scales before updating the baseline.
        anomalous_rate: fraction of ``alpha`` used for windows flagged anomalous.
        min_scale: absolute floor of the scale.
        rel_scale: floor of the scale relative to ``|location|``.
        log_features: features tracked in log space (missing names are ignored).
        settle: consecutive flagged windows after which a sensor is at a new operating
            point (see the module docstring); 0: never, a lasting shift stays anomalous.
        name: detector name written into :class:`Scores`.
    """

    def __init__(
        self,
        n_sensors: int,
        feature_names: Sequence[str],
        alpha: float = 0.02,
        z_threshold: float = 6.0,
        warmup: int = 20,
        clip: float = 3.0,
        anomalous_rate: float = 0.05,
        min_scale: float = 1e-6,
        rel_scale: float = 1e-3,
        log_features: Sequence[str] = ("std", "p2p"),
        settle: int = 0,
        name: str = "robust",
    ) -> None:
        require(
            "robust",
            {
                "alpha": bound(alpha, "(0, 1]"),
                "z_threshold": bound(z_threshold, "> 0"),
                "warmup": bound(warmup, ">= 1"),
                "clip": bound(clip, "> 0"),
                "anomalous_rate": bound(anomalous_rate, "[0, 1]"),
                "min_scale": bound(min_scale, ">= 0"),
                "rel_scale": bound(rel_scale, ">= 0"),
                "settle": bound(settle, ">= 0"),
                "feature_names": (bool(feature_names), "must not be empty"),
            },
        )
        self.name = name
        self.feature_names = tuple(feature_names)
        self.alpha = float(alpha)
        self.z_threshold = float(z_threshold)
        self.warmup = int(warmup)
        self.clip = float(clip)
        self.anomalous_rate = float(anomalous_rate)
        self.min_scale = float(min_scale)
        self.rel_scale = float(rel_scale)
        self.settle = int(settle)
        self.threshold = 0.5
        self._inflate = 1.0 + _WARMUP_WIDEN / np.sqrt(self.warmup)
        self._is_log = np.array([f in set(log_features) for f in self.feature_names])
        self._log_cols = np.flatnonzero(self._is_log)
        f = len(self.feature_names)
        s = max(int(n_sensors), 0)
        self._recent = min(self.settle, _RECENT) if self.settle else 0
        self._state = _State.zeros(s, f, self._recent)
        self._warm = np.zeros((s, self.warmup, f), np.float64)
        self._pending: tuple[Features, npt.NDArray[np.bool_], _State] | None = None

    # -- the Detector protocol -------------------------------------------------------
    def score(self, features: Features) -> Scores:
        """Score every window; windows of one sensor are taken in time order.

        The k-th window of a sensor in the block is scored against the baseline as
        learned from the windows before it (as if :meth:`learn` had run in between); the
        committed state is not changed until :meth:`learn`.
        """
        self._check(features)
        state = self._state.copy()
        scores = self._run(features, state, None)
        self._pending = (features, scores.anomalous.copy(), state)
        return scores

    def learn(self, features: Features, scores: Scores) -> None:
        """Update the baselines with ``features``; windows ``scores`` flags adapt slowly."""
        self._check(features)
        anomalous = scores.anomalous
        if anomalous.shape != (len(features),):
            raise ValueError(
                f"scores.score: shape {anomalous.shape} does not match {len(features)} windows"
            )
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is features and np.array_equal(pending[1], anomalous):
            self._state = pending[2]  # score() already advanced exactly this way
            return
        state = self._state.copy()
        self._run(features, state, anomalous)
        self._state = state

    # -- introspection ----------------------------------------------------------------
    @property
    def n_sensors(self) -> int:
        return int(self._state.seen.shape[0])

    def baseline(self, sensor: int) -> tuple[_F64, _F64]:
        """Location and scale of each feature of ``sensor`` (log space for log features)."""
        return self._state.loc[sensor].copy(), self._state.scale[sensor].copy()

    def windows_seen(self, sensor: int) -> int:
        return int(self._state.seen[sensor]) if sensor < self.n_sensors else 0

    def settled_away(self, sensor: int) -> bool:
        """Whether ``sensor`` settled at a new operating point and has not come home."""
        return bool(self._state.away[sensor]) if sensor < self.n_sensors else False

    # -- internals ----------------------------------------------------------------------
    def _check(self, features: Features) -> None:
        if tuple(features.names) != self.feature_names:
            raise ValueError(
                f"features.names: {list(features.names)} do not match the detector's "
                f"{list(self.feature_names)}"
            )
        if len(features) and int(features.sensor.max()) >= self.n_sensors:
            self._grow(int(features.sensor.max()) + 1)

    def _grow(self, n: int) -> None:
        k, f = n - self.n_sensors, len(self.feature_names)
        self._state = self._state.grown(k)
        self._warm = np.concatenate([self._warm, np.zeros((k, self.warmup, f))])
        self._pending = None

    def _run(self, features: Features, st: _State, given: npt.NDArray[np.bool_] | None) -> Scores:
        """Score and learn ``features`` into ``st``, one rank of windows per sensor at a time.

        ``given``: anomaly flags to learn with (``None``: the flags computed here).
        """
        n = len(features)
        score = np.zeros(n, np.float32)
        conf = np.zeros(n, np.float32)
        top = np.full(n, -1, np.int32)
        # One errstate for the whole block: non-finite features are handled explicitly
        # (scored 1, never learnt) and must not warn on the way.
        with np.errstate(all="ignore"):
            for rows in ranks(features.sensor, features.t0_ns):
                self._rank(features, rows, st, given, score, conf, top)
        return Scores(score, self.threshold, conf, top, self.name)

    def _rank(
        self,
        features: Features,
        rows: npt.NDArray[np.intp],
        st: _State,
        given: npt.NDArray[np.bool_] | None,
        score: npt.NDArray[np.float32],
        conf: npt.NDArray[np.float32],
        top: npt.NDArray[np.int32],
    ) -> None:
        """Windows ``rows`` (distinct sensors): warm up or score and track, in place."""
        sens = features.sensor[rows].astype(np.intp)
        x = features.values[rows].astype(np.float64)
        seen = st.seen[sens]
        conf[rows] = np.minimum(seen / self.warmup, 1.0)
        warm = seen < self.warmup
        if not warm.any():  # the steady state
            flags = None if given is None else given[rows]
            score[rows], top[rows] = self._track(st, sens, x, flags)
            return
        self._warm_up(st, sens[warm], x[warm])
        ready = ~warm
        if ready.any():
            r = rows[ready]
            flags = None if given is None else given[r]
            sc, tp = self._track(st, sens[ready], x[ready], flags)
            score[r] = sc
            top[r] = tp

    def _warm_up(self, st: _State, sens: npt.NDArray[np.intp], x: _F64) -> None:
        """Buffer warm-up rows; sensors whose buffer fills get their initial baseline.

        The buffer is shared with the speculative state of :meth:`score`: a row written
        there is written again, identically and at the same place, when it is learnt.
        """
        self._warm[sens, st.seen[sens]] = x
        st.seen[sens] += 1
        done = sens[st.seen[sens] == self.warmup]
        if done.size == 0:
            return
        buf = self._warm[done]  # (k, warmup, F)
        med_raw = _finite_median(buf)
        eps = np.where(self._is_log, np.maximum(np.abs(med_raw) * _EPS_REL, _EPS_ABS), 0.0)
        st.eps[done] = eps
        y = self._transform(buf, eps[:, None, :])
        loc = _finite_median(y)
        with np.errstate(invalid="ignore"):
            dev = np.abs(y - loc[:, None, :])
        mad = _finite_median(dev) * _MAD_TO_SIGMA
        # The MAD of a few windows often underestimates the spread of skewed features
        # (crest, p2p: maxima); the mean absolute deviation, clipped at 4 MAD-sigmas so
        # one outlier cannot inflate it, sees their tails. Take the larger of the two.
        finite = np.isfinite(dev)
        n_fin = np.maximum(finite.sum(axis=1), 1)
        lim = np.where(mad > 0, 4.0 * mad, np.inf)[:, None, :]
        clipped = np.where(finite, np.minimum(dev, lim), 0.0)
        mean_abs = clipped.sum(axis=1) / n_fin * _MEAN_ABS_TO_SIGMA
        st.loc[done] = loc
        st.scale[done] = np.maximum(mad, mean_abs) * self._inflate

    def _transform(self, x: _F64, eps: _F64) -> _F64:
        """``x`` with the log features replaced by ``log(max(x, 0) + eps)`` (a copy)."""
        y = x.copy()
        if self._log_cols.size:
            cols = self._log_cols
            with np.errstate(invalid="ignore", divide="ignore"):
                y[..., cols] = np.log(np.maximum(x[..., cols], 0.0) + eps[..., cols])
        return y

    def _track(
        self,
        st: _State,
        sens: npt.NDArray[np.intp],
        x: _F64,
        flags: npt.NDArray[np.bool_] | None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
        """Score rows of distinct, warmed-up sensors, then update their baselines.

        Runs under the caller's ``np.errstate(all="ignore")``.
        """
        y = self._transform(x, st.eps[sens])
        finite = np.isfinite(y)
        if self.settle:
            self._come_home(st, sens, y)
        loc, scale = st.loc[sens], st.scale[sens]
        eff = self._eff(loc, scale)
        resid = y - loc
        az = np.where(finite, np.abs(resid) / eff, np.inf)
        zmax = az.max(axis=1)
        t2 = self.z_threshold * self.z_threshold
        # 1 - t2/(z2 + t2) == z2/(z2 + t2), but stays exact for z = inf.
        score = 1.0 - t2 / (zmax * zmax + t2)
        top = az.argmax(axis=1).astype(np.int32)
        anomalous = score >= self.threshold if flags is None else flags
        # Right after warm-up the baseline rests on few windows: average the next ones in
        # with equal weight (rate 1/(n+1)) until the EWMA rate takes over.
        base = np.maximum(self.alpha, 1.0 / (st.seen[sens] + 1.0))
        rate = np.where(anomalous, base * self.anomalous_rate, base)[:, None]
        lim = self.clip * eff
        r = np.where(finite, np.clip(resid, -lim, lim), 0.0)
        st.loc[sens] = loc + rate * r
        new_scale = (1.0 - rate) * scale + rate * _MEAN_ABS_TO_SIGMA * np.abs(r)
        # Flagged windows move the location only: widening the scale by their large
        # residuals would absorb a long fault within a few hundred windows.
        keep = ~finite | np.asarray(anomalous)[:, None]
        st.scale[sens] = np.where(keep, scale, new_scale)
        if self.settle:
            self._settle(st, sens, y, np.asarray(anomalous), loc, eff)
        st.seen[sens] += 1
        return score.astype(np.float32), top

    def _eff(self, loc: _F64, scale: _F64) -> _F64:
        """The scale z-scores divide by: the tracked one, floored."""
        return np.maximum(scale, np.maximum(self.min_scale, self.rel_scale * np.abs(loc)))

    def _come_home(self, st: _State, sens: npt.NDArray[np.intp], y: _F64) -> None:
        """Sensors settled away whose window is normal against home, and nearer to it
        than to where they settled, go back there."""
        away = st.away[sens]
        if not away.any():
            return
        s, ya = sens[away], y[away]
        home, loc, scale = st.home[s], st.loc[s], st.scale[s]
        z_home = (np.abs(ya - home) / self._eff(home, scale)).max(axis=1)
        z_here = (np.abs(ya - loc) / self._eff(loc, scale)).max(axis=1)
        # NaN compares False: a non-finite window never goes home.
        back = s[(z_home < self.z_threshold) & (z_home < z_here)]
        st.loc[back] = st.home[back]
        st.away[back] = False
        st.run[back] = 0

    def _settle(
        self,
        st: _State,
        sens: npt.NDArray[np.intp],
        y: _F64,
        anomalous: npt.NDArray[np.bool_],
        loc: _F64,
        eff: _F64,
    ) -> None:
        """Count alarm runs; a run of ``settle`` windows moves the sensor's location.

        ``loc`` and ``eff``: the location and scale the rows were scored against."""
        st.recent[sens, st.seen[sens] % self._recent] = y
        st.run[sens] = np.where(anomalous, st.run[sens] + 1, 0)
        due = st.run[sens] >= self.settle
        if not due.any():
            return
        s = sens[due]
        med = _finite_median(st.recent[s])
        some = np.isfinite(st.recent[s]).any(axis=1)
        moved = some & (np.abs(med - loc[due]) > _SETTLE_MOVED * eff[due])
        leaving = ~st.away[s]
        st.home[s[leaving]] = loc[due][leaving]
        st.loc[s] = np.where(moved, med, st.loc[s])
        # A level still moving (a temperature approaching its new equilibrium) is not
        # known to a tenth of a scale: a moved feature whose recent windows span clearly
        # more than noise does (half their range above _MOVING scales) takes that half
        # range as its scale, which narrows back at the EWMA rate once the level is still.
        rec = st.recent[s]  # fmax/fmin skip NaN without warning
        spread = 0.5 * (np.fmax.reduce(rec, axis=1) - np.fmin.reduce(rec, axis=1))
        wider = moved & np.isfinite(spread) & (spread > _MOVING * st.scale[s])
        st.scale[s] = np.where(wider, spread, st.scale[s])
        st.away[s] = True
        st.run[s] = 0


def _finite_median(a: _F64) -> _F64:
    """Median over axis 1 of the finite entries (0 where there are none), warning-free."""
    k = np.isfinite(a).sum(axis=1)
    srt = np.sort(np.where(np.isfinite(a), a, np.inf), axis=1)  # non-finite sort last
    lo = np.take_along_axis(srt, np.maximum((k - 1) // 2, 0)[:, None, :], axis=1)[:, 0]
    hi = np.take_along_axis(srt, np.maximum(k // 2, 0)[:, None, :], axis=1)[:, 0]
    with np.errstate(invalid="ignore"):
        med = 0.5 * (lo + hi)
    return np.where(k > 0, med, 0.0)

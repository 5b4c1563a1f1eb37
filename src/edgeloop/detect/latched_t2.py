"""T² with a latched alarm and a refit: the per-machine arithmetic of the multivariate detector.

Rows are standardised sensor values of one machine (see
:class:`~edgeloop.detect.multivariate.MultivariateDetector`, which owns the scaling, the
prefix buffers and the :class:`~edgeloop.pipeline.types.Features` plumbing). Here, for many
machines at once (one row each per call, vectorized over machines):

* :func:`fit_prefix`: EWMA-smooth a standardised prefix; its covariance (after the burn-in)
  gives the metric, its mean the baseline.
* :func:`step`: one row per machine: smooth it, measure the Mahalanobis distance ``d`` to
  the baseline, run the latch, track the baseline, keep the recent statistics and refit
  when an alarm has lasted ``settle`` rows.

The latch, in order, on each row of a machine:

1. **release**: an alarm ends once ``d`` has stayed below ``release`` × (its peak ``d``) for
   ``hold`` rows, so it can end while slow sensors (temperatures) are still displaced.
2. **refit**: an alarm that has lasted ``settle`` rows is the machine's new operating point
   (a genuine change of regime, or a drift the prefix could not show): the baseline and
   metric are fitted again on the recent rows, an exponentially weighted mean and
   covariance of the smoothed rows with an effective length of ``settle`` rows, kept for
   every machine at all times. The alarm ends unless the row is an outlier even against
   the recent rows (then it goes on, with its peak and age restarted). The recent
   covariance spans the move itself, so the refit is lenient along it: the prefix fit is
   kept as the machine's *home*, and a re-fitted machine that is back within
   ``alarm_at`` of home returns to the home fit, so the same fault again alarms as it
   did the first time.
3. **start**: a new alarm needs ``d >= arm``. ``arm`` is ``alarm_at``, except after an alarm
   ended by release: then it is the ``d`` of that row, relaxing back to ``alarm_at`` at the
   baseline's rate ``track``. A displacement the alarm leaves behind is not a new alarm;
   a rise above it is.

Out of alarm the baseline follows the smoothed rows at rate ``track``; in alarm it stands
still. State per machine: a few k-vectors, three k × k matrices (metric, home metric,
recent covariance) and a few scalars, whatever the run's length.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

__all__ = ["Latch", "MachineState", "fit_prefix", "step"]

F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]
Idx = npt.NDArray[np.intp]

# The largest float32 below 0.5: a row out of alarm never reaches the threshold.
BELOW_HALF = float(np.nextafter(np.float32(0.5), np.float32(0.0)))
# Variance floor (standardised units) added to the metric so an all-constant window
# still gives an invertible matrix.
VAR_FLOOR = 1e-6


@dataclass(frozen=True, slots=True)
class Latch:
    """The parameters of the arithmetic (validated by the detector's constructor)."""

    smooth: float
    track: float
    ridge: float
    burn_in: int
    alarm_at: float
    release: float
    hold: int
    settle: int


@dataclass(slots=True)
class MachineState:
    """Everything a row changes, for M machines (k sensors each)."""

    seen: I64  # (M,) rows learned
    smooth: F64  # (M, k) EWMA of the standardised rows
    base: F64  # (M, k) baseline of the smoothed rows
    metric: F64  # (M, k, k) inverse of the shrunk covariance
    recent_mean: F64  # (M, k) recent smoothed rows: exponentially weighted mean ...
    recent_cov: F64  # (M, k, k) ... and covariance
    home_base: F64  # (M, k) the prefix fit: baseline ...
    home_metric: F64  # (M, k, k) ... and metric
    away: Bool  # (M,) re-fitted away from home
    alarm: Bool  # (M,)
    peak: F64  # (M,) largest d of the current alarm
    below: I64  # (M,) rows in a row below release * peak
    age: I64  # (M,) rows the current alarm has lasted
    arm: F64  # (M,) the distance at which a new alarm starts

    @classmethod
    def empty(cls, n: int, k: int) -> MachineState:
        z1, zk, zkk = np.zeros(n), np.zeros((n, k)), np.zeros((n, k, k))
        i0 = np.zeros(n, np.int64)
        b0 = np.zeros(n, np.bool_)
        return cls(i0, zk, zk.copy(), zkk, zk.copy(), zkk.copy(), zk.copy(), zkk.copy(), b0,
                   b0.copy(), z1, i0.copy(), i0.copy(), z1.copy())  # fmt: skip

    def copy(self) -> MachineState:
        """A copy to advance speculatively; the home fit is shared, not copied: only the
        prefix fit writes it, and a re-learnt prefix writes the same values again."""
        return MachineState(
            *(getattr(self, n) if n in _SHARED else getattr(self, n).copy() for n in _NAMES)
        )

    def extend(self, other: MachineState) -> MachineState:
        """This state with ``other``'s machines appended."""
        return MachineState(
            *(np.concatenate([getattr(self, n), getattr(other, n)]) for n in _NAMES)
        )

    @property
    def nbytes(self) -> int:
        return sum(int(getattr(self, n).nbytes) for n in _NAMES)


_NAMES = tuple(f.name for f in fields(MachineState))
_SHARED = frozenset({"home_base", "home_metric"})


def _metric(cov: F64, ridge: float) -> F64:
    """Inverse of ``cov`` (m, k, k) shrunk towards ``ridge`` × its mean variance."""
    k = cov.shape[-1]
    lift = ridge * np.trace(cov, axis1=1, axis2=2) / k + VAR_FLOOR
    return np.asarray(np.linalg.inv(cov + lift[:, None, None] * np.eye(k)), np.float64)


def fit_prefix(st: MachineState, sl: Idx, z: F64, p: Latch) -> None:
    """Fit machines ``sl`` on their standardised prefixes ``z`` (m, rows, k)."""
    sm = np.empty_like(z)
    cur = z[:, 0].copy()
    for t in range(z.shape[1]):  # once per machine, not per scored row
        cur += p.smooth * (z[:, t] - cur)
        sm[:, t] = cur
    tail = sm[:, p.burn_in :]
    base = tail.mean(axis=1)
    dev = tail - base[:, None, :]
    cov = np.einsum("mti,mtj->mij", dev, dev) / tail.shape[1]
    st.smooth[sl] = cur
    st.base[sl] = base
    st.metric[sl] = _metric(cov, p.ridge)
    st.recent_mean[sl] = base
    st.recent_cov[sl] = cov
    st.home_base[sl] = base
    st.home_metric[sl] = st.metric[sl]
    st.away[sl] = False
    st.alarm[sl] = False
    st.peak[sl] = 0.0
    st.below[sl] = 0
    st.age[sl] = 0
    st.arm[sl] = p.alarm_at


def _distance(metric: F64, r: F64) -> tuple[F64, F64]:
    """Per-sensor contributions to ``d**2`` and ``d``, for residuals ``r`` (m, k)."""
    contrib = r * np.einsum("mij,mj->mi", metric, r)
    return contrib, np.sqrt(np.maximum(contrib.sum(axis=1), 0.0))


def _return_home(st: MachineState, sl: Idx, sm: F64, p: Latch) -> None:
    """Re-fitted machines whose smoothed row is back near home get the home fit (an alarm
    they are in then ends by the release rule)."""
    away = np.flatnonzero(st.away[sl])
    if not away.size:
        return
    s = sl[away]
    _, d_home = _distance(st.home_metric[s], sm[away] - st.home_base[s])
    s = s[d_home < p.alarm_at]
    st.base[s] = st.home_base[s]
    st.metric[s] = st.home_metric[s]
    st.away[s] = False


def step(
    st: MachineState, sl: Idx, z: F64, p: Latch, flags: Bool | None = None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """One standardised row ``z`` (m, k) each of distinct, fitted machines ``sl``.

    Returns the score (``d**2 / (d**2 + alarm_at**2)``, at least 0.5 in alarm, below it
    otherwise) and the sensor contributing most to ``d**2``. ``flags``: the alarm of each
    row when it is decided elsewhere (``learn`` given other scores); the latch then only
    keeps its counters.
    """
    sm = st.smooth[sl]
    sm += p.smooth * (z - sm)
    if p.settle:
        w = 2.0 / (p.settle + 1)
        mean = st.recent_mean[sl]
        dv = sm - mean
        mean += w * dv
        st.recent_mean[sl] = mean
        cov = st.recent_cov[sl]
        cov += dv[:, :, None] * (w * dv)[:, None, :]
        cov *= 1 - w
        st.recent_cov[sl] = cov
        _return_home(st, sl, sm, p)
    contrib, d = _distance(st.metric[sl], sm - st.base[sl])
    prev, peak, below, age = st.alarm[sl], st.peak[sl], st.below[sl], st.age[sl]
    # 1. release
    peak = np.where(prev, np.maximum(peak, d), peak)
    below = np.where(prev & (d < p.release * peak), below + 1, 0)
    cont = prev & (below < p.hold) if flags is None else prev & flags
    # 2. refit after `settle` rows of one alarm
    age = np.where(cont, age + 1, 0)
    settled = cont & (age >= p.settle) if p.settle else np.zeros_like(cont)
    if settled.any():
        at = np.flatnonzero(settled)
        s = sl[at]
        st.base[s] = st.recent_mean[s]
        st.metric[s] = _metric(st.recent_cov[s], p.ridge)
        st.away[s] = True
        contrib[at], d[at] = _distance(st.metric[s], sm[at] - st.base[s])
        if flags is None:
            cont[at] = d[at] >= p.alarm_at
        peak[at], below[at], age[at] = d[at], 0, 0
    # 3. start
    ended = prev & ~cont
    start = ~cont & ~ended & (d >= st.arm[sl]) if flags is None else flags & ~prev
    alarm = cont | start
    peak = np.where(start, d, peak)
    below = np.where(alarm, below, 0)
    arm = np.where(ended, np.maximum(d, p.alarm_at), st.arm[sl])
    arm = np.where(alarm, p.alarm_at, p.alarm_at + (1 - p.track) * (arm - p.alarm_at))
    g = d * d / (d * d + p.alarm_at * p.alarm_at)
    score = np.where(alarm, np.maximum(g, 0.5), np.minimum(g, BELOW_HALF))
    st.smooth[sl] = sm
    st.base[sl] += np.where(alarm, 0.0, p.track)[:, None] * (sm - st.base[sl])
    st.alarm[sl] = alarm
    st.peak[sl] = peak
    st.below[sl] = below
    st.age[sl] = age
    st.arm[sl] = arm
    st.seen[sl] += 1
    return score.astype(np.float32), contrib.argmax(axis=1).astype(np.int32)

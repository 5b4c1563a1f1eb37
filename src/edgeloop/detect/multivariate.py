"""A streaming multivariate detector: one machine's sensors scored together (T² with a latch).

Each input row is one machine at one time step, one column per sensor (a window group
with ``join: machine``); ``features.sensor`` keys the machine. Per machine:

* **fit**: the first ``fit_rows`` rows are buffered (scores 0, ``confidence`` ramps from 0
  to 1). Then each sensor is standardised by the prefix median and standard deviation,
  the deviation floored at ``rel_scale`` of ``|median|`` (a sensor that barely moved in the
  prefix, like a slowly warming thermocouple, must not turn its drift into huge z-scores)
  and at ``min_scale``. The standardised rows are smoothed by an EWMA of rate ``smooth``;
  the covariance of the smoothed prefix (after ``burn_in`` rows), shrunk towards a
  multiple of the identity (``ridge`` of its mean variance), gives the metric and the
  prefix mean the baseline.
* **scoring**: a row's distance ``d`` is the Mahalanobis norm of (smoothed row −
  baseline). The baseline follows the smoothed rows at rate ``track`` out of alarm and
  stands still in alarm. An alarm starts at ``d >= alarm_at`` and ends once ``d`` has
  stayed below ``release`` × its peak for ``hold`` rows (an anomaly often leaves slow
  sensors displaced after its cause is gone); what it leaves behind does not start a new
  alarm until ``d`` rises above it. An alarm that lasts ``settle`` rows is a new operating
  point: the machine is re-fitted on its recent rows and the alarm ends, so a drift or a
  lasting change of regime never latches for good; back near its prefix fit ("home"), it
  gets that fit back. See :mod:`edgeloop.detect.latched_t2`.

The score maps ``d`` to [0, 1] with ``d**2 / (d**2 + alarm_at**2)`` (0.5 at ``alarm_at``),
raised to at least the threshold 0.5 while the machine is in alarm and kept below it
otherwise: ``score >= threshold`` is exactly the alarm. ``top_feature`` is the column
contributing most to ``d**2``. A row with a non-finite value scores 1 and is not learnt.

:meth:`MultivariateDetector.changepoints` turns one machine's scores into change points
(alarm edges, and large jumps of ``d`` inside an alarm).

State is bounded per machine: the scaling, three k × k matrices (metric, home metric,
recent covariance), a few k-vectors and counters, and the prefix buffer (``fit_rows`` × k)
only until the fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edgeloop.detect.changepoints import alarm_changepoints
from edgeloop.detect.latched_t2 import Latch, MachineState, fit_prefix, step
from edgeloop.detect.params import bound, require
from edgeloop.detect.ranks import ranks
from edgeloop.pipeline.types import Features, Scores

__all__ = ["MultivariateDetector"]

_F64 = npt.NDArray[np.float64]
_Bool = npt.NDArray[np.bool_]
_I64 = npt.NDArray[np.int64]

# Change points inside an alarm: d changed by a factor of more than _CP_RATIO over the
# last _CP_LAG rows, at most one per _CP_REFRACTORY rows.
_CP_LAG = 20
_CP_RATIO = 1.5
_CP_REFRACTORY = 30


class MultivariateDetector:
    """T² over a machine's smoothed, standardised sensors, against a slowly tracked baseline.

    Args:
        n_sensors: catalog size (the largest ``features.sensor`` + 1 expected); grows on
            demand. State exists only for the machines (row keys) actually seen.
        feature_names: the columns of a machine's row, in order (one per sensor).
        fit_rows: rows per machine buffered to fit the scale, metric and baseline.
        smooth: EWMA rate of the standardised rows, in (0, 1].
        track: rate at which the baseline follows the smoothed rows out of alarm, [0, 1].
        ridge: shrinkage of the prefix covariance towards its mean variance, >= 0.
        rel_scale: floor of a sensor's scale relative to its prefix ``|median|``, >= 0.
        min_scale: absolute floor of a sensor's scale, > 0.
        burn_in: prefix rows left out of the covariance while the EWMA settles.
        alarm_at: Mahalanobis distance at which an alarm starts (score 0.5).
        release: an alarm ends below this fraction of its peak distance, in (0, 1).
        hold: ... for this many consecutive rows (>= 1).
        settle: rows an alarm may last before the machine is re-fitted on its recent rows
            (the new operating point) and the alarm ends; 0: never (>= 0).
        name: detector name written into :class:`Scores`.
    """

    def __init__(
        self,
        n_sensors: int,
        feature_names: Sequence[str],
        fit_rows: int = 400,
        smooth: float = 0.1,
        track: float = 0.005,
        ridge: float = 0.1,
        rel_scale: float = 0.01,
        min_scale: float = 1e-9,
        burn_in: int = 50,
        alarm_at: float = 7.0,
        release: float = 0.6,
        hold: int = 20,
        settle: int = 600,
        name: str = "multivariate",
    ) -> None:
        require(
            "multivariate",
            {
                "feature_names": (bool(feature_names), "must not be empty"),
                "fit_rows": bound(fit_rows, ">= 2"),
                "burn_in": bound(burn_in, f"[0, {fit_rows - 2}]"),
                "smooth": bound(smooth, "(0, 1]"),
                "track": bound(track, "[0, 1]"),
                "ridge": bound(ridge, ">= 0"),
                "rel_scale": bound(rel_scale, ">= 0"),
                "min_scale": bound(min_scale, "> 0"),
                "alarm_at": bound(alarm_at, "> 0"),
                "release": bound(release, "(0, 1)"),
                "hold": bound(hold, ">= 1"),
                "settle": bound(settle, ">= 0"),
            },
        )
        self.name = name
        self.feature_names = tuple(feature_names)
        self.fit_rows = int(fit_rows)
        self.smooth = float(smooth)
        self.track = float(track)
        self.ridge = float(ridge)
        self.rel_scale = float(rel_scale)
        self.min_scale = float(min_scale)
        self.burn_in = int(burn_in)
        self.alarm_at = float(alarm_at)
        self.release = float(release)
        self.hold = int(hold)
        self.settle = int(settle)
        self.threshold = 0.5
        self._latch = Latch(
            self.smooth, self.track, self.ridge, self.burn_in, self.alarm_at, self.release,
            self.hold, self.settle,
        )  # fmt: skip
        k = len(self.feature_names)
        self._slot_of = np.full(max(int(n_sensors), 0), -1, np.int64)  # sensor -> machine slot
        self._keys: list[int] = []  # slot -> sensor
        # The scaling, fitted once per machine (written when its prefix is complete).
        self._loc = np.zeros((0, k))
        self._scale = np.ones((0, k))
        self._prefix: dict[int, _F64] = {}  # slot -> (fit_rows, k) buffer, until the fit
        self._state = MachineState.empty(0, k)
        self._pending: tuple[Features, _Bool, MachineState] | None = None

    # -- the Detector protocol -------------------------------------------------------
    def score(self, features: Features) -> Scores:
        """Score every row; rows of one machine are taken in time order.

        The k-th row of a machine in the block is scored with the state as learned from
        the rows before it (as if :meth:`learn` had run in between); the committed state
        is not changed until :meth:`learn`.
        """
        slots = self._check(features)
        state = self._state.copy()
        scores = self._run(features, slots, state, None)
        self._pending = (features, scores.anomalous.copy(), state)
        return scores

    def learn(self, features: Features, scores: Scores) -> None:
        """Commit ``features``; the alarm of each row is taken from ``scores``."""
        slots = self._check(features)
        anomalous = scores.anomalous
        if anomalous.shape != (len(features),):
            raise ValueError(
                f"scores.score: shape {anomalous.shape} does not match {len(features)} rows"
            )
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is features and np.array_equal(pending[1], anomalous):
            self._state = pending[2]  # score() already advanced exactly this way
            self._drop_prefixes()
            return
        state = self._state.copy()
        self._run(features, slots, state, anomalous)
        self._state = state
        self._drop_prefixes()

    # -- change points -------------------------------------------------------------------
    @staticmethod
    def changepoints(scores: npt.ArrayLike) -> _Bool:
        """Change points of one machine's scores in time order (causal).

        Alarm starts and ends, and jumps of the distance ``d`` by more than a factor 1.5
        over 20 rows inside an alarm, at most one per 30 rows: see
        :func:`edgeloop.detect.changepoints.alarm_changepoints`. Given booleans (alarms)
        instead of scores, only the alarm edges.
        """
        return alarm_changepoints(
            scores, 0.5, lag=_CP_LAG, ratio=_CP_RATIO, refractory=_CP_REFRACTORY
        )

    # -- introspection ----------------------------------------------------------------
    @property
    def machines(self) -> tuple[int, ...]:
        """Row keys (``features.sensor``) with state, in the order first seen."""
        return tuple(self._keys)

    def rows_seen(self, sensor: int) -> int:
        """Rows learned for the machine keyed ``sensor`` (0 if never seen)."""
        slot = self._slot(sensor)
        return int(self._state.seen[slot]) if slot >= 0 else 0

    def in_alarm(self, sensor: int) -> bool:
        """Whether the machine keyed ``sensor`` is in alarm (after the rows learned)."""
        slot = self._slot(sensor)
        return bool(self._state.alarm[slot]) if slot >= 0 else False

    @property
    def state_nbytes(self) -> int:
        """Bytes held in per-machine state (fitted model, tracking state, prefix buffers)."""
        arrays = [self._slot_of, self._loc, self._scale, *self._prefix.values()]
        return self._state.nbytes + sum(a.nbytes for a in arrays)

    # -- internals ----------------------------------------------------------------------
    def _slot(self, sensor: int) -> int:
        return int(self._slot_of[sensor]) if 0 <= sensor < len(self._slot_of) else -1

    def _check(self, features: Features) -> npt.NDArray[np.intp]:
        """Validate the block; the machine slot of every row (new machines get one)."""
        if tuple(features.names) != self.feature_names:
            raise ValueError(
                f"features.names: {list(features.names)} do not match the detector's "
                f"{list(self.feature_names)}"
            )
        if features.values.shape != (len(features), len(self.feature_names)):
            raise ValueError(
                f"features.values: shape {features.values.shape}, expected "
                f"({len(features)}, {len(self.feature_names)})"
            )
        if len(features) == 0:
            return np.zeros(0, np.intp)
        top = int(features.sensor.max())
        if top >= len(self._slot_of):
            grown = np.full(top + 1, -1, np.int64)
            grown[: len(self._slot_of)] = self._slot_of
            self._slot_of = grown
        new = np.unique(features.sensor[self._slot_of[features.sensor] < 0])
        if new.size:
            self._add_machines(new.astype(np.int64))
        return self._slot_of[features.sensor].astype(np.intp)

    def _add_machines(self, sensors: _I64) -> None:
        n, k = len(sensors), len(self.feature_names)
        self._slot_of[sensors] = np.arange(len(self._keys), len(self._keys) + n)
        self._keys.extend(int(s) for s in sensors)
        self._loc = np.concatenate([self._loc, np.zeros((n, k))])
        self._scale = np.concatenate([self._scale, np.ones((n, k))])
        self._state = self._state.extend(MachineState.empty(n, k))
        self._pending = None  # its state copy predates the new machines

    def _drop_prefixes(self) -> None:
        """Free the prefix buffers of machines whose fit is committed."""
        for s in [s for s in self._prefix if self._state.seen[s] >= self.fit_rows]:
            del self._prefix[s]

    def _run(
        self,
        features: Features,
        slots: npt.NDArray[np.intp],
        st: MachineState,
        given: _Bool | None,
    ) -> Scores:
        """Score and learn ``features`` into ``st``, one rank of rows per machine at a time.

        ``given``: the alarm of each row to learn with (``None``: the latch decides).
        """
        n = len(features)
        score = np.zeros(n, np.float32)
        conf = np.zeros(n, np.float32)
        top = np.full(n, -1, np.int32)
        x_all = features.values.astype(np.float64)
        finite_all = np.asarray(np.isfinite(x_all).all(axis=1), np.bool_)
        with np.errstate(all="ignore"):
            for rows in ranks(slots, features.t1_ns):
                sl = slots[rows]
                seen = st.seen[sl]
                conf[rows] = np.minimum(seen / self.fit_rows, 1.0)
                bad = ~finite_all[rows]
                if bad.any():  # a broken reading: alarm-worthy, never learnt
                    b = rows[bad]
                    score[b] = 1.0
                    top[b] = np.argmin(np.isfinite(x_all[b]), axis=1)
                ok = ~bad
                warm = ok & (seen < self.fit_rows)
                if warm.any():
                    self._buffer(st, sl[warm], x_all[rows[warm]])
                ready = ok & (seen >= self.fit_rows)
                if ready.any():
                    r = rows[ready]
                    flags = None if given is None else given[r]
                    s = sl[ready]
                    z = (x_all[r] - self._loc[s]) / self._scale[s]
                    score[r], top[r] = step(st, s, z, self._latch, flags)
        return Scores(score, self.threshold, conf, top, self.name)

    def _buffer(self, st: MachineState, sl: npt.NDArray[np.intp], x: _F64) -> None:
        """Buffer prefix rows; machines whose prefix completes are fitted.

        Buffers and the scaling are shared with the speculative state of :meth:`score`:
        a row written there is written again, identically and at the same place, when it
        is learnt.
        """
        k = len(self.feature_names)
        for s, row in zip(sl.tolist(), x, strict=True):
            buf = self._prefix.get(s)
            if buf is None:
                buf = self._prefix[s] = np.zeros((self.fit_rows, k))
            buf[st.seen[s]] = row
        st.seen[sl] += 1
        done = sl[st.seen[sl] == self.fit_rows]
        if done.size:
            self._fit(st, done)

    def _fit(self, st: MachineState, sl: npt.NDArray[np.intp]) -> None:
        """Scaling, metric and baseline of machines ``sl`` from their complete prefixes."""
        buf = np.stack([self._prefix[s] for s in sl.tolist()])  # (m, fit_rows, k)
        loc = np.median(buf, axis=1)
        scale = np.maximum(
            buf.std(axis=1), np.maximum(self.rel_scale * np.abs(loc), self.min_scale)
        )
        self._loc[sl] = loc
        self._scale[sl] = scale
        fit_prefix(st, sl, (buf - loc[:, None, :]) / scale[:, None, :], self._latch)

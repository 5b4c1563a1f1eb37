"""A streaming univariate novelty detector for slow metrics (NAB-style), vectorized over sensors.

Each sensor's value series is scored row by row, causally, from a bounded state, by three
channels whose ratios to their own bars are combined by their maximum ``q`` (>= 1 is novel):

* **Pattern novelty** (:mod:`edgeloop.detect.patterns`). The last ``window`` values,
  smoothed at each of ``scales``, form embeddings; the RMS distance to the nearest of the
  embeddings of the previous ``memory`` rows is the raw novelty (largest over the scales):
  a pattern never seen before scores high, a repeat of any old one scores low.
* **Seasonal level** (:mod:`edgeloop.detect.seasonal`). The mean of the last
  ``season_window`` values against the same mean one ``season`` (seconds, a day) earlier:
  a missing busy hour, a shifted cycle. Its ratio is divided by ``season_factor``.
* **Range excess.** A value beyond the range of every value seen before, by more than
  ``range_excess`` of that range, is novel on its own (a new level the patterns miss).

The two distances are **self-calibrated** (:mod:`edgeloop.detect.calibration`, the
likelihood layer): each is divided by its bar ``max(floor · range, mean + z · std)`` over
its previous ``calibration`` values, ``range`` being the spread (max − min) of every value
seen before; what the calibration learns is capped at ``cap`` bars, so one burst does not
blind it. ``q`` is reported as ``min(q / 2, 1)`` — 0.5, the threshold, means ``q == 1`` —
except for the ``refractory`` rows after a detection, capped just below the threshold:
one event, one alarm.

The first ``warmup`` rows of a sensor score 0 (``confidence`` ramps up meanwhile). Non-finite
values score 1 and are not learnt. State per sensor is bounded (about 0.3 MB with the
defaults, constant). Blocks are processed in chunks of up to 256 rows: all sensors' k-th
chunk at once, nearest neighbours by batched float32 matrix products, so a whole file per
sensor costs a few hundred numpy calls, not one per row. The products dominate the cost;
run with one BLAS thread per process (``OPENBLAS_NUM_THREADS=1``) on a small shared CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from edgeloop.detect.calibration import LAG, last_cols, rolling_bar
from edgeloop.detect.params import bound, require
from edgeloop.detect.patterns import PatternMemory
from edgeloop.detect.seasonal import INTERVALS, record_stamps, season_rows, seasonal_distance
from edgeloop.pipeline.types import Features, Scores

__all__ = ["NoveltyDetector"]

_F64 = npt.NDArray[np.float64]
_F32 = npt.NDArray[np.float32]
_I64 = npt.NDArray[np.int64]
_CHUNK = LAG  # rows per sensor scored together (bounds the distance matrices)
_CAP = 0.4999  # score of a detection suppressed by the refractory period


@dataclass(slots=True)
class _State:
    """State of a set of sensors (all arrays share the first axis)."""

    seen: _I64  # (S,) rows learned
    lo: _F64  # (S,) min of finite values seen (+inf before any)
    hi: _F64  # (S,) max of finite values seen (-inf before any)
    first: _F64  # (S,) first finite value seen (0 before any)
    tail: _F64  # (S, H) the last H finite values, oldest first
    mem: _F32  # (S, n_scales, window + 1, R) the last R embeddings, see PatternMemory
    calib: _F64  # (S, L) the last L learnt pattern distances, oldest first
    bars: _F64  # (S, LAG) the pattern bars of the last LAG rows
    stamps: _I64  # (S, INTERVALS + 1) timestamps of the first rows
    means: _F64  # (S, memory) seasonal window means of the last rows
    s_calib: _F64  # (S, L) the last L learnt seasonal distances
    s_bars: _F64  # (S, LAG) the seasonal bars of the last LAG rows
    last_fire: _I64  # (S,) row of the last detection (very negative: none)

    def take(self, idx: npt.NDArray[np.intp]) -> _State:
        return _State(*(getattr(self, f.name)[idx] for f in fields(self)))

    def put(self, idx: npt.NDArray[np.intp], part: _State) -> None:
        for f in fields(self):
            getattr(self, f.name)[idx] = getattr(part, f.name)

    def arrays(self) -> list[npt.NDArray[np.generic]]:
        return [getattr(self, f.name) for f in fields(self)]


class NoveltyDetector:
    """Pattern novelty and seasonal level, self-calibrated, with a refractory period.

    Args:
        n_sensors: initial number of sensors (catalog indices); grows on demand.
        feature_names: the feature columns of the blocks; ``feature`` is the one scored.
        feature: the column holding the sample value (windows of size 1: ``"mean"``).
        window: values per embedding (>= 2).
        scales: smoothing/sampling steps of the embeddings (each >= 1).
        memory: past rows whose embeddings a row is compared with, per scale (>= 1);
            also the longest season, in rows.
        calibration: raw scores kept for the mean and std of the calibration (>= 2).
        z: the calibration bar is at least ``mean + z · std`` of those raw scores.
        floor: the smallest bar, as a fraction of the value range (> 0).
        cap: the calibration learns raw scores capped at ``cap`` bars (>= 1).
        range_excess: a value this fraction of the range beyond it is novel (> 0).
        season: the season in seconds (0: no seasonal channel).
        season_window: values per seasonal mean (>= 1).
        season_factor: the seasonal ratio is divided by this (> 0).
        refractory: rows after a detection whose scores are capped below the threshold.
        warmup: rows per sensor scored 0 while the state fills (>= 1).
        name: detector name written into :class:`Scores`.
    """

    def __init__(
        self,
        n_sensors: int,
        feature_names: Sequence[str],
        feature: str = "mean",
        window: int = 8,
        scales: Sequence[int] = (1, 2),
        memory: int = 3000,
        calibration: int = 3000,
        z: float = 3.0,
        floor: float = 0.05,
        cap: float = 10.0,
        range_excess: float = 0.05,
        season: float = 86400.0,
        season_window: int = 32,
        season_factor: float = 3.0,
        refractory: int = 100,
        warmup: int = 200,
        name: str = "novelty",
    ) -> None:
        checks = {
            "feature": (
                feature in tuple(feature_names),
                f"{feature!r} is not in {list(feature_names)}",
            ),
            "window": bound(window, ">= 2"),
            "scales": (
                bool(scales) and all(int(d) == d and d >= 1 for d in scales),
                f"must be integers >= 1 (got {list(scales)})",
            ),
            "memory": bound(memory, ">= 1"),
            "calibration": bound(calibration, ">= 2"),
            "z": bound(z, ">= 0"),
            "floor": bound(floor, "> 0"),
            "cap": bound(cap, ">= 1"),
            "range_excess": bound(range_excess, "> 0"),
            "season": bound(season, ">= 0"),
            "season_window": bound(season_window, ">= 1"),
            "season_factor": bound(season_factor, "> 0"),
            "refractory": bound(refractory, ">= 0"),
            "warmup": bound(warmup, ">= 1"),
        }
        require("novelty", checks)
        self.name = name
        self.feature_names = tuple(feature_names)
        self.feature = feature
        self.window = int(window)
        self.scales = tuple(int(d) for d in scales)
        self.memory = int(memory)
        self.calibration = int(calibration)
        self.z = float(z)
        self.floor = float(floor)
        self.cap = float(cap)
        self.range_excess = float(range_excess)
        self.season = float(season)
        self.season_window = int(season_window)
        self.season_factor = float(season_factor)
        self.refractory = int(refractory)
        self.warmup = int(warmup)
        self.threshold = 0.5
        self._col = self.feature_names.index(feature)
        chunk = min(_CHUNK, self.memory)
        history = max(self.window * max(self.scales), self.season_window)
        self._patterns = PatternMemory(self.window, self.scales, self.memory, chunk, history)
        self._state = self._empty(max(int(n_sensors), 0))
        self._pending: tuple[Features, npt.NDArray[np.intp], _State] | None = None

    # -- the Detector protocol -------------------------------------------------------
    def score(self, features: Features) -> Scores:
        """Score every row; rows of one sensor are taken in time order (by ``t1_ns``).

        The k-th row of a sensor is scored as if the rows before it had been learnt; the
        committed state is not changed until :meth:`learn`.
        """
        self._check(features)
        scores, sensors, part = self._run(features)
        self._pending = (features, sensors, part)
        return scores

    def learn(self, features: Features, scores: Scores) -> None:
        """Commit ``features`` into the state.

        The state depends on the rows only (the refractory period follows this
        detector's own detections), so ``scores`` is checked for shape, not used.
        """
        self._check(features)
        if scores.score.shape != (len(features),):
            raise ValueError(
                f"scores.score: shape {scores.score.shape} does not match {len(features)} rows"
            )
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is features:
            _, sensors, part = pending
        else:
            _, sensors, part = self._run(features)
        self._state.put(sensors, part)

    # -- introspection ----------------------------------------------------------------
    @property
    def n_sensors(self) -> int:
        return int(self._state.seen.shape[0])

    def rows_seen(self, sensor: int) -> int:
        return int(self._state.seen[sensor]) if sensor < self.n_sensors else 0

    def state_nbytes(self) -> int:
        """Bytes of state per sensor (constant: it never grows with the rows seen)."""
        return sum(a.itemsize * (a.size // max(a.shape[0], 1)) for a in self._state.arrays())

    # -- internals ----------------------------------------------------------------------
    def _empty(self, s: int) -> _State:
        p, big_l = self._patterns, self.calibration
        return _State(
            seen=np.zeros(s, np.int64),
            lo=np.full(s, np.inf),
            hi=np.full(s, -np.inf),
            first=np.zeros(s),
            tail=np.zeros((s, p.history)),
            mem=p.empty(s),
            calib=np.zeros((s, big_l)),
            bars=np.full((s, LAG), np.inf),
            stamps=np.zeros((s, INTERVALS + 1), np.int64),
            means=np.zeros((s, self.memory)),
            s_calib=np.zeros((s, big_l)),
            s_bars=np.full((s, LAG), np.inf),
            last_fire=np.full(s, -(2**62), np.int64),
        )

    def _check(self, features: Features) -> None:
        if tuple(features.names) != self.feature_names:
            raise ValueError(
                f"features.names: {list(features.names)} do not match the detector's "
                f"{list(self.feature_names)}"
            )
        if len(features) and int(features.sensor.max()) >= self.n_sensors:
            n = int(features.sensor.max()) + 1
            old, new = self._state, self._empty(n)
            new.put(np.arange(old.seen.shape[0]), old)
            self._state = new
            self._pending = None

    def _run(self, features: Features) -> tuple[Scores, npt.NDArray[np.intp], _State]:
        """Scores of ``features``, its sensors and their state after it (self unchanged)."""
        n = len(features)
        score = np.zeros(n, np.float32)
        conf = np.zeros(n, np.float32)
        top = np.full(n, self._col, np.int32)
        if n == 0:
            none = np.zeros(0, np.intp)
            return Scores(score, self.threshold, conf, top, self.name), none, self._state.take(none)
        x = features.values[:, self._col].astype(np.float64)
        order = np.lexsort((features.t1_ns, features.sensor))
        sens_sorted = features.sensor[order].astype(np.intp)
        sensors, first, counts = np.unique(sens_sorted, return_index=True, return_counts=True)
        part = self._state.take(sensors)  # a copy: the committed state is not touched
        with np.errstate(all="ignore"):
            step = self._patterns.chunk
            for c0 in range(0, int(counts.max()), step):
                width = int(min(step, counts.max() - c0))
                active = np.flatnonzero(counts > c0)
                cols = np.arange(width)
                valid = cols[None, :] < (counts[active, None] - c0)
                rows = order[np.minimum(first[active, None] + c0 + cols[None, :], n - 1)]
                sub = part.take(active)
                conf_rows = np.minimum((sub.seen[:, None] + cols[None, :]) / self.warmup, 1.0)
                t_ns = np.where(valid, features.t1_ns[rows], 0)
                s = self._chunk(sub, np.where(valid, x[rows], np.nan), t_ns, valid)
                part.put(active, sub)
                score[rows[valid]] = s[valid]
                conf[rows[valid]] = conf_rows[valid]
        return Scores(score, self.threshold, conf, top, self.name), sensors.astype(np.intp), part

    def _chunk(
        self, st: _State, x: _F64, t_ns: _I64, valid: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.float32]:
        """Score a (sensors, width) chunk of rows (``valid`` left-aligned) and learn it in place."""
        m, width = x.shape
        finite = np.isfinite(x) & valid
        t = st.seen[:, None] + np.arange(width)[None, :]  # row index of each cell
        n_valid = valid.sum(axis=1)
        # carry the last finite value over gaps so embeddings stay defined
        first_seen = st.seen == 0
        seed = np.where(first_seen, _first_finite(x, finite), st.tail[:, -1])
        st.tail[first_seen] = seed[first_seen, None]
        st.first[first_seen] = seed[first_seen]
        held = _hold(np.where(finite, x, np.nan), st.tail[:, -1])
        # range of the values strictly before each row
        lo_in = np.minimum.accumulate(np.where(finite, x, np.inf), axis=1)
        hi_in = np.maximum.accumulate(np.where(finite, x, -np.inf), axis=1)
        lo_prev = np.minimum(st.lo[:, None], np.concatenate([st.lo[:, None], lo_in[:, :-1]], 1))
        hi_prev = np.maximum(st.hi[:, None], np.concatenate([st.hi[:, None], hi_in[:, :-1]], 1))
        span = hi_prev - lo_prev
        span_ok = np.isfinite(span) & (span > 0)
        unit = np.where(span_ok, span, 1.0)
        early = t < self.warmup
        scored = finite & ~early & span_ok
        seq = np.concatenate([st.tail, held], axis=1)
        h = self._patterns.history
        # pattern novelty: the largest distance over the scales, calibrated
        dist = np.zeros((m, width))
        for k in range(len(self.scales)):
            d_k, st.mem[:, k] = self._patterns.nearest(st.mem[:, k], k, seq, valid, st.first)
            dist = np.maximum(dist, d_k)
        dist = np.where(finite & ~early, dist, 0.0)
        floor = self.floor * unit
        calib = {"z": self.z, "floor": floor, "cap": self.cap, "active": scored}
        bar, st.calib, st.bars = rolling_bar(st.calib, st.bars, dist, t, valid, **calib)
        q = np.where(span_ok, dist / bar, 0.0)
        # seasonal level, calibrated the same way, then discounted
        if self.season > 0:
            st.stamps = record_stamps(st.stamps, st.seen, t_ns, valid)
            period = season_rows(st.stamps, st.seen + n_valid, self.season * 1e9, self.memory)
            sd, st.means = seasonal_distance(st.means, seq, h, self.season_window, period, t, valid)
            sd = np.where(finite & ~early, sd, 0.0)
            s_bar, st.s_calib, st.s_bars = rolling_bar(st.s_calib, st.s_bars, sd, t, valid, **calib)
            q = np.maximum(q, np.where(span_ok, sd / (self.season_factor * s_bar), 0.0))
        # range excess
        excess = np.maximum(x - hi_prev, lo_prev - x) / unit
        excess = np.where(span_ok & finite, np.maximum(excess, 0.0), 0.0)
        q = np.maximum(q, excess / self.range_excess)
        q[early] = 0.0
        out = np.minimum(q / 2.0, 1.0)
        self._refractory(st, q, t, out)
        out = np.where(finite, out, 1.0)
        out[~valid] = 0.0
        # learn the rest: range, tail, counters
        st.lo = np.minimum(st.lo, lo_in[:, -1])
        st.hi = np.maximum(st.hi, hi_in[:, -1])
        st.tail = last_cols(seq, h, n_valid)
        st.seen = st.seen + n_valid
        return out.astype(np.float32)

    def _refractory(self, st: _State, q: _F64, t: _I64, out: _F64) -> None:
        """Cap detections within ``refractory`` rows of the previous one (in place)."""
        for r in np.flatnonzero((q >= 1.0).any(axis=1)):
            last = int(st.last_fire[r])
            for col in np.flatnonzero(q[r] >= 1.0):
                row = int(t[r, col])
                if row - last <= self.refractory:
                    out[r, col] = min(out[r, col], _CAP)
                else:
                    last = row
            st.last_fire[r] = last


def _first_finite(x: _F64, finite: npt.NDArray[np.bool_]) -> _F64:
    """First finite value of each row (0 where there is none)."""
    idx = np.argmax(finite, axis=1)
    v = x[np.arange(x.shape[0]), idx]
    return np.where(finite.any(axis=1), v, 0.0)


def _hold(x: _F64, start: _F64) -> _F64:
    """Forward-fill NaNs along axis 1, starting from ``start`` per row."""
    m, width = x.shape
    full = np.concatenate([start[:, None], x], axis=1)
    idx = np.where(np.isnan(full), 0, np.arange(width + 1)[None, :])
    np.maximum.accumulate(idx, axis=1, out=idx)
    out: _F64 = full[np.arange(m)[:, None], idx][:, 1:]
    return out

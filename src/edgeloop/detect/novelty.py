"""A streaming univariate novelty detector for slow metrics (NAB-style), vectorized over sensors.

Each sensor's value series is scored row by row, causally, from a bounded state:

* **Pattern novelty.** The last ``window`` values, smoothed at each of ``scales`` (a moving
  mean of ``d`` values sampled every ``d`` rows), form an embedding. Its RMS distance to the
  nearest of the embeddings of the previous ``memory`` rows (those at least one embedding
  span old, so a window is never matched with itself) is the row's raw novelty, in the
  values' unit: a pattern never seen before scores high, a repeat of any old one scores
  low. The raw novelty is the largest over the scales.
* **Self-calibration** (the likelihood layer). The raw novelty is divided by the bar
  ``max(floor · range, mean + z · std)``, the mean and std taken over the raw novelty of
  the previous ``calibration`` rows and ``range`` the spread (max − min) of every value
  seen before: a noisy series raises its own bar, a quiet one keeps the floor.
* **Range excess.** A value beyond the range of every value seen before, by more than
  ``range_excess`` of that range, is novel on its own (a new level the patterns miss).
* **Refractory period.** The combined ratio ``q`` (>= 1 means novel) is reported as
  ``min(q / 2, 1)`` — so 0.5, the threshold, means ``q == 1`` — except for the
  ``refractory`` rows after a detection, which are capped just below the threshold: one
  event, one alarm.

The first ``warmup`` rows of a sensor score 0 (``confidence`` ramps up meanwhile). Non-finite
values score 1 and are not learnt. State per sensor is bounded: the last embedding span of
values, ``memory`` plus one span of embeddings per scale, ``calibration`` raw scores, the
range and counters (about 0.24 MB per sensor with the defaults).

Blocks are processed in chunks of up to 256 rows: all sensors' k-th chunk at once, nearest
neighbours by batched float32 matrix products, so a whole file per sensor costs a few
hundred numpy calls, not one per row. The products dominate the cost; run with one BLAS
thread per process (``OPENBLAS_NUM_THREADS=1``) on a small shared CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgeloop.errors import ConfigError
from edgeloop.pipeline.types import Features, Scores

__all__ = ["NoveltyDetector"]

_F64 = npt.NDArray[np.float64]
_F32 = npt.NDArray[np.float32]
_I64 = npt.NDArray[np.int64]
_CHUNK = 256  # rows per sensor scored together (bounds the distance matrices)
_CAP = 0.4999  # score of a detection suppressed by the refractory period


@dataclass(slots=True)
class _State:
    """State of a set of sensors (all arrays share the first axis)."""

    seen: _I64  # (S,) rows learned
    lo: _F64  # (S,) min of finite values seen (+inf before any)
    hi: _F64  # (S,) max of finite values seen (-inf before any)
    first: _F64  # (S,) first finite value seen (0 before any)
    tail: _F64  # (S, H) the last H finite values, oldest first
    mem: _F32  # (S, n_scales, window + 1, R) the last R embeddings, see _nearest
    calib: _F64  # (S, L) the last L raw scores, oldest first
    last_fire: _I64  # (S,) row of the last detection (very negative: none)

    def take(self, idx: npt.NDArray[np.intp]) -> _State:
        return _State(
            self.seen[idx],
            self.lo[idx],
            self.hi[idx],
            self.first[idx],
            self.tail[idx],
            self.mem[idx],
            self.calib[idx],
            self.last_fire[idx],
        )

    def put(self, idx: npt.NDArray[np.intp], part: _State) -> None:
        self.seen[idx] = part.seen
        self.lo[idx] = part.lo
        self.hi[idx] = part.hi
        self.first[idx] = part.first
        self.tail[idx] = part.tail
        self.mem[idx] = part.mem
        self.calib[idx] = part.calib
        self.last_fire[idx] = part.last_fire


class NoveltyDetector:
    """Pattern novelty against a bounded memory, self-calibrated, with a refractory period.

    Args:
        n_sensors: initial number of sensors (catalog indices); grows on demand.
        feature_names: the feature columns of the blocks; ``feature`` is the one scored.
        feature: the column holding the sample value (windows of size 1: ``"mean"``).
        window: values per embedding (>= 2).
        scales: smoothing/sampling steps of the embeddings (each >= 1).
        memory: past rows whose embeddings a row is compared with, per scale (>= 1).
        calibration: raw scores kept for the mean and std of the calibration (>= 2).
        z: the calibration bar is at least ``mean + z · std`` of those raw scores.
        floor: the smallest bar, as a fraction of the value range (> 0).
        range_excess: a value this fraction of the range beyond it is novel (> 0).
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
        range_excess: float = 0.05,
        refractory: int = 100,
        warmup: int = 200,
        name: str = "novelty",
    ) -> None:
        problems = []
        if feature not in tuple(feature_names):
            problems.append(f"feature: {feature!r} is not in feature_names {list(feature_names)}")
        if window < 2:
            problems.append(f"window: must be >= 2 (got {window})")
        if not scales or any(int(d) != d or d < 1 for d in scales):
            problems.append(f"scales: must be integers >= 1 (got {list(scales)})")
        if memory < 1:
            problems.append(f"memory: must be >= 1 (got {memory})")
        if calibration < 2:
            problems.append(f"calibration: must be >= 2 (got {calibration})")
        if not z >= 0:
            problems.append(f"z: must be >= 0 (got {z})")
        if not floor > 0:
            problems.append(f"floor: must be > 0 (got {floor})")
        if not range_excess > 0:
            problems.append(f"range_excess: must be > 0 (got {range_excess})")
        if refractory < 0:
            problems.append(f"refractory: must be >= 0 (got {refractory})")
        if warmup < 1:
            problems.append(f"warmup: must be >= 1 (got {warmup})")
        if problems:
            raise ConfigError("novelty detector: " + "; ".join(problems))
        self.name = name
        self.feature_names = tuple(feature_names)
        self.feature = feature
        self.window = int(window)
        self.scales = tuple(int(d) for d in scales)
        self.memory = int(memory)
        self.calibration = int(calibration)
        self.z = float(z)
        self.floor = float(floor)
        self.range_excess = float(range_excess)
        self.refractory = int(refractory)
        self.warmup = int(warmup)
        self.threshold = 0.5
        self._col = self.feature_names.index(feature)
        # an embedding at scale d spans window*d values; it is compared with embeddings
        # ending at least one span earlier, among the last `memory` such ones
        self._excl = np.array([self.window * d for d in self.scales], np.int64)
        self._tail_len = int(self._excl.max())
        self._ring = self.memory + int(self._excl.max())
        self._chunk_rows = min(_CHUNK, self.memory)
        # Row j of a chunk compares with ring/chunk columns (j + off, j + off + memory]
        # (see _nearest); near the two ends of that band, triangular masks.
        tri = np.arange(self._chunk_rows)
        self._left_ok = tri[None, 1:] > tri[:, None]  # column off + 1 + c vs row j
        self._right_ok = tri[None, :-1] < tri[:, None]  # column off + memory + 1 + c
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

        The state depends on the values only (the refractory period follows this
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
        st = self._state
        arrays = (
            st.seen,
            st.lo,
            st.hi,
            st.first,
            st.tail,
            st.mem,
            st.calib,
            st.last_fire,
        )
        return sum(a.itemsize * (a.size // max(a.shape[0], 1)) for a in arrays)

    # -- internals ----------------------------------------------------------------------
    def _empty(self, s: int) -> _State:
        k, c, w = len(self.scales), self._ring, self.window
        return _State(
            np.zeros(s, np.int64),
            np.full(s, np.inf),
            np.full(s, -np.inf),
            np.zeros(s),
            np.zeros((s, self._tail_len)),
            _empty_ring(s, k, w, c),
            np.zeros((s, self.calibration)),
            np.full(s, -(2**62), np.int64),
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
            step = self._chunk_rows
            for c0 in range(0, int(counts.max()), step):
                width = int(min(step, counts.max() - c0))
                active = np.flatnonzero(counts > c0)
                cols = np.arange(width)
                valid = cols[None, :] < (counts[active, None] - c0)
                rows = order[np.minimum(first[active, None] + c0 + cols[None, :], n - 1)]
                sub = part.take(active)
                conf_rows = np.minimum((sub.seen[:, None] + cols[None, :]) / self.warmup, 1.0)
                s = self._chunk(sub, np.where(valid, x[rows], np.nan), valid)
                part.put(active, sub)
                score[rows[valid]] = s[valid]
                conf[rows[valid]] = conf_rows[valid]
        return Scores(score, self.threshold, conf, top, self.name), sensors.astype(np.intp), part

    def _chunk(self, st: _State, x: _F64, valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]:
        """Score a (sensors, width) chunk of rows (``valid`` left-aligned) and learn it in place."""
        m, width = x.shape
        finite = np.isfinite(x) & valid
        t = st.seen[:, None] + np.arange(width)[None, :]  # row index of each cell
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
        dist = np.zeros((m, width))
        seq = np.concatenate([st.tail, held], axis=1)
        for k, d in enumerate(self.scales):
            dist = np.maximum(dist, self._nearest(st, k, d, seq, valid))
        early = t < self.warmup
        dist = np.where(finite & ~early, dist, 0.0)
        # calibration over the previous L distances (zeros before the first ones)
        bar = np.maximum(self.floor * unit, self._bar(st, dist, t, valid))
        excess = np.maximum(x - hi_prev, lo_prev - x) / unit
        excess = np.where(span_ok & finite, np.maximum(excess, 0.0), 0.0)
        q = np.maximum(np.where(span_ok, dist / bar, 0.0), excess / self.range_excess)
        q[early] = 0.0
        out = np.minimum(q / 2.0, 1.0)
        self._refractory(st, q, t, out)
        out = np.where(finite, out, 1.0)
        out[~valid] = 0.0
        # learn the rest: range, tail, counters
        st.lo = np.minimum(st.lo, lo_in[:, -1])
        st.hi = np.maximum(st.hi, hi_in[:, -1])
        n_valid = valid.sum(axis=1)
        st.tail = _last_cols(seq, self._tail_len, n_valid)
        st.seen = st.seen + n_valid
        return out.astype(np.float32)

    def _nearest(self, st: _State, k: int, d: int, seq: _F64, valid: npt.NDArray[np.bool_]) -> _F64:
        """Distance of each row's scale-``d`` embedding to its nearest past one; stores them.

        Distances are RMS differences per value, in the values' own unit.
        """
        m, width = valid.shape
        h, w, big_r = self._tail_len, self.window, self._ring
        c = np.cumsum(np.concatenate([np.zeros((m, 1)), seq], axis=1), axis=1)
        pos = h + np.arange(width)  # column of each row in seq
        lags = pos[:, None] - d * np.arange(w - 1, -1, -1)[None, :]  # (width, w), oldest first
        emb = (c[:, lags + 1] - c[:, lags + 1 - d]) / d  # (m, width, w)
        # float32 (the distance matrices are the bulk of the work), centred on each
        # sensor's first value so that large offsets do not cancel. One product gives
        # |c|^2 - 2 q.c: the ring stores each embedding c as the column (c, |c|^2), the
        # columns of all its rows side by side, (0, inf) where it is still empty.
        q = (emb - st.first[:, None, None]).astype(np.float32)  # (m, width, w)
        qn = np.einsum("mbw,mbw->mb", q, q)
        fresh = np.concatenate([q.transpose(0, 2, 1), qn[:, None, :]], axis=1)
        fresh[:, w][~valid] = np.inf
        cand = np.concatenate([st.mem[:, k], fresh], axis=2)  # (m, w + 1, R + width)
        qa = np.concatenate([q * np.float32(-2.0), np.ones((m, width, 1), np.float32)], axis=2)
        # Column i holds row t0 - R + i (t0: the chunk's first row). Row t0 + j may use
        # rows (t0 + j - excl - memory, t0 + j - excl]: columns (j + off, j + off + memory]
        # with off = R - excl - memory. Columns [width + off, off + memory] are in every
        # row's band; the width - 1 columns on either side are masked per row.
        off, mem = big_r - int(self._excl[k]) - self.memory, self.memory
        core = np.matmul(qa, cand[:, :, width + off : off + mem + 1]).min(axis=2)
        left = np.matmul(qa, cand[:, :, off + 1 : off + width])
        right = np.matmul(qa, cand[:, :, off + mem + 1 : off + mem + width])
        left[:, ~self._left_ok[:width, : width - 1]] = np.inf
        right[:, ~self._right_ok[:width, : width - 1]] = np.inf
        best = np.minimum(
            core, np.minimum(left.min(axis=2, initial=np.inf), right.min(axis=2, initial=np.inf))
        )
        best = best.astype(np.float64) + qn
        # the ring keeps the last R columns of the sensor's valid rows
        n_valid = valid.sum(axis=1)
        if np.all(n_valid == width):
            st.mem[:, k] = cand[:, :, width:]
        else:
            cols = n_valid[:, None] + np.arange(big_r)[None, :]
            st.mem[:, k] = np.take_along_axis(cand, cols[:, None, :], axis=2)
        return np.where(np.isfinite(best), np.sqrt(np.maximum(best, 0.0) / w), 0.0)

    def _bar(self, st: _State, raw: _F64, t: _I64, valid: npt.NDArray[np.bool_]) -> _F64:
        """``mean + z·std`` of the distances of the previous L rows; learns them."""
        m, width = raw.shape
        big_l = self.calibration
        seq = np.concatenate([st.calib, np.where(valid, raw, 0.0)], axis=1)
        zero = np.zeros((m, 1))
        c1 = np.concatenate([zero, np.cumsum(seq, axis=1)], axis=1)
        c2 = np.concatenate([zero, np.cumsum(seq * seq, axis=1)], axis=1)
        j = np.arange(width)
        s1 = c1[:, big_l + j] - c1[:, j]
        s2 = c2[:, big_l + j] - c2[:, j]
        k = np.maximum(np.minimum(t, big_l), 1).astype(np.float64)
        mean = s1 / k
        std = np.sqrt(np.maximum(s2 / k - mean * mean, 0.0))
        st.calib = _last_cols(seq, big_l, valid.sum(axis=1))
        bar: _F64 = mean + self.z * std
        return bar

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


def _empty_ring(s: int, k: int, w: int, r: int) -> _F32:
    """Rings with no embedding yet: columns (0, ..., 0, inf)."""
    ring = np.zeros((s, k, w + 1, r), np.float32)
    ring[:, :, w] = np.inf
    return ring


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


def _last_cols(seq: _F64, keep: int, shift: npt.NDArray[np.int64]) -> _F64:
    """Per row r, the ``keep`` columns (axis 1) of ``seq`` from ``shift[r]`` on (a copy)."""
    cols = shift[:, None] + np.arange(keep)[None, :]
    out: _F64 = seq[np.arange(seq.shape[0])[:, None], cols]
    return out

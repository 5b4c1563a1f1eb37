"""Per-sensor summaries over aligned periods, covering every sample exactly once.

A :class:`SummaryAggregator` keeps running aggregates (count, mean, M2, min, max) for
each open (sensor, period), where period ``p`` spans ``[p * period_ns, (p + 1) *
period_ns)`` in sample time. A period is *closed* once the clock passes its end plus the
allowed lateness; closed periods are emitted as one :class:`SummaryBatch` row each and
forgotten. A sample that arrives after its period was emitted opens a new row for that
period (emitted later), so the invariant the hub's loss accounting relies on holds:
**each sample fed is counted by exactly one emitted row** — the sum of ``count`` over
all batches equals the number of samples fed once :meth:`SummaryAggregator.flush` ran.

Work is vectorized: group boundaries of a sorted frame, then ``np.add.reduceat`` and
friends per group; partial aggregates of one (sensor, period) from several frames are
merged with the parallel-variance formula (Chan et al.), so ``std`` is exact.

>>> import numpy as np
>>> from edgeloop.telemetry.frame import Frame
>>> agg = SummaryAggregator(10, ["a"])
>>> agg.process(Frame.from_arrays([0, 0, 0], [1, 2, 11], [1.0, 3.0, 5.0]), now_ns=11) is None
True
>>> b = agg.process(Frame.empty(), now_ns=20)
>>> b.count.tolist(), b.mean.tolist(), b.t0_ns.tolist()
([2], [2.0], [0])
>>> agg.flush().count.tolist()
[1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgeloop.errors import ConfigError
from edgeloop.pipeline.windows import ensure_sorted
from edgeloop.telemetry.frame import Frame
from edgeloop.telemetry.records import SummaryBatch

__all__ = ["SummaryAggregator"]


@dataclass(frozen=True, slots=True)
class _Rows:
    """Partial aggregates, one row per (sensor, period)."""

    sensor: npt.NDArray[np.uint32]
    period: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]
    mean: npt.NDArray[np.float64]
    m2: npt.NDArray[np.float64]  # sum of squared deviations from the mean
    min: npt.NDArray[np.float32]
    max: npt.NDArray[np.float32]

    @classmethod
    def empty(cls) -> _Rows:
        return cls(
            np.empty(0, np.uint32),
            np.empty(0, np.int64),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.float64),
            np.empty(0, np.float32),
            np.empty(0, np.float32),
        )

    def __len__(self) -> int:
        return int(self.sensor.shape[0])

    def take(self, idx: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> _Rows:
        return _Rows(
            self.sensor[idx],
            self.period[idx],
            self.count[idx],
            self.mean[idx],
            self.m2[idx],
            self.min[idx],
            self.max[idx],
        )


def _group_starts(*keys: npt.NDArray[np.generic]) -> npt.NDArray[np.intp]:
    """Start index of each run of equal consecutive key tuples."""
    n = keys[0].shape[0]
    change = np.zeros(n, np.bool_)
    change[0] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change)


def _reduce(frame: Frame, period_ns: int) -> _Rows:
    """Aggregates of a non-empty frame sorted by (sensor, ts), per (sensor, period)."""
    s, ts, v = frame.sensor, frame.ts, frame.value
    n = v.shape[0]
    # Group starts without a per-sample division: the sensor runs, plus, inside runs that
    # span several periods, the positions of the period edges (a loop per such run).
    cut = np.flatnonzero(s[1:] != s[:-1]) + 1
    run_lo = np.concatenate([np.zeros(1, np.intp), cut])
    run_hi = np.append(cut, n)
    p_lo = ts[run_lo] // period_ns
    p_hi = ts[run_hi - 1] // period_ns
    pieces = [run_lo]
    for r in np.flatnonzero(p_hi > p_lo).tolist():
        a, b = int(run_lo[r]), int(run_hi[r])
        edges = np.arange(p_lo[r] + 1, p_hi[r] + 1, dtype=np.int64) * period_ns
        pieces.append(a + np.searchsorted(ts[a:b], edges, side="left"))
    starts = np.unique(np.concatenate(pieces)) if len(pieces) > 1 else run_lo
    count = np.diff(np.append(starts, n)).astype(np.int64)
    mean = np.add.reduceat(v, starts, dtype=np.float64) / count
    d = np.repeat(mean, count)  # one float64 temporary, reused in place (page faults)
    np.subtract(v, d, out=d)
    np.multiply(d, d, out=d)
    m2 = np.add.reduceat(d, starts)
    return _Rows(
        s[starts],
        ts[starts] // period_ns,
        count,
        mean,
        m2,
        np.minimum.reduceat(v, starts),
        np.maximum.reduceat(v, starts),
    )


def _merge(rows: _Rows) -> _Rows:
    """Combine rows with the same (sensor, period) into one (exact mean and M2)."""
    if len(rows) < 2:
        return rows
    order = np.lexsort((rows.period, rows.sensor))
    r = rows.take(order)
    starts = _group_starts(r.sensor, r.period)
    if starts.shape[0] == len(r):
        return r
    count = np.add.reduceat(r.count, starts)
    mean = np.add.reduceat(r.count * r.mean, starts) / count
    # M2 of a union = sum of the parts' M2 + n_i * (mean_i - mean)^2.
    dm = r.mean - np.repeat(mean, np.diff(np.append(starts, len(r))))
    m2 = np.add.reduceat(r.m2 + r.count * dm * dm, starts)
    return _Rows(
        r.sensor[starts],
        r.period[starts],
        count,
        mean,
        m2,
        np.minimum.reduceat(r.min, starts),
        np.maximum.reduceat(r.max, starts),
    )


class SummaryAggregator:
    """Count, mean, std, min and max per sensor and aligned period.

    Args:
        period_ns: length of a period in ns (> 0); periods are aligned on multiples.
        sensor_names: catalog names, copied into every batch's ``sensor_names``.
        lateness_ns: how long after its end a period stays open for late samples
            (default: one period).
    """

    def __init__(
        self, period_ns: int, sensor_names: Sequence[str], lateness_ns: int | None = None
    ) -> None:
        if period_ns <= 0:
            raise ConfigError(f"summaries.period: must be > 0 (got {period_ns} ns)")
        lateness = period_ns if lateness_ns is None else lateness_ns
        if lateness < 0:
            raise ConfigError(f"summaries.lateness: must be >= 0 (got {lateness} ns)")
        self.period_ns = int(period_ns)
        self.lateness_ns = int(lateness)
        self.sensor_names = tuple(sensor_names)
        self._open = _Rows.empty()
        self.samples_in = 0
        self.samples_out = 0

    def set_sensor_names(self, sensor_names: Sequence[str]) -> None:
        """Update the names written into batches (the catalog grew)."""
        self.sensor_names = tuple(sensor_names)

    @property
    def open_rows(self) -> int:
        """(sensor, period) aggregates held, waiting for their period to close."""
        return len(self._open)

    def process(self, frame: Frame, now_ns: int) -> SummaryBatch | None:
        """Add ``frame``'s samples; return the periods closed at ``now_ns``, if any."""
        return self.process_sorted(ensure_sorted(frame), now_ns)

    def process_sorted(self, frame: Frame, now_ns: int) -> SummaryBatch | None:
        """As :meth:`process` for a frame already sorted by (sensor, ts); no check."""
        if len(frame):
            self.samples_in += len(frame)
            fresh = _reduce(frame, self.period_ns)
            self._open = _merge(_concat(self._open, fresh)) if len(self._open) else fresh
        if not len(self._open):
            return None
        # Period p closes at (p + 1) * period + lateness <= now.
        last_closed = (now_ns - self.lateness_ns) // self.period_ns - 1
        closed = self._open.period <= last_closed
        if not closed.any():
            return None
        out = self._open.take(closed)
        self._open = self._open.take(~closed)
        return self._emit(out)

    def flush(self) -> SummaryBatch | None:
        """Emit every open period (at shutdown); the aggregator is empty afterwards."""
        if not len(self._open):
            return None
        out, self._open = self._open, _Rows.empty()
        return self._emit(out)

    def _emit(self, rows: _Rows) -> SummaryBatch:
        order = np.lexsort((rows.sensor, rows.period))  # by period, then sensor
        r = rows.take(order)
        self.samples_out += int(r.count.sum())
        t0 = r.period * self.period_ns
        return SummaryBatch(
            sensor=r.sensor,
            t0_ns=t0,
            t1_ns=t0 + self.period_ns,
            count=r.count,
            mean=r.mean.astype(np.float32),
            std=np.sqrt(np.maximum(r.m2, 0.0) / r.count).astype(np.float32),
            min=r.min,
            max=r.max,
            sensor_names=self.sensor_names,
        )


def _concat(a: _Rows, b: _Rows) -> _Rows:
    return _Rows(
        np.concatenate([a.sensor, b.sensor]),
        np.concatenate([a.period, b.period]),
        np.concatenate([a.count, b.count]),
        np.concatenate([a.mean, b.mean]),
        np.concatenate([a.m2, b.m2]),
        np.concatenate([a.min, b.min]),
        np.concatenate([a.max, b.max]),
    )

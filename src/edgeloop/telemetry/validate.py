"""Input validation of frames: keep the valid rows, count the rejects per reason.

:class:`FrameValidator` is the first stage of a node. Every rejected sample gets exactly
one reason, checked in this order:

1. ``unknown_sensor`` — the sensor index is not in the catalog;
2. ``non_finite`` — the value is NaN or ±inf;
3. ``future`` — ``ts > now_ns + max_future_ns``;
4. ``out_of_order`` — ``ts`` is *strictly* older than the sensor's last accepted
   timestamp, across frames and within a frame (rows are taken in arrival order).
   Equal timestamps are accepted: two samples of one sensor at the same instant are a
   duplicate at worst, and de-duplication is not a validation question.

A frame larger than ``max_batch`` rows is rejected whole as ``oversized`` (the source
should split it; refusing bounds the memory and latency of one step).

Valid frames take a fast path of a few O(n) reductions (no sort, no copy): a frame that
is grouped by sensor (what :meth:`Frame.sorted` returns) or globally time-ordered and
fully valid is returned as is. Anything else takes the general path: one stable sort by
sensor and a segmented running maximum, still vectorized.

>>> from edgeloop.telemetry.frame import Frame, SensorCatalog, SensorSpec
>>> v = FrameValidator(SensorCatalog.of([SensorSpec("a", "m"), SensorSpec("b", "m")]))
>>> out = v.process(Frame.from_arrays([0, 0, 1, 0], [10, 20, 5, 15], [1, 2, 3, 4]), 100)
>>> out.ts.tolist(), dict(v.rejects)
([10, 20, 5], {<RejectReason.OUT_OF_ORDER: 'out_of_order'>: 1})
>>> str(v.examples[-1])
"ts: out_of_order (1 sample of 1 sensor; first: sensor 'a' at ts 15 (value 4.0), older than its last accepted ts 20)"
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgeloop.errors import RejectReason, TelemetryError
from edgeloop.telemetry.frame import Frame, SensorCatalog

MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
"""Largest payload (bytes, as received) any boundary accepts; the codec enforces it too."""
_NEVER = np.iinfo(np.int64).min  # "no sample accepted yet"


@dataclass(frozen=True, slots=True)
class RejectRecord:
    """One example of rejected input, for operators.

    Attributes:
        reason: why it was rejected.
        field: the offending field, e.g. ``"value"`` or ``"records[3].ts"``.
        detail: what was found and where (sensor, timestamp, value).
        count: how many samples (or records) this example stands for.
    """

    reason: RejectReason
    field: str
    detail: str = ""
    count: int = 1

    def __str__(self) -> str:
        msg = f"{self.field}: {self.reason.value}"
        return f"{msg} ({self.detail})" if self.detail else msg

    def error(self) -> TelemetryError:
        """The same information as an exception (e.g. to reject a whole request)."""
        return TelemetryError(self.field, self.reason, self.detail)


def count_rejects(records: Iterable[RejectRecord]) -> Counter[RejectReason]:
    """Rejected samples per reason in ``records`` (each record counts ``count``)."""
    out: Counter[RejectReason] = Counter()
    for r in records:
        out[r.reason] += r.count
    return out


def check_payload_size(
    n_bytes: int, limit: int = MAX_PAYLOAD_BYTES, field: str = "payload"
) -> None:
    """Raise ``TelemetryError(field, OVERSIZED)`` when ``n_bytes > limit``.

    Call it before reading or parsing a body whose length is announced (HTTP
    ``Content-Length``, MQTT payload size), so an oversized input costs nothing.
    """
    if n_bytes > limit:
        raise TelemetryError(field, RejectReason.OVERSIZED, f"{n_bytes} bytes > limit {limit}")


def check_rows(n_rows: int, limit: int, field: str = "frame") -> None:
    """Raise ``TelemetryError(field, OVERSIZED)`` when a batch has more than ``limit`` rows."""
    if n_rows > limit:
        raise TelemetryError(field, RejectReason.OVERSIZED, f"{n_rows} rows > limit {limit}")


class FrameValidator:
    """Stateful validation stage: ``process(frame, now_ns)`` returns the valid rows.

    Args:
        catalog: the node's sensors; indices ``>= len(catalog)`` are unknown. The
            catalog may grow between calls.
        max_future_ns: how far ahead of ``now_ns`` a timestamp may be (clock skew).
        max_batch: largest frame accepted, in rows.
        max_examples: how many recent :class:`RejectRecord` s :attr:`examples` keeps.

    Attributes:
        rejects: rejected samples per reason, cumulative.
        accepted: accepted samples, cumulative.
        examples: the most recent reject examples, one per reason per frame.
        last_ts: last accepted timestamp per sensor index (``int64`` min if none).
    """

    def __init__(
        self,
        catalog: SensorCatalog,
        max_future_ns: int = 5 * 10**9,
        max_batch: int = 1_000_000,
        max_examples: int = 64,
    ) -> None:
        self.catalog = catalog
        self.max_future_ns = int(max_future_ns)
        self.max_batch = int(max_batch)
        self.rejects: Counter[RejectReason] = Counter()
        self.accepted = 0
        self.examples: deque[RejectRecord] = deque(maxlen=max_examples)
        self.last_ts: npt.NDArray[np.int64] = np.full(len(catalog), _NEVER, dtype=np.int64)

    @property
    def rejected(self) -> int:
        """Rejected samples, all reasons, cumulative."""
        return sum(self.rejects.values())

    def process(self, frame: Frame, now_ns: int) -> Frame:
        """Return the rows of ``frame`` that pass every check, in arrival order.

        Args:
            frame: samples as received (any row order).
            now_ns: the node's clock, for the ``future`` check.

        Returns:
            ``frame`` itself when every row is valid, else the valid rows. Rejected rows
            are counted in :attr:`rejects` and exemplified in :attr:`examples`.
        """
        n = len(frame)
        if n == 0:
            return frame
        if n > self.max_batch:
            self._reject_oversized(n)
            return Frame.empty()
        self._grow()
        horizon = min(int(now_ns) + self.max_future_ns, int(np.iinfo(np.int64).max))
        if self._all_valid(frame, horizon):
            self.accepted += n
            return frame
        keep = self._general(frame, int(now_ns), horizon)
        self.accepted += int(np.count_nonzero(keep))
        return frame.take(keep)

    # -- fast path ----------------------------------------------------------------------

    def _all_valid(self, frame: Frame, horizon: int) -> bool:
        """True (and state updated) when every row is valid and rows are in a simple order."""
        sensor, ts = frame.sensor, frame.ts
        if int(sensor.max()) >= self.last_ts.shape[0] or int(ts.max()) > horizon:
            return False
        if not np.isfinite(frame.value).all():
            return False
        return self._ordered(sensor, ts)

    def _ordered(self, sensor: npt.NDArray[np.uint32], ts: npt.NDArray[np.int64]) -> bool:
        """If these (known-sensor) rows are in order and not older than ``last_ts``,
        record them as accepted and return True; else change nothing and return False.

        O(n), no sort, for the two common layouts: grouped by sensor with time
        ascending inside each group (:meth:`Frame.sorted`), or globally time-ordered.
        """
        last = self.last_ts
        n = sensor.shape[0]
        if n == 0:
            return True
        s0, s1 = sensor[:-1], sensor[1:]
        if (s1 >= s0).all():
            # Grouped by sensor: each group must ascend; its first row must not be older
            # than the sensor's last accepted ts; its last row is the new last ts.
            change = s1 != s0
            if not ((ts[1:] >= ts[:-1]) | change).all():
                return False
            ends = np.append(np.flatnonzero(change), n - 1)
            starts = np.insert(ends[:-1] + 1, 0, 0)
            if (ts[starts] < last[sensor[starts]]).any():
                return False
            last[sensor[ends]] = ts[ends]
            return True
        if (ts[1:] >= ts[:-1]).all() and int(ts[0]) >= int(last.max()):
            # Time-ordered and newer than anything accepted before: every sensor's
            # newest row is its maximum. Scatter-max keeps the rule exact.
            np.maximum.at(last, sensor, ts)
            return True
        return False

    # -- general path -------------------------------------------------------------------

    def _general(self, frame: Frame, now_ns: int, horizon: int) -> npt.NDArray[np.bool_]:
        """Classify every row; update state and counters; return the keep mask."""
        sensor, ts, value = frame.sensor, frame.ts, frame.value
        n_known = self.last_ts.shape[0]
        unknown = sensor >= n_known
        nonfinite = ~np.isfinite(value) & ~unknown
        future = (ts > horizon) & ~unknown & ~nonfinite
        cand = np.flatnonzero(~(unknown | nonfinite | future))
        ooo = np.zeros(sensor.shape[0], dtype=bool)
        behind: dict[int, int] = {}  # row -> the ts it fell behind of (for the example)
        if cand.shape[0] and not self._ordered(sensor[cand], ts[cand]):
            by = sensor[cand]
            if n_known <= 1 << 16:  # numpy's stable sort is a radix sort for 16-bit keys
                by = by.astype(np.uint16)
            order = cand[np.argsort(by, kind="stable")]  # by sensor, arrival order kept
            gs, gt = sensor[order], ts[order]
            prev, group_end, group_max = self._running_prev(gs, gt)
            bad = np.flatnonzero(gt < prev)
            if bad.shape[0]:
                rows = order[bad]
                ooo[rows] = True
                j = int(np.argmin(rows))
                behind[int(rows[j])] = int(prev[bad[j]])
            # The newest candidate of a sensor is accepted unless older than last_ts.
            s_end = gs[group_end]
            np.maximum(self.last_ts[s_end], group_max, out=group_max)
            self.last_ts[s_end] = group_max
        limit_s = self.max_future_ns / 1e9
        self._count(
            frame,
            unknown,
            RejectReason.UNKNOWN_SENSOR,
            "sensor",
            lambda i: f"index not in the catalog of {n_known} sensors",
        )
        self._count(frame, nonfinite, RejectReason.NON_FINITE, "value", lambda i: "not finite")
        self._count(
            frame,
            future,
            RejectReason.FUTURE,
            "ts",
            lambda i: f"{(int(ts[i]) - now_ns) / 1e9:.3f} s ahead of now, limit {limit_s:g} s",
        )
        self._count(
            frame,
            ooo,
            RejectReason.OUT_OF_ORDER,
            "ts",
            lambda i: f"older than its last accepted ts {behind[i]}",
        )
        keep: npt.NDArray[np.bool_] = ~(unknown | nonfinite | future | ooo)
        return keep

    def _running_prev(
        self, gs: npt.NDArray[np.uint32], gt: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp], npt.NDArray[np.int64]]:
        """Segmented running maximum over rows grouped by sensor (arrival order inside).

        Returns:
            ``(prev, group_end, group_max)``: for each row the newest ts before it in its
            group or the sensor's ``last_ts``, whichever is newer; the position of each
            group's last row; each group's newest ts.

        No loop: each ts is mapped to a key that keeps its order, offset by
        ``group * width`` so that one global ``maximum.accumulate`` never carries a
        value across groups. The key is ``ts - min(ts)`` when the time span allows it,
        else the dense rank of ts (one more sort).
        """
        # In-place arithmetic on purpose: fresh 100k-row arrays cost page faults that
        # dominate this function otherwise.
        m = gt.shape[0]
        first = np.empty(m, dtype=bool)
        first[0] = True
        np.not_equal(gs[1:], gs[:-1], out=first[1:])
        offset = np.cumsum(first, dtype=np.int64)
        offset -= 1  # the group number of each row
        n_groups = int(offset[-1]) + 1
        lo = int(gt.min())
        span = int(gt.max()) - lo + 1
        uniq = None
        if span * n_groups < 2**62:
            offset *= span
            run = gt - lo
        else:
            uniq, rank = np.unique(gt, return_inverse=True)
            offset *= m
            run, lo = rank.astype(np.int64).reshape(-1), 0
        run += offset
        np.maximum.accumulate(run, out=run)
        run -= offset  # the key of each row's running maximum
        if uniq is None:
            run += lo
        else:
            run = uniq[run]
        prev = np.empty(m, dtype=np.int64)
        prev[1:] = run[:-1]
        prev[first] = _NEVER
        np.maximum(prev, np.take(self.last_ts, gs, out=offset), out=prev)
        group_end = np.append(np.flatnonzero(first[1:]), m - 1)
        return prev, group_end, run[group_end]

    # -- bookkeeping --------------------------------------------------------------------

    def _grow(self) -> None:
        n = len(self.catalog)
        if n > self.last_ts.shape[0]:
            extra = np.full(n - self.last_ts.shape[0], _NEVER, dtype=np.int64)
            self.last_ts = np.concatenate([self.last_ts, extra])

    def _name(self, idx: int) -> str:
        return repr(self.catalog[idx].name) if idx < len(self.catalog) else f"#{idx}"

    def _count(
        self,
        frame: Frame,
        mask: npt.NDArray[np.bool_],
        reason: RejectReason,
        field: str,
        why: Callable[[int], str],
    ) -> None:
        """Count the rows in ``mask`` and record one example naming the first of them."""
        rows = np.flatnonzero(mask)
        k = int(rows.shape[0])
        if k == 0:
            return
        self.rejects[reason] += k
        i = int(rows[0])
        s, t, v = int(frame.sensor[i]), int(frame.ts[i]), float(frame.value[i])
        n_sensors = int(np.unique(frame.sensor[rows]).shape[0])
        detail = (
            f"{k} sample{'s' * (k > 1)} of {n_sensors} sensor{'s' * (n_sensors > 1)}; "
            f"first: sensor {self._name(s)} at ts {t} (value {v}), {why(i)}"
        )
        self.examples.append(RejectRecord(reason, field, detail, k))

    def _reject_oversized(self, n: int) -> None:
        self.rejects[RejectReason.OVERSIZED] += n
        self.examples.append(
            RejectRecord(
                RejectReason.OVERSIZED,
                "frame",
                f"{n} rows > max_batch {self.max_batch}; frame dropped, split it at the source",
                n,
            )
        )

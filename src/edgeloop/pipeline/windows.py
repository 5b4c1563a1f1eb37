"""Count-based windows per sensor, stateful across frames.

A :class:`Windower` cuts the samples of one *window group* (a set of sensors with the
same nominal rate) into windows of ``size`` samples that start every ``hop`` samples:
``hop == size`` gives tumbling windows, ``hop < size`` sliding ones. Windows are count
based, not time based: sensors of a group have a fixed nominal rate, so ``size``
samples always span the same time, and a count never depends on clock jitter.

The samples of each sensor that do not yet fill a window are carried to the next frame
(at most ``size - 1`` per sensor), so feeding a stream in any split of frames yields
exactly the same windows as feeding it whole. Samples are taken in arrival order within
each sensor; the caller sorts frames by (sensor, ts) (see :func:`ensure_sorted`).

>>> import numpy as np
>>> from edgeloop.telemetry.frame import Frame
>>> w = Windower("g", np.array([0, 1]), size=2, hop=2)
>>> f = Frame.from_arrays([0, 0, 0, 1, 1], [1, 2, 3, 1, 2], [1.0, 2.0, 3.0, 5.0, 6.0])
>>> out = w.process(f)
>>> out.values.tolist(), out.sensor.tolist()
([[1.0, 2.0], [5.0, 6.0]], [0, 1])
>>> w.process(Frame.from_arrays([0], [4], [4.0])).values.tolist()
[[3.0, 4.0]]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edgeloop.errors import ConfigError
from edgeloop.pipeline.types import Windows
from edgeloop.telemetry.frame import SENSOR_DTYPE, TS_DTYPE, VALUE_DTYPE, Frame

__all__ = ["Windower", "ensure_sorted", "is_sorted"]


def is_sorted(frame: Frame) -> bool:
    """True when rows are grouped by ascending sensor with ts ascending inside each.

    Cheaper than :meth:`Frame.is_sorted` on the hot path: no int64 upcast of the sensor
    column, and the timestamp test runs only when the sensor test passes.
    """
    n = len(frame)
    if n < 2:
        return True
    s, ts = frame.sensor, frame.ts
    if bool((s[1:] < s[:-1]).any()):
        return False
    # Time may only step back where the sensor changes (few places in a sorted frame).
    back = np.flatnonzero(ts[1:] < ts[:-1])
    return bool((s[back + 1] != s[back]).all())


def ensure_sorted(frame: Frame) -> Frame:
    """``frame`` itself when sorted by (sensor, ts), else a sorted copy (stable)."""
    return frame if is_sorted(frame) else frame.sorted()


def _empty_windows(group: str, size: int) -> Windows:
    return Windows(
        group,
        np.empty(0, SENSOR_DTYPE),
        np.empty(0, TS_DTYPE),
        np.empty(0, TS_DTYPE),
        np.empty((0, size), VALUE_DTYPE),
    )


class Windower:
    """Tumbling or sliding count-based windows for the sensors of one group.

    Args:
        group: name of the window group, copied into every :class:`Windows`.
        sensors: catalog indices of the group's sensors (order does not matter).
        size: samples per window (>= 1).
        hop: samples between window starts (1 <= hop <= size); ``None`` means ``size``.

    Output rows are grouped by sensor (ascending index) and time-ascending within a
    sensor. Memory is bounded: ``size - 1`` carried samples per sensor at most.
    """

    def __init__(
        self, group: str, sensors: npt.ArrayLike, size: int, hop: int | None = None
    ) -> None:
        hop = size if hop is None else hop
        if size < 1:
            raise ConfigError(f"windows.{group}.size: must be >= 1 (got {size})")
        if not 1 <= hop <= size:
            raise ConfigError(f"windows.{group}.hop: must be in [1, size] (got {hop}, size {size})")
        self.group = group
        self.size = size
        self.hop = hop
        self.sensors = np.empty(0, SENSOR_DTYPE)
        # Carry of the incomplete tail per sensor, RIGHT-aligned: row i holds its
        # _carry_len[i] samples in the last columns, so "carry + new samples" of every
        # sensor is one concatenation along the rows and the next carry is a tail slice.
        self._carry_v = np.empty((0, size), VALUE_DTYPE)
        self._carry_t = np.empty((0, size), TS_DTYPE)
        self._carry_len = np.empty(0, np.int64)
        self.add_sensors(sensors)

    def add_sensors(self, sensors: npt.ArrayLike) -> None:
        """Add sensors to the group (e.g. registered after start); known ones are ignored."""
        new = np.setdiff1d(np.asarray(sensors, dtype=SENSOR_DTYPE), self.sensors)
        if new.size == 0:
            return
        merged = np.concatenate([self.sensors, new])
        order = np.argsort(merged, kind="stable")
        k = new.size
        self.sensors = merged[order]
        self._carry_v = np.concatenate([self._carry_v, np.empty((k, self.size), VALUE_DTYPE)])[
            order
        ]
        self._carry_t = np.concatenate([self._carry_t, np.empty((k, self.size), TS_DTYPE)])[order]
        self._carry_len = np.concatenate([self._carry_len, np.zeros(k, np.int64)])[order]

    @property
    def pending(self) -> int:
        """Samples held in carries, waiting for the rest of their window."""
        return int(self._carry_len.sum())

    def process(self, frame: Frame) -> Windows:
        """Every window completed by ``frame`` (rows of other sensors are ignored).

        When the group's rows form one block of the frame and no carry is pending, the
        returned ``values`` is a zero-copy view of ``frame.value``: treat it as read-only.
        """
        return self.process_sorted(ensure_sorted(frame))

    def process_sorted(self, frame: Frame) -> Windows:
        """As :meth:`process` for a frame already sorted by (sensor, ts); no check.

        Vectorized over sensors, with no loop per sensor: each sensor's buffer is its
        right-aligned carry followed by its new samples, all sensors stacked as rows of
        one ``(g, size + c)`` matrix.
        """
        g, size, hop = self.sensors.size, self.size, self.hop
        if g == 0 or len(frame) == 0:
            return _empty_windows(self.group, size)
        starts = np.searchsorted(frame.sensor, self.sensors, side="left")
        ends = np.searchsorted(frame.sensor, self.sensors, side="right")
        counts = (ends - starts).astype(np.int64)
        c = int(counts.max())
        if c == 0:
            return _empty_windows(self.group, size)
        if (
            hop == size
            and c % size == 0
            and bool((counts == c).all())
            and not self._carry_len.any()
            and (g == 1 or bool((starts[1:] == ends[:-1]).all()))
        ):
            # Whole windows, nothing carried, one block: a zero-copy view of the frame.
            lo, k0 = int(starts[0]), c // size
            rows = np.repeat(np.arange(g), k0)
            t = frame.ts[lo : lo + g * c].reshape(g * k0, size)
            return Windows(
                self.group,
                self.sensors[rows],
                t[:, 0],
                t[:, -1],
                frame.value[lo : lo + g * c].reshape(g * k0, size),
            )
        vbuf, tparts = self._buffers(frame, starts, ends, counts, c)
        width = size + c
        total = self._carry_len + counts  # samples per sensor buffer
        k = np.where(total >= size, (total - size) // hop + 1, 0)
        first = width - total  # column of each buffer's first sample
        out = _empty_windows(self.group, size)
        n_win = int(k.sum())
        if n_win:
            k0, f0 = int(k[0]), int(first[0])
            if bool((k == k0).all()) and bool((first == f0).all()):  # the steady state
                span = vbuf[:, f0 : f0 + (k0 - 1) * hop + size]
                if hop == size:
                    vals = span.reshape(g * k0, size)
                else:
                    view = np.lib.stride_tricks.sliding_window_view(span, size, axis=1)
                    vals = view[:, ::hop].reshape(g * k0, size)
                rows = np.repeat(np.arange(g), k0)
                p0 = np.tile(f0 + np.arange(k0, dtype=np.int64) * hop, g)
            else:
                rows = np.repeat(np.arange(g), k)
                j = np.arange(n_win) - np.repeat(np.cumsum(k) - k, k)
                p0 = first[rows] + j * hop
                vals = vbuf[rows[:, None], p0[:, None] + np.arange(size)[None, :]]
            out = Windows(
                self.group,
                self.sensors[rows],
                _time_at(tparts, rows, p0),
                _time_at(tparts, rows, p0 + size - 1),
                np.ascontiguousarray(vals, dtype=VALUE_DTYPE),
            )
        # The next carry: the last `size` columns hold every sensor's remaining tail.
        self._carry_v = np.ascontiguousarray(vbuf[:, c:])
        self._carry_t = _time_tail(tparts, size)
        self._carry_len = total - k * hop
        return out

    def _buffers(
        self,
        frame: Frame,
        starts: npt.NDArray[np.intp],
        ends: npt.NDArray[np.intp],
        counts: npt.NDArray[np.int64],
        c: int,
    ) -> tuple[npt.NDArray[np.float32], tuple[npt.NDArray[np.int64], ...]]:
        """The ``(g, size + c)`` value buffer (right-aligned carry, then new rows) and the
        time buffer as parts: ``(carry, block)`` side by side, or one whole matrix.

        Timestamps are only read at window ends and for the next carry, so the common
        case never copies the whole time matrix.
        """
        g, size = self.sensors.size, self.size
        if bool((counts == c).all()):
            if g == 1 or bool((starts[1:] == ends[:-1]).all()):
                lo = int(starts[0])
                vblock = frame.value[lo : lo + g * c].reshape(g, c)
                tblock = frame.ts[lo : lo + g * c].reshape(g, c)
            else:  # the group interleaves with other groups: one gather
                idx = (starts[:, None] + np.arange(c, dtype=np.intp)[None, :]).ravel()
                vblock = frame.value.take(idx).reshape(g, c)
                tblock = frame.ts.take(idx).reshape(g, c)
            return np.concatenate([self._carry_v, vblock], axis=1), (self._carry_t, tblock)
        # Ragged (a sensor missing samples in this frame): each buffer must end at the
        # last column, so sensor i's carry shifts right by c - counts[i].
        width = size + c
        vbuf = np.zeros((g, width), VALUE_DTYPE)
        tbuf = np.zeros((g, width), TS_DTYPE)
        shift = (c - counts)[:, None] + np.arange(size)[None, :]
        rows2 = np.arange(g)[:, None]
        vbuf[rows2, shift] = self._carry_v
        tbuf[rows2, shift] = self._carry_t
        r = np.repeat(np.arange(g), counts)
        rank = np.arange(r.size) - np.repeat(np.cumsum(counts) - counts, counts)
        src = starts[r] + rank
        col = width - counts[r] + rank
        vbuf[r, col] = frame.value[src]
        tbuf[r, col] = frame.ts[src]
        return vbuf, (tbuf,)


def _time_at(
    parts: tuple[npt.NDArray[np.int64], ...],
    rows: npt.NDArray[np.intp],
    cols: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """Entries ``(rows, cols)`` of the time buffer given as parts laid side by side."""
    if len(parts) == 1:
        return parts[0][rows, cols]
    left, right = parts
    w = left.shape[1]
    from_left = left[rows, np.minimum(cols, w - 1)]
    from_right = right[rows, np.clip(cols - w, 0, max(right.shape[1] - 1, 0))]
    out: npt.NDArray[np.int64] = np.where(cols < w, from_left, from_right)
    return out


def _time_tail(parts: tuple[npt.NDArray[np.int64], ...], size: int) -> npt.NDArray[np.int64]:
    """The last ``size`` columns of the time buffer given as parts."""
    if len(parts) == 1:
        return np.ascontiguousarray(parts[0][:, -size:])
    left, right = parts
    c = right.shape[1]
    if c >= size:
        return np.ascontiguousarray(right[:, c - size :])
    return np.concatenate([left[:, c:], right], axis=1)

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

from typing import Any

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


class _Span:
    """Reads positions of the per-sensor buffers "carry[i, :m] + frame rows of sensor i"."""

    def __init__(self, starts: npt.NDArray[np.intp], m: int) -> None:
        self.starts = starts
        self.m = m

    def copy(
        self,
        dst: npt.NDArray[Any],
        a: int,
        b: int,
        carry: npt.NDArray[Any],
        col: npt.NDArray[Any],
        block: npt.NDArray[Any] | None,
    ) -> None:
        """``dst[:, :b - a]`` = buffer positions ``[a, b)`` of every sensor.

        ``dst`` may be ``carry`` itself when ``a`` > 0: the carry part moves left first.
        """
        m = self.m
        ca, cb = min(a, m), min(b, m)
        if cb > ca:
            dst[:, : cb - ca] = carry[:, ca:cb]
        fa, fb = max(a, m) - m, b - m
        if fb <= fa:
            return
        off = cb - ca
        if block is not None:
            dst[:, off : off + fb - fa] = block[:, fa:fb]
        else:
            for i, s in enumerate(self.starts.tolist()):  # a slice copy per sensor
                dst[i, off : off + fb - fa] = col[s + fa : s + fb]

    def gather(
        self, pos: npt.NDArray[np.int64], carry: npt.NDArray[np.int64], col: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        """Values at buffer positions ``pos`` (few) of every sensor, sensor-major, raveled."""
        m = self.m
        from_frame = col[self.starts[:, None] + np.maximum(pos - m, 0)[None, :]]
        if m == 0:
            return from_frame.ravel()
        from_carry = carry[:, np.minimum(pos, m - 1)]
        return np.where(pos[None, :] < m, from_carry, from_frame).ravel()


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
        # Carry of the incomplete tail per sensor: row i holds _carry_len[i] samples.
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
        """As :meth:`process` for a frame already sorted by (sensor, ts); no check."""
        g = self.sensors.size
        if g == 0:
            return _empty_windows(self.group, self.size)
        starts = np.searchsorted(frame.sensor, self.sensors, side="left")
        ends = np.searchsorted(frame.sensor, self.sensors, side="right")
        counts = ends - starts
        c0 = int(counts[0])
        m0 = int(self._carry_len[0])
        if bool((counts == c0).all()) and bool((self._carry_len == m0).all()):
            return self._uniform(frame, starts, ends, c0, m0)
        return self._general(frame, starts, ends)

    # -- fast path: every sensor brings c samples and carries m ------------------------
    def _uniform(
        self,
        frame: Frame,
        starts: npt.NDArray[np.intp],
        ends: npt.NDArray[np.intp],
        c: int,
        m: int,
    ) -> Windows:
        g, size, hop = self.sensors.size, self.size, self.hop
        if c == 0:
            return _empty_windows(self.group, size)
        total = m + c
        k = (total - size) // hop + 1 if total >= size else 0
        # Per-sensor "buffer" = carry (m samples) followed by the frame's c samples. When
        # the group's rows form one block of the frame, that block is a (g, c) view.
        contiguous = g == 1 or bool((starts[1:] == ends[:-1]).all())
        lo = int(starts[0])
        vblock = frame.value[lo : lo + g * c].reshape(g, c) if contiguous else None
        tblock = frame.ts[lo : lo + g * c].reshape(g, c) if contiguous else None
        span = _Span(starts, m)
        out = _empty_windows(self.group, size)
        if k > 0:
            if hop == size and m == 0 and vblock is not None and k * size == c:
                vals = vblock.reshape(g * k, size)  # zero-copy
            elif hop == size:
                flat = np.empty((g, k * size), VALUE_DTYPE)
                span.copy(flat, 0, k * size, self._carry_v, frame.value, vblock)
                vals = flat.reshape(g * k, size)
            else:
                buf = np.empty((g, (k - 1) * hop + size), VALUE_DTYPE)
                span.copy(buf, 0, buf.shape[1], self._carry_v, frame.value, vblock)
                view = np.lib.stride_tricks.sliding_window_view(buf, size, axis=1)
                vals = view[:, ::hop].reshape(g * k, size)
            pos = np.arange(k, dtype=np.int64) * hop
            out = Windows(
                self.group,
                np.repeat(self.sensors, k),
                span.gather(pos, self._carry_t, frame.ts),
                span.gather(pos + (size - 1), self._carry_t, frame.ts),
                vals,
            )
        # New carry: the tail from the next window start on (shorter than size). The
        # timestamps above were read from the old carry, so it is overwritten only now.
        nxt = k * hop
        rest = total - nxt
        if rest:
            span.copy(self._carry_v, nxt, total, self._carry_v, frame.value, vblock)
            span.copy(self._carry_t, nxt, total, self._carry_t, frame.ts, tblock)
        self._carry_len[:] = rest
        return out

    # -- general path: a loop per sensor -----------------------------------------------
    def _general(
        self, frame: Frame, starts: npt.NDArray[np.intp], ends: npt.NDArray[np.intp]
    ) -> Windows:
        size, hop = self.size, self.hop
        vals: list[npt.NDArray[np.float32]] = []
        t0s: list[npt.NDArray[np.int64]] = []
        t1s: list[npt.NDArray[np.int64]] = []
        sens: list[npt.NDArray[np.uint32]] = []
        for i in range(self.sensors.size):
            s, e = int(starts[i]), int(ends[i])
            m = int(self._carry_len[i])
            if s == e:
                continue
            v = np.concatenate([self._carry_v[i, :m], frame.value[s:e]])
            t = np.concatenate([self._carry_t[i, :m], frame.ts[s:e]])
            total = v.size
            k = (total - size) // hop + 1 if total >= size else 0
            if k:
                win = np.lib.stride_tricks.sliding_window_view(v, size)
                vals.append(win[: (k - 1) * hop + 1 : hop])
                t0s.append(t[: (k - 1) * hop + 1 : hop])
                t1s.append(t[size - 1 : size - 1 + (k - 1) * hop + 1 : hop])
                sens.append(np.full(k, self.sensors[i], SENSOR_DTYPE))
            rest = total - k * hop
            self._carry_v[i, :rest] = v[k * hop :]
            self._carry_t[i, :rest] = t[k * hop :]
            self._carry_len[i] = rest
        if not vals:
            return _empty_windows(self.group, size)
        return Windows(
            self.group,
            np.concatenate(sens),
            np.concatenate(t0s),
            np.concatenate(t1s),
            np.concatenate(vals),
        )

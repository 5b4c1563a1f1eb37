"""Raw context around events: a short rolling history of raw samples.

A forwarded event carries the raw samples of its machine from ``pre_s`` before the
triggering window to ``post_s`` after it, so whoever looks at it upstream sees what
the detector saw. The history is a deque of recent frames bounded by data time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edgeloop.telemetry.frame import Frame
from edgeloop.telemetry.records import Event


@dataclass(slots=True)
class RecentFrames:
    """Frames of the last ``keep_s`` seconds of data time."""

    keep_s: float
    _frames: deque[tuple[int, Frame]] = field(default_factory=deque)

    def add(self, frame: Frame) -> None:
        if len(frame) == 0:
            return
        t_max = int(frame.ts.max())
        self._frames.append((t_max, frame))
        horizon = t_max - int(self.keep_s * 1e9)
        while self._frames and self._frames[0][0] < horizon:
            self._frames.popleft()

    def window(self, sensors: npt.NDArray[np.uint32], t0_ns: int, t1_ns: int) -> Frame:
        """Samples of ``sensors`` with ``t0_ns <= ts < t1_ns``, sorted by (sensor, ts)."""
        parts = []
        for t_max, f in self._frames:
            if t_max < t0_ns:
                continue
            sel = (f.ts >= t0_ns) & (f.ts < t1_ns) & np.isin(f.sensor, sensors)
            if sel.any():
                parts.append(f.take(sel))
        return Frame.concat(parts).sorted()


@dataclass(slots=True)
class PendingEvent:
    """An event waiting for its post-trigger context before it goes upstream."""

    event: Event
    sensors: npt.NDArray[np.uint32]
    due_ns: int

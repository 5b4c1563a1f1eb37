"""Bad telemetry on purpose: corrupt a share of a frame's samples the way field devices do.

Each corrupted sample gets one defect: a NaN or infinite value, a timestamp an hour in
the future, a timestamp from long ago (out of order), or a sensor index the node does
not know. The node must reject exactly those, count them by reason, and keep the rest.
"""

from __future__ import annotations

import numpy as np

from edgeloop.telemetry.frame import Frame

DEFECTS = ("nan", "inf", "future", "past", "unknown_sensor")


def corrupt_samples(
    frame: Frame, rng: np.random.Generator, rate: float, n_sensors: int
) -> tuple[Frame, int]:
    """A copy of ``frame`` with about ``rate`` of its samples corrupted; and how many."""
    n = len(frame)
    if n == 0 or rate <= 0:
        return frame, 0
    k = int(rng.binomial(n, rate))
    if k == 0:
        return frame, 0
    rows = rng.choice(n, size=k, replace=False)
    kinds = rng.integers(0, len(DEFECTS), size=k)
    sensor, ts, value = frame.sensor.copy(), frame.ts.copy(), frame.value.copy()
    hour = 3_600 * 10**9
    value[rows[kinds == 0]] = np.nan
    value[rows[kinds == 1]] = np.inf
    ts[rows[kinds == 2]] += hour
    ts[rows[kinds == 3]] -= 24 * hour
    sensor[rows[kinds == 4]] = n_sensors + 7
    return Frame(sensor, ts, value), k

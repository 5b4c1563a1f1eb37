"""Sources: where a node's frames come from (simulator, CSV replay, HTTP push).

Every source is an async iterator of :class:`Frame`. The HTTP push source lives in
``node/push.py`` (imported only by nodes that accept pushes). Sources at the API boundary (CSV,
HTTP) turn per-sample records into frames once, rejecting bad records with a reason and
keeping the valid ones beside them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeloop.telemetry.frame import Frame, SensorCatalog

if TYPE_CHECKING:
    from edgeloop.sim.factory import FactorySim

Clock = Callable[[], int]


async def sim_source(
    sim: FactorySim,
    tick_s: float,
    until_ns: int,
    clock: Clock = time.time_ns,
    phase_s: float = 0.0,
) -> AsyncIterator[Frame]:
    """Frames from a simulator paced in real time.

    Each tick yields the samples of ``[t, t + tick)`` once the clock has passed
    ``t + tick + phase``, the way a sensor buffer hands over its last block (``phase``
    staggers buffers of different devices). A slow consumer catches up without
    skipping data (samples are never dropped by the source).
    """
    tick_ns = int(tick_s * 1e9)
    phase_ns = int(phase_s * 1e9)
    while sim.now_ns < until_ns:
        step = min(tick_ns, until_ns - sim.now_ns)
        due = sim.now_ns + step + phase_ns
        wait = (due - clock()) / 1e9
        if wait > 0:
            await asyncio.sleep(wait)
        yield sim.step(step)


async def csv_source(
    path: str | Path,
    catalog: SensorCatalog,
    frame_rows: int = 100_000,
    speed: float = 0.0,
    on_reject: Callable[[list[Any]], None] | None = None,
) -> AsyncIterator[Frame]:
    """Replay a ``sensor,ts,value`` CSV file as frames of ``frame_rows`` rows.

    Args:
        speed: 0 replays as fast as the node takes it; 1.0 replays in recorded time.
        on_reject: called with the reject records of the file (bad rows are skipped,
            the rows beside them kept).
    """
    from edgeloop.telemetry.boundary import frame_from_csv

    frame, rejects = frame_from_csv(Path(path), catalog)
    if rejects and on_reject is not None:
        on_reject(list(rejects))
    order = np.argsort(frame.ts, kind="stable")
    frame = frame.take(order)
    start_wall = time.monotonic()
    t0 = int(frame.ts[0]) if len(frame) else 0
    for i in range(0, len(frame), frame_rows):
        part = frame.take(np.arange(i, min(i + frame_rows, len(frame))))
        if speed > 0:
            due = (int(part.ts[-1]) - t0) / 1e9 / speed
            wait = due - (time.monotonic() - start_wall)
            if wait > 0:
                await asyncio.sleep(wait)
        yield part.sorted()

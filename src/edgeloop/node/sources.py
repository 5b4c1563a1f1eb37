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
    align_ns: int | None = None,
) -> AsyncIterator[Frame]:
    """Frames from a simulator paced in real time.

    Each tick yields the samples of ``[t, t + tick)`` once the clock has passed
    ``t + tick + phase``, the way a sensor buffer hands over its last block (``phase``
    staggers buffers of different devices). A slow consumer catches up without
    skipping data (samples are never dropped by the source).

    With ``align_ns`` (the summary period), a source that is behind by more than the
    rest of the current period hands over the whole rest at once: the frame ends on a
    period boundary, so when the node's clock has long passed that period (it catches
    up after a stall, or replays from a resume point after a restart), the period is
    complete when it closes and no later sample falls into an emitted period.
    """
    tick_ns = int(tick_s * 1e9)
    phase_ns = int(phase_s * 1e9)
    while sim.now_ns < until_ns:
        step = min(tick_ns, until_ns - sim.now_ns)
        if align_ns:
            rest = min(align_ns - sim.now_ns % align_ns, until_ns - sim.now_ns)
            if rest > step and sim.now_ns + rest + phase_ns <= clock():
                step = rest
        due = sim.now_ns + step + phase_ns
        wait = (due - clock()) / 1e9
        if wait > 0:
            await asyncio.sleep(wait)
        yield sim.step(step)


def skip_to(sim: FactorySim, t_ns: int, chunk_ns: int = 1_000_000_000) -> int:
    """Advance ``sim`` to ``t_ns`` without handing its samples to anyone (a resumed
    node replays from its resume point, not from the start); returns the samples
    skipped. The simulator is a pure function of time, so what follows is exactly what
    the first run produced from ``t_ns`` on."""
    skipped = 0
    while sim.now_ns < t_ns:
        skipped += len(sim.step(min(chunk_ns, t_ns - sim.now_ns)))
    return skipped


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

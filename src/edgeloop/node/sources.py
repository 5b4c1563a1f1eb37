"""Sources: where a node's frames come from (simulator, CSV replay, HTTP push).

Every source is an async iterator of :class:`Frame`. Sources at the API boundary (CSV,
HTTP) turn per-sample records into frames once, rejecting bad records with a reason and
keeping the valid ones beside them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeloop.telemetry.boundary import frame_from_csv, frame_from_records
from edgeloop.telemetry.frame import Frame, SensorCatalog

if TYPE_CHECKING:
    from edgeloop.sim.factory import FactorySim

Clock = Callable[[], int]


async def sim_source(
    sim: FactorySim,
    tick_s: float,
    until_ns: int,
    clock: Clock = time.time_ns,
) -> AsyncIterator[Frame]:
    """Frames from a simulator paced in real time.

    Each tick yields the samples of ``[t, t + tick)`` once the clock has passed
    ``t + tick``, the way a sensor buffer hands over its last block. A slow consumer
    catches up without skipping data (samples are never dropped by the source).
    """
    tick_ns = int(tick_s * 1e9)
    while sim.now_ns < until_ns:
        step = min(tick_ns, until_ns - sim.now_ns)
        due = sim.now_ns + step
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


class HttpPushSource:
    """Accept JSON telemetry pushed by devices: ``POST /v1/push``.

    Body: ``[{"sensor": "m1.temp", "ts": 1700000000000000000, "value": 21.5}, ...]``.
    The reply says how many records were accepted and, for each rejected one, its index,
    field and reason; valid records in the same request are kept. Runs the standard
    library's threading HTTP server in a background thread (a gateway needs no web
    framework for this) and hands frames to the node's loop.
    """

    def __init__(
        self, catalog: SensorCatalog, host: str = "127.0.0.1", port: int = 0,
        max_body: int = 8 * 1024 * 1024,
    ) -> None:
        self.catalog = catalog
        self.max_body = max_body
        self._queue: asyncio.Queue[Frame] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.accepted = 0
        self.rejected = 0
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                source._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    async def __aiter__(self) -> AsyncIterator[Frame]:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        try:
            while True:
                yield await self._queue.get()
        finally:
            self._server.shutdown()
            self._server.server_close()

    def _reply(self, req: BaseHTTPRequestHandler, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        req.send_response(code)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        if req.path != "/v1/push":
            self._reply(req, 404, {"error": f"unknown path {req.path}; POST /v1/push"})
            return
        length = int(req.headers.get("Content-Length") or 0)
        if length > self.max_body:
            self._reply(req, 413, {"error": {"field": "body", "reason": "oversized",
                                             "detail": f"{length} > {self.max_body} bytes"}})
            return
        try:
            records = json.loads(req.rfile.read(length))
        except (ValueError, UnicodeDecodeError) as exc:
            self._reply(req, 400, {"error": {"field": "body", "reason": "malformed",
                                             "detail": f"not JSON: {exc}"}})
            return
        if not isinstance(records, list):
            self._reply(req, 400, {"error": {"field": "body", "reason": "wrong_type",
                                             "detail": "expected a JSON array of records"}})
            return
        frame, rejects = frame_from_records(records, self.catalog)
        self.accepted += len(frame)
        self.rejected += len(rejects)
        if len(frame) and self._loop is not None and self._queue is not None:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, frame.sorted())
        self._reply(req, 200, {
            "accepted": len(frame),
            "rejected": [
                {"field": r.field, "reason": str(r.reason), "detail": r.detail}
                for r in rejects
            ],
        })

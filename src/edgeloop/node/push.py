"""HTTP push source: devices POST JSON telemetry to a node (``POST /v1/push``)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgeloop.errors import RejectReason, TelemetryError
from edgeloop.telemetry.boundary import frame_from_records
from edgeloop.telemetry.frame import Frame, SensorCatalog
from edgeloop.telemetry.validate import RejectRecord


class HttpPushSource:
    """Accept JSON telemetry pushed by devices: ``POST /v1/push``.

    Body: ``[{"sensor": "m1.temp", "ts": 1700000000000000000, "value": 21.5}, ...]``.
    The reply says how many records were accepted and, for each rejected one, its index,
    field and reason; valid records in the same request are kept. Runs the standard
    library's threading HTTP server in a background thread (a gateway needs no web
    framework for this) and hands frames to the node's loop.
    """

    def __init__(
        self,
        catalog: SensorCatalog,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body: int = 8 * 1024 * 1024,
        on_reject: Callable[[list[RejectRecord]], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self._on_reject = on_reject
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
        announced = (req.headers.get("Content-Length") or "0").strip()
        length = int(announced) if announced.isascii() and announced.isdigit() else -1
        if length < 0:  # int() would raise, and read(-1) would wait for the client to close
            self._reply(
                req,
                400,
                {
                    "error": {
                        "field": "Content-Length",
                        "reason": "malformed",
                        "detail": f"expected a byte count, got {announced!r:.40}",
                    }
                },
            )
            return
        if length > self.max_body:
            self._reply(
                req,
                413,
                {
                    "error": {
                        "field": "body",
                        "reason": "oversized",
                        "detail": f"{length} > {self.max_body} bytes",
                    }
                },
            )
            return
        try:
            records = json.loads(req.rfile.read(length))
        except (ValueError, UnicodeDecodeError) as exc:
            self._reply(
                req,
                400,
                {"error": {"field": "body", "reason": "malformed", "detail": f"not JSON: {exc}"}},
            )
            return
        if not isinstance(records, list):
            self._reply(
                req,
                400,
                {
                    "error": {
                        "field": "body",
                        "reason": "wrong_type",
                        "detail": "expected a JSON array of records",
                    }
                },
            )
            return
        try:
            frame, rejects = frame_from_records(records, self.catalog)
        except TelemetryError as exc:  # too many records: refuse the request whole
            code = 413 if exc.reason == RejectReason.OVERSIZED else 400
            self._reply(
                req,
                code,
                {"error": {"field": exc.field, "reason": str(exc.reason), "detail": exc.detail}},
            )
            return
        self.accepted += len(frame)
        self.rejected += len(rejects)
        if self._loop is not None:
            if rejects and self._on_reject is not None:
                self._loop.call_soon_threadsafe(self._on_reject, list(rejects))
            if len(frame) and self._queue is not None:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, frame.sorted())
        self._reply(
            req,
            200,
            {
                "accepted": len(frame),
                "rejected": [
                    {"field": r.field, "reason": str(r.reason), "detail": r.detail} for r in rejects
                ],
            },
        )

"""HTTP uplink: POST encoded batches to the hub's ``/v1/ingest``; the reply is the ack.

Uses the standard library's ``http.client`` with one keep-alive connection, run in a
worker thread, so a gateway does not import an HTTP stack it does not need (footprint).
Connection failures, timeouts and 5xx replies raise :class:`LinkDown`; the entries stay
in the outbox and go again. ``bytes_sent`` counts request line, headers and body of
every attempt, retransmissions included.
"""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from edgeloop.errors import LinkDown, TransportError
from edgeloop.telemetry import codec
from edgeloop.transport.base import Batch, Message

CONTENT_TYPE = "application/x-edgeloop-batch"


class HttpTransport:
    """Uplink to a hub (or a parent node) over HTTP/1.1.

    Args:
        url: base URL of the receiver, e.g. ``http://127.0.0.1:8000``.
        timeout_s: connect and read timeout per request.
    """

    def __init__(self, url: str, timeout_s: float = 5.0, path: str = "/v1/ingest") -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise TransportError(f"uplink url {url!r}: expected http://host:port")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._path = (parts.path.rstrip("/") or "") + path
        self._timeout = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._acks: asyncio.Queue[Message] = asyncio.Queue()
        self.bytes_sent = 0
        self.batches_sent = 0
        self.failures = 0

    async def send(self, batch: Batch) -> None:
        body = codec.encode_batch(batch)
        reply = await asyncio.to_thread(self._post, body)
        await self._acks.put(codec.decode_ack(reply))

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": CONTENT_TYPE, "Content-Length": str(len(body))}
        request_line = f"POST {self._path} HTTP/1.1\r\n"
        head = request_line + f"Host: {self._host}:{self._port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.bytes_sent += len(head) + len(body)
        self.batches_sent += 1
        try:
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout
                )
            self._conn.request("POST", self._path, body=body, headers=headers)
            resp = self._conn.getresponse()
            data = resp.read()
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            self.failures += 1
            self._reset()
            raise LinkDown(f"uplink {self._host}:{self._port}: {exc!r}") from None
        if resp.status >= 500:
            self.failures += 1
            raise LinkDown(f"uplink {self._host}:{self._port}: HTTP {resp.status}")
        if resp.status != 200:
            self.failures += 1
            raise TransportError(
                f"uplink {self._host}:{self._port} refused the batch: HTTP {resp.status} "
                f"{data[:300]!r}"
            )
        return data

    def _reset(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    async def receive(self) -> AsyncIterator[Message]:
        while True:
            yield await self._acks.get()

    async def close(self) -> None:
        self._reset()

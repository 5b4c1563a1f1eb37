"""HTTP uplink: POST encoded batches to the hub's ``/v1/ingest``; the reply is the ack.

A minimal HTTP/1.1 client on asyncio streams with one keep-alive connection: no thread
hop per batch, and none of ``http.client``'s imports (its header parsing pulls in the
``email`` package, ~1.4 MB resident in every gateway; ``docs/footprint.md``). It speaks
exactly what the uplink needs: ``POST`` with a ``Content-Length`` body; replies framed
by ``Content-Length``, ``chunked`` or the connection's end.

Connection failures, timeouts and 5xx replies raise :class:`LinkDown`; the entries stay
in the outbox and go again. A reused connection the server has closed while idle is
reopened once before giving up. ``bytes_sent`` counts request line, headers and body of
every attempt, retransmissions included.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from edgeloop.errors import LinkDown, TransportError
from edgeloop.telemetry import codec
from edgeloop.transport.base import Batch, Message
from edgeloop.transport.http1 import MalformedReply as _Reply
from edgeloop.transport.http1 import read_chunked, read_head

CONTENT_TYPE = "application/x-edgeloop-batch"
MAX_REPLY_BYTES = 1 << 20  # an ack is a few dozen bytes


class HttpTransport:
    """Uplink to a hub (or a parent node) over HTTP/1.1.

    Args:
        url: base URL of the receiver, e.g. ``http://127.0.0.1:8000``.
        timeout_s: connect timeout, and timeout of each request (send and reply).
        path: the ingest endpoint under ``url``.
    """

    def __init__(self, url: str, timeout_s: float = 5.0, path: str = "/v1/ingest") -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise TransportError(f"uplink url {url!r}: expected http://host:port")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._path = (parts.path.rstrip("/") or "") + path
        self._timeout = timeout_s
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()
        self._acks: asyncio.Queue[Message] = asyncio.Queue()
        self.bytes_sent = 0
        self.batches_sent = 0
        self.failures = 0

    async def send(self, batch: Batch) -> None:
        body = codec.encode_batch(batch)
        head = (
            f"POST {self._path} HTTP/1.1\r\n"
            f"Host: {self._host}:{self._port}\r\n"
            f"Content-Type: {CONTENT_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("ascii")
        async with self._lock:
            reply = await self._post(head, body)
        await self._acks.put(codec.decode_ack(reply))

    async def _post(self, head: bytes, body: bytes) -> bytes:
        self.batches_sent += 1
        for attempt in range(2):
            reused = self._conn is not None
            self.bytes_sent += len(head) + len(body)
            try:
                async with asyncio.timeout(self._timeout):
                    status, data, keep = await self._exchange(head, body)
            except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError, _Reply) as exc:
                await self._reset()
                # A kept-alive connection the server closed while idle fails at once:
                # reopen it once before calling the link down.
                if attempt == 0 and reused and not isinstance(exc, TimeoutError | _Reply):
                    continue
                self.failures += 1
                raise LinkDown(f"uplink {self._host}:{self._port}: {exc!r}") from None
            break
        if not keep:
            await self._reset()
        if status >= 500:
            self.failures += 1
            raise LinkDown(f"uplink {self._host}:{self._port}: HTTP {status}")
        if status != 200:
            self.failures += 1
            raise TransportError(
                f"uplink {self._host}:{self._port} refused the batch: HTTP {status} {data[:300]!r}"
            )
        return data

    async def _exchange(self, head: bytes, body: bytes) -> tuple[int, bytes, bool]:
        """One request on the (re)opened connection: status, body, keep-alive."""
        if self._conn is None:
            self._conn = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._conn
        writer.write(head)
        writer.write(body)
        await writer.drain()
        version, status, headers = await read_head(reader)
        keep = headers.get("connection", "").lower() != "close" and version != b"HTTP/1.0"
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data = await read_chunked(reader, MAX_REPLY_BYTES)
        elif "content-length" in headers:
            n = int(headers["content-length"])
            if n > MAX_REPLY_BYTES:
                raise _Reply(f"reply of {n} bytes")
            data = await reader.readexactly(n)
        else:
            data, keep = await reader.read(MAX_REPLY_BYTES), False
        return status, data, keep

    async def _reset(self) -> None:
        if self._conn is not None:
            writer = self._conn[1]
            self._conn = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def receive(self) -> AsyncIterator[Message]:
        while True:
            yield await self._acks.get()

    async def close(self) -> None:
        await self._reset()

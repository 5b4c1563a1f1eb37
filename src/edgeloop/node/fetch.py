"""A small HTTP/1.1 client for the node's control plane: desired state, artifact ranges, reports.

The uplink has its own client for batches (:mod:`edgeloop.transport.http`); this one does
what reconciliation needs: ``GET`` a JSON document, ``GET`` a byte range of an artifact
(``Range: bytes=a-b-1`` → ``206`` with a matching ``Content-Range``), ``PUT`` a JSON
report. asyncio streams, one connection per request (``Connection: close``): requests are
rare and large, and a cut link never leaves a half-read connection behind. No
``http.client`` (it imports ``email``), no httpx (a hub extra): see ``docs/footprint.md``.

A range whose body is cut off part-way raises :class:`PartialBody` carrying the bytes
that did arrive, so the caller can keep them and resume after them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from edgeloop.errors import LinkDown, TransportError
from edgeloop.transport.http1 import read_chunked, read_head

MAX_DOCUMENT_BYTES = 16 << 20
READ_PIECE = 64 * 1024


class PartialBody(LinkDown):
    """The link dropped while a body was arriving; ``received`` holds what arrived."""

    def __init__(self, message: str, received: bytes) -> None:
        super().__init__(message)
        self.received = received


class HttpStatusError(TransportError):
    """The server answered with an unexpected status (``status``; ``body`` its first bytes)."""

    def __init__(self, message: str, status: int, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete reply: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self, what: str) -> Any:
        """The body as JSON; :class:`TransportError` naming ``what`` if it is not."""
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise TransportError(f"{what}: reply is not JSON ({exc})") from None


class ControlClient:
    """HTTP client for a hub's control-plane endpoints.

    Args:
        url: base URL, e.g. ``http://127.0.0.1:8000``.
        timeout_s: connect timeout and the longest silence while a reply arrives.

    Connection failures, timeouts and 5xx replies raise :class:`LinkDown` (try again
    later); other unexpected statuses raise :class:`HttpStatusError`.
    """

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise TransportError(f"hub url {url!r}: expected http://host:port")
        self.host = parts.hostname
        self.port = parts.port or 80
        self._base = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self.bytes_received = 0
        self.requests = 0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    async def get(self, path: str, ok: tuple[int, ...] = (200,)) -> Reply:
        """``GET path``; the reply if its status is in ``ok``."""
        return await self._request("GET", path, b"", {}, ok)

    async def put_json(self, path: str, doc: Any, ok: tuple[int, ...] = (200, 204)) -> Reply:
        """``PUT path`` with ``doc`` as a JSON body."""
        body = json.dumps(doc, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        return await self._request("PUT", path, body, headers, ok)

    async def get_range(self, path: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the resource at ``path``.

        Raises:
            PartialBody: the link dropped part-way (``received`` holds the prefix).
            LinkDown: no connection, a timeout before any byte, or a 5xx.
            HttpStatusError: a status other than 206 (or 200 for the whole resource),
                or a ``Content-Range`` that is not the range asked for.
        """
        if not 0 <= start < end:
            raise ValueError(f"get_range: ({start}, {end}) is not a byte range")
        headers = {"Range": f"bytes={start}-{end - 1}"}
        reply = await self._request("GET", path, b"", headers, (200, 206), partial=True)
        if reply.status == 200 and not (start == 0 and len(reply.body) == end):
            raise HttpStatusError(
                f"GET {path}: the server ignored Range bytes={start}-{end - 1} (200 with "
                f"{len(reply.body)} bytes)",
                200,
            )
        if reply.status == 206:
            want = f"bytes {start}-{end - 1}/"
            got = reply.headers.get("content-range", "")
            if not got.startswith(want):
                raise HttpStatusError(
                    f"GET {path}: Content-Range {got!r} does not answer bytes={start}-{end - 1}",
                    206,
                )
        if len(reply.body) != end - start:
            raise HttpStatusError(
                f"GET {path}: {len(reply.body)} bytes for a range of {end - start}", reply.status
            )
        return reply.body

    # -- internals ----------------------------------------------------------------------
    async def _request(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
        ok: tuple[int, ...],
        *,
        partial: bool = False,
    ) -> Reply:
        self.requests += 1
        lines = [
            f"{method} {self._base}{path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Connection: close",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(head + body)
                await writer.drain()
                _, status, hdrs = await read_head(reader)
            if status >= 500:
                raise LinkDown(f"hub {self.where}: {method} {path}: HTTP {status}")
            data = await self._read_body(reader, hdrs, method, path, partial and status == 206)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise LinkDown(f"hub {self.where}: {method} {path}: {exc!r}") from None
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        if status not in ok:
            raise HttpStatusError(
                f"hub {self.where}: {method} {path}: HTTP {status} {data[:300]!r}", status, data
            )
        return Reply(status, hdrs, data)

    async def _read_body(
        self,
        reader: asyncio.StreamReader,
        headers: dict[str, str],
        method: str,
        path: str,
        partial: bool,
    ) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            async with asyncio.timeout(self.timeout_s):
                data = await read_chunked(reader, MAX_DOCUMENT_BYTES)
            self.bytes_received += len(data)
            return data
        length = headers.get("content-length")
        n = int(length) if length is not None else MAX_DOCUMENT_BYTES
        if n > MAX_DOCUMENT_BYTES:
            raise ValueError(f"reply of {n} bytes is too large")
        out = bytearray()
        while len(out) < n:
            cut: Exception | None = None
            try:
                async with asyncio.timeout(self.timeout_s):
                    piece = await reader.read(min(READ_PIECE, n - len(out)))
            except (TimeoutError, OSError) as exc:
                piece, cut = b"", exc
            if not piece:
                self.bytes_received += len(out)
                if length is None and cut is None:
                    return bytes(out)  # framed by the connection's end
                msg = (
                    f"hub {self.where}: {method} {path}: link dropped after {len(out)} of {n} bytes"
                )
                if partial:
                    raise PartialBody(msg, bytes(out))
                raise LinkDown(msg)
            out += piece
        self.bytes_received += len(out)
        return bytes(out)

"""Reading an HTTP/1.1 reply from an asyncio stream: the status line, headers, chunks.

The node's two HTTP clients (the uplink, :mod:`edgeloop.transport.http`, and the model
fetcher, :mod:`edgeloop.node.fetch`) share this instead of ``http.client``, which would
pull ``email`` into every gateway (docs/footprint.md). Malformed replies raise
:class:`MalformedReply` (a ``ValueError``) saying what was wrong.
"""

from __future__ import annotations

import asyncio

__all__ = ["MAX_HEADER_LINES", "MalformedReply", "read_chunked", "read_head"]

MAX_HEADER_LINES = 100


class MalformedReply(ValueError):
    """The peer's reply is not the HTTP/1.1 we can read (or is larger than allowed)."""


async def read_head(reader: asyncio.StreamReader) -> tuple[bytes, int, dict[str, str]]:
    """The reply's version (``b"HTTP/1.1"``), status code, and headers (names lowercased).

    Raises ``asyncio.IncompleteReadError`` when the connection closed before a reply.
    """
    status_line = await reader.readline()
    if not status_line:
        raise asyncio.IncompleteReadError(b"", None)
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise MalformedReply(f"bad status line {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    else:
        raise MalformedReply("too many header lines")
    return parts[0], int(parts[1]), headers


async def read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    """A ``Transfer-Encoding: chunked`` body of at most ``limit`` bytes (trailers skipped)."""
    out = bytearray()
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(out)
        if len(out) + size > limit:
            raise MalformedReply("chunked reply too large")
        out += await reader.readexactly(size)
        await reader.readexactly(2)  # CRLF after each chunk

"""The HTTP uplink's own HTTP/1.1 client against scripted servers on loopback.

The contract suite (``test_transport_http.py``) runs it against the real hub; here a
small asyncio server answers the way other servers (or proxies) may: chunked replies,
``Connection: close``, idle keep-alive connections closed by the server, errors, silence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from edgeloop.errors import LinkDown, TransportError
from edgeloop.telemetry import codec
from edgeloop.transport.base import Ack, Batch
from edgeloop.transport.http import HttpTransport

ACK = codec.encode_ack(Ack(node="gw1", upto_seq=0))
BATCH = Batch(node="gw1", after_seq=0, entries=())

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head, await reader.readexactly(length)


def reply(status: str, body: bytes, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    if not any(h.lower().startswith("transfer-encoding") for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def serve(handler: Handler) -> tuple[asyncio.Server, list[int], list[bytes]]:
    """A server calling ``handler(reader, writer, request_number)`` per request; it keeps
    the connection open while the handler returns True. Returns the server, the number
    of connections per accept, and the raw request heads."""
    conns: list[int] = []
    heads: list[bytes] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(0)
        try:
            while True:
                head, _ = await read_request(reader)
                heads.append(head)
                conns[-1] += 1
                if not await handler(reader, writer, len(heads)):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    return server, conns, heads


def url(server: asyncio.Server) -> str:
    return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def send_and_ack(t: HttpTransport) -> Ack:
    await t.send(BATCH)
    return await anext(aiter(t.receive()))


def test_keep_alive_and_counted_bytes() -> None:
    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> bool:
        w.write(reply("200 OK", ACK))
        return True

    async def main() -> None:
        server, conns, heads = await serve(handler)
        t = HttpTransport(url(server))
        for _ in range(3):
            assert (await send_and_ack(t)).node == "gw1"
        await t.close()
        server.close()
        assert conns == [3]  # one connection for every batch
        body = len(codec.encode_batch(BATCH))
        assert t.bytes_sent == sum(len(h) for h in heads) + 3 * body
        assert heads[0].startswith(b"POST /v1/ingest HTTP/1.1\r\nHost: 127.0.0.1:")

    asyncio.run(main())


def test_chunked_and_close_delimited_replies() -> None:
    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> bool:
        if n == 1:
            half = len(ACK) // 2
            chunks = f"{half:x}\r\n".encode() + ACK[:half] + b"\r\n"
            chunks += f"{len(ACK) - half:x}\r\n".encode() + ACK[half:] + b"\r\n0\r\n\r\n"
            w.write(reply("200 OK", chunks, "Transfer-Encoding: chunked"))
            return True
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + ACK)
        return False

    async def main() -> None:
        server, conns, _ = await serve(handler)
        t = HttpTransport(url(server))
        assert (await send_and_ack(t)).node == "gw1"
        assert (await send_and_ack(t)).node == "gw1"
        assert (await send_and_ack(t)).node == "gw1"  # on a new connection
        await t.close()
        server.close()
        assert conns == [2, 1] and t.failures == 0

    asyncio.run(main())


def test_idle_connection_closed_by_the_server_is_reopened_once() -> None:
    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> bool:
        w.write(reply("200 OK", ACK))  # keep-alive promised, then the server hangs up
        await w.drain()
        return False

    async def main() -> None:
        server, conns, heads = await serve(handler)
        t = HttpTransport(url(server))
        await send_and_ack(t)
        await asyncio.sleep(0.05)
        await send_and_ack(t)
        await t.close()
        server.close()
        assert conns == [1, 1] and t.failures == 0 and t.batches_sent == 2
        # The failed write on the dead connection is counted: bytes went out.
        body = len(codec.encode_batch(BATCH))
        assert t.bytes_sent >= sum(len(h) for h in heads) + 2 * body

    asyncio.run(main())


@pytest.mark.parametrize(
    ("status", "error", "needle"),
    [("503 Service Unavailable", LinkDown, "HTTP 503"), ("400 Bad Request", TransportError, "400")],
)
def test_error_statuses(status: str, error: type[Exception], needle: str) -> None:
    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> bool:
        w.write(reply(status, b'{"error": "no"}'))
        return True

    async def main() -> None:
        server, _, _ = await serve(handler)
        t = HttpTransport(url(server))
        with pytest.raises(error, match=needle):
            await t.send(BATCH)
        assert t.failures == 1
        await t.close()
        server.close()

    asyncio.run(main())


def test_silent_server_times_out_and_refused_connection_is_link_down() -> None:
    release = asyncio.Event()

    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> bool:
        await release.wait()
        return False

    async def main() -> None:
        server, _, _ = await serve(handler)
        t = HttpTransport(url(server), timeout_s=0.2)
        with pytest.raises(LinkDown, match="TimeoutError"):
            await t.send(BATCH)
        release.set()
        await asyncio.sleep(0.05)  # let the server close its side
        dead = url(server)
        server.close()
        await server.wait_closed()
        t2 = HttpTransport(dead, timeout_s=1.0)
        with pytest.raises(LinkDown):
            await t2.send(BATCH)
        await t.close()

    asyncio.run(main())


def test_garbage_reply_is_link_down() -> None:
    async def handler(_r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> bool:
        w.write(b"SMTP ready\r\n\r\n")
        return False

    async def main() -> None:
        server, _, _ = await serve(handler)
        t = HttpTransport(url(server))
        with pytest.raises(LinkDown, match="bad status line"):
            await t.send(BATCH)
        await t.close()
        server.close()

    asyncio.run(main())

"""Our TCP proxy against a real echo server: forwards, cuts, stalls, delays and drops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from edgeloop.errors import ConfigError
from edgeloop.sim.netproxy import NetProxy

WAIT_S = 10.0


HANDLERS: set[asyncio.Task[None]] = set()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    task = asyncio.current_task()
    assert task is not None
    HANDLERS.add(task)
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
        HANDLERS.discard(task)


async def close_echo(server: asyncio.Server) -> None:
    """Close the echo server and wait for its handlers (their peers are gone)."""
    server.close()
    await server.wait_closed()
    await asyncio.gather(*HANDLERS, return_exceptions=True)


def with_proxy(body: Callable[[NetProxy], Awaitable[None]], **kw: float) -> NetProxy:
    """Run ``body`` with a proxy in front of an echo server on loopback."""

    async def main() -> NetProxy:
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        proxy = await NetProxy("127.0.0.1", port, **kw).start()  # type: ignore[arg-type]
        try:
            await body(proxy)
        finally:
            await proxy.stop()
            await close_echo(server)
        return proxy

    return asyncio.run(main())


async def roundtrip(
    proxy: NetProxy, data: bytes
) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    writer.write(data)
    await writer.drain()
    got = await asyncio.wait_for(reader.readexactly(len(data)), WAIT_S)
    return got, reader, writer


async def is_refused(proxy: NetProxy) -> bool:
    """True when a new connection is reset before any byte comes back."""
    try:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"ping")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(4), WAIT_S)
    except ConnectionError:
        return True
    writer.close()
    return data == b""


def test_forwards_both_ways_and_counts_bytes() -> None:
    async def body(proxy: NetProxy) -> None:
        payload = bytes(range(256)) * 1000
        got, _, writer = await roundtrip(proxy, payload)
        assert got == payload
        writer.close()

    proxy = with_proxy(body)
    assert proxy.stats.bytes_up == proxy.stats.bytes_down == 256_000
    assert proxy.stats.connections == 1


def test_cut_resets_connections_and_refuses_new_ones_until_restored() -> None:
    async def body(proxy: NetProxy) -> None:
        _, reader, writer = await roundtrip(proxy, b"hello")
        proxy.cut()
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            writer.write(b"more")
            await writer.drain()
            await asyncio.wait_for(reader.readexactly(4), WAIT_S)
        assert await is_refused(proxy)
        proxy.restore()
        got, _, w2 = await roundtrip(proxy, b"again")
        assert got == b"again"
        w2.close()

    proxy = with_proxy(body)
    assert proxy.stats.cuts == 1 and proxy.stats.refused >= 1 and proxy.stats.resets >= 1


def test_stall_holds_bytes_in_order_until_restored() -> None:
    async def body(proxy: NetProxy) -> None:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        proxy.stall()
        for i in range(5):
            writer.write(f"m{i};".encode())
            await writer.drain()
        with pytest.raises(TimeoutError):  # nothing comes back while stalled
            await asyncio.wait_for(reader.read(1), 0.3)
        proxy.restore()
        got = await asyncio.wait_for(reader.readexactly(15), WAIT_S)
        assert got == b"m0;m1;m2;m3;m4;"
        writer.close()

    with_proxy(body)


def test_delay_adds_latency_each_way() -> None:
    async def body(proxy: NetProxy) -> None:
        start = time.monotonic()
        got, _, writer = await roundtrip(proxy, b"x")
        assert got == b"x"
        assert time.monotonic() - start >= 2 * 0.1  # a lower bound: never flaky under load
        writer.close()

    with_proxy(body, delay_s=0.1)


def test_drop_resets_the_connection() -> None:
    async def body(proxy: NetProxy) -> None:
        assert await is_refused(proxy)  # the first chunk is dropped with the connection
        proxy.set_drop(0.0)
        got, _, writer = await roundtrip(proxy, b"fine")
        assert got == b"fine"
        writer.close()

    proxy = with_proxy(body, drop=1.0)
    assert proxy.stats.drops == 1


@pytest.mark.parametrize(("kw", "what"), [({"delay_s": -1.0}, "delay_s"), ({"drop": 1.5}, "drop")])
def test_bad_settings_are_refused(kw: dict[str, float], what: str) -> None:
    with pytest.raises(ConfigError, match=what):
        NetProxy("127.0.0.1", 1, **kw)  # type: ignore[arg-type]


def test_runs_in_a_thread_and_is_driven_from_another() -> None:
    async def serve() -> None:
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        proxy = NetProxy("127.0.0.1", port).start_in_thread()
        try:
            got, _, writer = await roundtrip(proxy, b"t")
            assert got == b"t"
            proxy.cut()  # from this loop's thread into the proxy's
            assert proxy.is_cut
            assert await is_refused(proxy)
            proxy.restore()
            writer.close()
            got, _, w2 = await roundtrip(proxy, b"u")
            assert got == b"u"
            w2.close()
        finally:
            proxy.stop_thread()
            await close_echo(server)

    asyncio.run(serve())

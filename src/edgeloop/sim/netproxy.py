"""A TCP proxy of our own that breaks links on demand: cut, stall, delay and drop.

Put it between a node and its broker (or hub): the node connects to the proxy, the proxy
to the real server, and a test or the chaos suite decides what the link does:

* :meth:`NetProxy.cut` resets every connection (RST) and refuses new ones until
  :meth:`NetProxy.restore` — an unplugged cable the peers notice at once.
* :meth:`NetProxy.stall` keeps connections open but holds every byte (and accepts new
  connections that carry nothing) — a silent partition the peers only notice through
  their keep-alive; :meth:`NetProxy.restore` releases what was held, in order.
* ``delay_s`` adds one-way latency to every chunk in both directions (order kept,
  throughput not reduced); ``drop`` resets a connection with that probability per
  forwarded chunk — a lossy link as TCP sees it (a lost segment that TCP cannot recover
  becomes a broken connection). Draws come from a seeded generator.

It is an asyncio server: ``await proxy.start()`` inside a loop, or
:meth:`NetProxy.start_in_thread` for synchronous callers (the fault methods may then be
called from any thread).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edgeloop.errors import ConfigError

CHUNK = 64 * 1024
QUEUE_CHUNKS = 64  # per direction; a stalled link stops reading beyond this (backpressure)


@dataclass
class ProxyStats:
    """Counters of a :class:`NetProxy`."""

    connections: int = 0
    refused: int = 0
    resets: int = 0
    drops: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    cuts: int = 0


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for w in (self.client, self.upstream):
            if w is not None:
                w.transport.abort()
        for t in self.tasks:
            t.cancel()


class NetProxy:
    """Forward ``host:port`` (0: a free port) to ``upstream_host:upstream_port``.

    Args:
        delay_s: one-way latency added to each chunk.
        drop: probability in [0, 1] that forwarding a chunk resets its connection.
        seed: seeds the drop draws.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        delay_s: float = 0.0,
        drop: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = port
        self.delay_s = 0.0
        self.drop = 0.0
        self.set_delay(delay_s)
        self.set_drop(drop)
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()  # one per accepted connection
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._quit: asyncio.Event | None = None
        self._cut = False
        self._flowing: asyncio.Event | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def is_cut(self) -> bool:
        return self._cut

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> NetProxy:
        self._loop = asyncio.get_running_loop()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        """Stop listening and reset every connection."""
        if self._server is not None:
            self._server.close()
        self._abort_all()
        # Let every connection handler finish (its pipes were cancelled) rather than
        # leave it to be cancelled with the loop, which asyncio reports as an error.
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def start_in_thread(self, timeout_s: float = 5.0) -> NetProxy:
        """Run the proxy on its own event loop in a daemon thread; returns when it
        listens. Stop it with :meth:`stop_thread`."""
        started: concurrent.futures.Future[asyncio.Event] = concurrent.futures.Future()

        async def run() -> None:
            quit_ = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                started.set_exception(exc)
                return
            started.set_result(quit_)
            await quit_.wait()
            await self.stop()

        self._thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
        self._thread.name = "netproxy"
        self._thread.start()
        self._quit = started.result(timeout_s)
        return self

    def stop_thread(self, timeout_s: float = 5.0) -> None:
        """Stop a proxy started with :meth:`start_in_thread` (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None or self._loop is None or self._quit is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            self._loop.call_soon_threadsafe(self._quit.set)
        thread.join(timeout_s)

    # -- faults (callable from any thread) -------------------------------------------
    def cut(self) -> None:
        """Reset every connection and refuse new ones until :meth:`restore`."""

        def do() -> None:
            self._cut = True
            self.stats.cuts += 1
            self._abort_all()

        self._in_loop(do)

    def stall(self) -> None:
        """Hold every byte in both directions until :meth:`restore` (connections stay
        open; new ones are accepted)."""
        self._in_loop(lambda: self._flowing.clear() if self._flowing else None)

    def restore(self) -> None:
        """End a cut or a stall: accept connections, forward what was held."""

        def do() -> None:
            self._cut = False
            if self._flowing is not None:
                self._flowing.set()

        self._in_loop(do)

    def set_delay(self, delay_s: float) -> None:
        if not delay_s >= 0:
            raise ConfigError(f"delay_s: must be >= 0 (got {delay_s})")
        self.delay_s = float(delay_s)

    def set_drop(self, drop: float) -> None:
        if not 0.0 <= drop <= 1.0:
            raise ConfigError(f"drop: must be in [0, 1] (got {drop})")
        self.drop = float(drop)

    def _in_loop(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop or not loop.is_running():
            fn()
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def call() -> None:
            try:
                fn()
                done.set_result(None)
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(call)
        done.result(5.0)

    def _abort_all(self) -> None:
        links, self._links = self._links, set()
        for link in links:
            link.abort()
        self.stats.resets += len(links)

    # -- forwarding -----------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            self.stats.refused += 1
            writer.transport.abort()
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self._links.discard(link)
            self.stats.refused += 1
            writer.transport.abort()
            return
        link.upstream = up_writer
        if link not in self._links:  # cut while connecting upstream
            link.abort()
            return
        self.stats.connections += 1
        link.tasks = [
            asyncio.create_task(self._pipe(link, reader, up_writer, up=True)),
            asyncio.create_task(self._pipe(link, up_reader, writer, up=False)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)

    async def _pipe(
        self, link: _Link, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, up: bool
    ) -> None:
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)
        writer = asyncio.create_task(self._deliver(held, dst))
        try:
            while data := await src.read(CHUNK):
                if self.drop and self._rng.random() < self.drop:
                    self.stats.drops += 1
                    self._links.discard(link)
                    link.abort()
                    return
                await held.put((time.monotonic() + self.delay_s, data))
                if up:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
            await held.put((0.0, b""))  # EOF after what is held
            await writer
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.cancel()
            if link in self._links:  # one side ended: end the other side too
                self._links.discard(link)
                link.abort()

    async def _deliver(
        self, held: asyncio.Queue[tuple[float, bytes]], dst: asyncio.StreamWriter
    ) -> None:
        assert self._flowing is not None
        while True:
            due, data = await held.get()
            if not data:
                with contextlib.suppress(OSError):
                    dst.write_eof()
                return
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._flowing.wait()
            dst.write(data)
            await dst.drain()


__all__ = ["NetProxy", "ProxyStats"]

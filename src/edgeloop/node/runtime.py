"""The node runtime: one asyncio loop around :class:`NodeCore`, an outbox and an uplink.

Sources feed frames; the core runs synchronously (it is fast, and local actions must not
wait behind I/O); blocking storage runs in a worker thread; the uplink task claims from
the outbox, sends, and acknowledges only what the receiver says it has committed.

The uplink keeps a window of batches in flight (:mod:`edgeloop.node.uplink`): it claims
after the last *sent* seq while fewer than ``window_batches`` batches (and
``window_bytes`` payload bytes) await their ack, sends them in seq order (one send
after the other, or overlapping where the transport has ``send_concurrency``: MQTT),
and lets acks release them as watermarks. A failed send or an ack overdue by
``uplink.timeout_s`` rewinds to the last acknowledged seq and resends from there, in
order, after a jittered back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from edgeloop.errors import TransportError
from edgeloop.node.core import NodeCore
from edgeloop.node.uplink import UplinkWindow
from edgeloop.outbox.base import Entry, NewEntry, OutboxStats, OutboxStore
from edgeloop.telemetry.frame import Frame
from edgeloop.transport.base import Ack, Batch, Transport

Clock = Callable[[], int]

WINDOW_BATCHES = 8
"""Batches sent and not yet acknowledged, at most (default)."""
WINDOW_BYTES = 16 * 1024 * 1024
"""Their payload bytes, at most (default; one batch always goes, however large)."""


def private_mb() -> float:
    """Private (anonymous) resident memory of this process now, in MB (Linux; else 0).

    Unlike the total resident set, it does not depend on how much of the shared
    libraries the page cache happens to map in (fault-around of hot files).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mb_max() -> float:
    """Peak resident set size of this process in MB.

    Reads ``VmHWM`` from ``/proc/self/status`` on Linux: ``getrusage``'s ``ru_maxrss``
    survives ``execve``, so a process spawned by a large parent would report the
    parent's peak. Falls back to ``ru_maxrss`` elsewhere.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class NodeRuntime:
    """Runs a node: ``feed`` frames in, the uplink drains the outbox upstream.

    Args:
        core: the node's processing.
        outbox: where entries wait until the receiver commits them.
        transport: the uplink, or ``None`` for a node that keeps everything local.
        clock: wall clock in ns (injected so simulations can run on simulated time).
        window_batches, window_bytes: how many batches, and how many payload bytes, may
            be sent and not yet acknowledged (see the module docstring).

    Attributes:
        window: the uplink's go-back-N state while the uplink runs (``None`` before).
        send_failures: failed sends and overdue acks; ``batches_acked``: batches released
            by acks; ``link_up``: the last send or ack went through.
    """

    def __init__(
        self,
        core: NodeCore,
        outbox: OutboxStore,
        transport: Transport | None,
        clock: Clock = time.time_ns,
        *,
        window_batches: int = WINDOW_BATCHES,
        window_bytes: int = WINDOW_BYTES,
    ) -> None:
        self.core = core
        self.outbox = outbox
        self.transport = transport
        self.clock = clock
        cfg = core.config.uplink
        self._max_batch = cfg.max_batch_bytes
        self._retry_min = cfg.retry_min_s
        self._retry_max = cfg.retry_max_s
        self._ack_timeout = cfg.timeout_s
        UplinkWindow(window_batches, window_bytes)  # checks the bounds now, not in the task
        self._window_batches = window_batches
        self._window_bytes = window_bytes
        self.window: UplinkWindow | None = None
        self._wake = asyncio.Event()
        self._acks: asyncio.Queue[Ack] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._rng = random.Random(core.config.node_id)
        self.send_failures = 0
        self.batches_acked = 0
        self.link_up = True
        # Status of the node's sources, by name (e.g. an MQTT source's connection and
        # counters): reported under ``sources`` in status() and upstream with it.
        self.source_status: dict[str, Callable[[], dict[str, Any]]] = {}

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        if self.transport is not None:
            self._tasks.append(asyncio.create_task(self._receive_loop()))
            self._tasks.append(asyncio.create_task(self._uplink_loop()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        if self.transport is not None:
            await self.transport.close()

    # -- data in ------------------------------------------------------------------
    async def feed(self, frame: Frame) -> None:
        """Process ``frame`` now and store what must go upstream."""
        arrival = time.perf_counter_ns()
        entries = self.core.process(frame, self.clock(), arrival)
        await self._store(entries, self.core.resume_ns)

    async def run_source(self, source: AsyncIterator[Frame]) -> None:
        async for frame in source:
            await self.feed(frame)

    async def flush(self) -> None:
        """Emit what the core still holds (open summary periods, pending events)."""
        entries = self.core.flush(self.clock())
        await self._store(entries, self.core.resume_ns)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every stored entry is acknowledged; ``False`` on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            stats = await asyncio.to_thread(self.outbox.stats)
            if stats.depth == 0:
                return True
            self._wake.set()
            await asyncio.sleep(0.02)
        return False

    async def _store(self, entries: list[NewEntry], resume_ns: int | None = None) -> None:
        """Append ``entries`` with the core's resume point in one outbox transaction: a
        replaying source restarts from it after a crash (``node/main.py``)."""
        if entries:
            await asyncio.to_thread(self.outbox.append, entries, resume_ns)
            self._wake.set()

    # -- uplink -----------------------------------------------------------------
    async def _receive_loop(self) -> None:
        assert self.transport is not None
        async for msg in self.transport.receive():
            if isinstance(msg, Ack):
                self._acks.put_nowait(msg)
                self._wake.set()

    def _claim_after(self, after: int) -> tuple[OutboxStats, list[Entry]]:
        """Worker thread: the outbox's stats and the entries of the next batch."""
        return self.outbox.stats(), self.outbox.claim(self._max_batch, after)

    async def _apply_acks(self, win: UplinkWindow) -> bool:
        """Apply the acks that arrived; release what they cover. True if any advanced."""
        before = win.acked
        while not self._acks.empty():
            ack = self._acks.get_nowait()
            self.batches_acked += win.on_ack(ack.upto_seq, ack.answers_seq)
        if win.acked == before:
            return False
        await asyncio.to_thread(self.outbox.ack, win.acked)
        return True

    async def _uplink_loop(self) -> None:
        assert self.transport is not None
        stats = await asyncio.to_thread(self.outbox.stats)
        win = self.window = UplinkWindow(self._window_batches, self._window_bytes, stats.acked_upto)
        # Sends may overlap only where the transport says so (MQTT: it publishes in call
        # order and the hub refuses a batch ahead of its watermark); elsewhere one
        # finishes (e.g. its HTTP reply) before the next starts.
        depth = max(1, int(getattr(self.transport, "send_concurrency", 1)))
        sending: set[asyncio.Task[None]] = set()
        backoff = self._retry_min
        try:
            while True:
                self._wake.clear()  # whatever arrives from here on wakes the wait below
                if await self._apply_acks(win):
                    self.link_up = True
                    backoff = self._retry_min
                failed = win.overdue(time.monotonic(), self._ack_timeout)
                for task in [t for t in sending if t.done()]:
                    sending.discard(task)
                    exc = None if task.cancelled() else task.exception()
                    if isinstance(exc, TransportError):
                        failed = True
                    elif exc is not None:
                        raise exc  # a bug, not a link failure: surface it
                if failed:
                    for task in sending:
                        task.cancel()  # their batches go again after the rewind
                    sending.clear()
                    self.send_failures += 1
                    self.link_up = False
                    win.rewind()
                    # Jittered exponential back-off: a fleet coming back must not stampede.
                    await asyncio.sleep(backoff * (0.5 + self._rng.random()))
                    backoff = min(backoff * 2, self._retry_max)
                    continue
                if len(sending) < depth and win.has_room():
                    stats, entries = await asyncio.to_thread(self._claim_after, win.sent)
                    if entries:
                        batch = Batch(
                            node=self.core.config.node_id,
                            after_seq=win.sent,
                            entries=tuple(entries),
                            status=self.status(stats.evicted.as_dict()),
                            sent_ns=self.clock(),
                            epoch=stats.epoch,
                        )
                        task = asyncio.create_task(self.transport.send(batch))
                        task.add_done_callback(lambda _: self._wake.set())
                        sending.add(task)
                        win.on_sent(entries[-1].seq, sum(e.size for e in entries), time.monotonic())
                        continue
                wait = win.wait_s(time.monotonic(), self._ack_timeout, idle_s=0.5)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
        finally:
            for task in sending:
                task.cancel()

    # -- status -----------------------------------------------------------------
    def status(self, evicted: dict[str, Any] | None = None) -> dict[str, Any]:
        st = self.core.status()
        if evicted is None:
            evicted = self.outbox.stats().evicted.as_dict()
        st["evicted"] = evicted
        st["evicted_samples"] = sum(v["samples"] for v in evicted.values())
        st["rss_mb_max"] = round(rss_mb_max(), 1)
        st["private_mb"] = round(private_mb(), 1)
        st["send_failures"] = self.send_failures
        st["link_up"] = self.link_up
        st["tier"] = self.core.config.tier
        if self.source_status:
            st["sources"] = {name: f() for name, f in self.source_status.items()}
        return st

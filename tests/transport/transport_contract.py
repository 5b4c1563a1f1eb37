"""The transport contract (``edgeloop.transport.base``), one suite for every uplink.

A backend's test module subclasses :class:`TransportContract`, sets ``__test__ = True``
and provides the ``link`` fixture: a :class:`Link` whose transports reach a real hub
(``IngestService`` over a ``HubStore``) and whose connection the test can cut and
restore. Every test checks the hub's store, not only what the transport says.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from edgeloop.errors import LinkDown, TransportError
from edgeloop.hub.store import HubStore
from edgeloop.outbox.base import Entry, NewEntry, Priority
from edgeloop.outbox.memory import MemoryOutbox
from edgeloop.telemetry import codec
from edgeloop.telemetry.records import SummaryBatch
from edgeloop.transport.base import Ack, Batch, Message, Transport

SEC = 1_000_000_000
EPOCH = 77
ACK_WAIT_S = 15.0  # generous: the machine is small and shared; never a speed claim


@dataclass
class Link:
    """What a backend gives the contract.

    Attributes:
        node: the node id every batch is sent as.
        store: the hub's store behind the transport.
        make: a new transport of ``node`` (a test may make several, one after another).
        cut, restore: break and mend the connection between transports and the hub.
    """

    node: str
    store: HubStore
    make: Callable[[], Transport]
    cut: Callable[[], None]
    restore: Callable[[], None]
    closers: list[Callable[[], None]] = field(default_factory=list)


def summaries(seq: int, samples: int = 100) -> SummaryBatch:
    """Two summary rows for period ``seq`` covering ``samples`` samples."""
    t0 = np.array([seq * SEC, seq * SEC], dtype=np.int64)
    half = samples // 2
    return SummaryBatch(
        sensor=np.array([0, 1], dtype=np.uint32),
        t0_ns=t0,
        t1_ns=t0 + SEC,
        count=np.array([half, samples - half], dtype=np.int64),
        mean=np.array([1.0, 2.0], dtype=np.float32),
        std=np.array([0.1, 0.2], dtype=np.float32),
        min=np.array([0.0, 1.0], dtype=np.float32),
        max=np.array([2.0, 3.0], dtype=np.float32),
        sensor_names=("m01.temp", "m01.vib_x"),
    )


def entry(seq: int, samples: int = 100) -> Entry:
    payload = codec.encode_summaries(summaries(seq, samples))
    return Entry(seq, Priority.SUMMARY, "summaries", payload, samples)


def new_entry(seq: int, samples: int = 100) -> NewEntry:
    """What ``entry(seq)`` holds, before the outbox numbered it."""
    e = entry(seq, samples)
    return NewEntry(e.priority, e.kind, e.payload, e.samples)


def batch(node: str, seqs: range, after: int | None = None, epoch: int = EPOCH) -> Batch:
    after = seqs.start - 1 if after is None else after
    return Batch(node, after, tuple(entry(s) for s in seqs), {"frames": seqs.stop}, epoch=epoch)


async def next_ack(rx: AsyncIterator[Message], wait_s: float = ACK_WAIT_S) -> Ack:
    msg = await asyncio.wait_for(anext(rx), wait_s)
    assert isinstance(msg, Ack)
    return msg


async def ack_upto(rx: AsyncIterator[Message], upto: int, wait_s: float = ACK_WAIT_S) -> list[Ack]:
    """Acks until one reaches ``upto``."""
    acks: list[Ack] = []
    deadline = time.monotonic() + wait_s
    while not acks or acks[-1].upto_seq < upto:
        acks.append(await next_ack(rx, max(0.01, deadline - time.monotonic())))
    return acks


async def send_until_accepted(
    t: Transport, b: Batch, rx: AsyncIterator[Message], wait_s: float = 30.0
) -> tuple[int, Ack]:
    """Send ``b`` until its ack comes (the way the node's uplink loop retries); returns
    the number of failed attempts and the ack."""
    failures = 0
    deadline = time.monotonic() + wait_s
    last = b.entries[-1].seq
    while True:
        assert time.monotonic() < deadline, f"batch up to {last} not acknowledged in {wait_s} s"
        try:
            await t.send(b)
            acks = await ack_upto(rx, last, wait_s=min(5.0, deadline - time.monotonic()))
            return failures, acks[-1]
        except (TransportError, TimeoutError):
            failures += 1
            await asyncio.sleep(0.1)


def ledger(store: HubStore, node: str) -> dict[str, int]:
    totals = store.totals()["nodes"].get(node, {})
    return {k: totals.get(k, 0) for k in ("entries", "samples", "duplicates")}


class TransportContract:
    __test__ = False

    @pytest.fixture
    def link(self) -> Link:
        raise NotImplementedError

    def test_is_a_transport(self, link: Link) -> None:
        async def go() -> None:
            t = link.make()
            assert isinstance(t, Transport)
            await t.close()

        asyncio.run(go())

    def test_send_is_acknowledged_after_the_hub_committed(self, link: Link) -> None:
        async def go() -> Ack:
            t = link.make()
            rx = aiter(t.receive())
            await t.send(batch(link.node, range(1, 4)))
            ack = await next_ack(rx)
            await t.close()
            return ack

        ack = asyncio.run(go())
        assert (ack.node, ack.upto_seq, ack.accepted, ack.duplicates) == (link.node, 3, 3, 0)
        assert ledger(link.store, link.node) == {"entries": 3, "samples": 300, "duplicates": 0}

    def test_acks_release_outbox_entries(self, link: Link) -> None:
        outbox = MemoryOutbox()
        outbox.append([new_entry(s) for s in range(1, 8)])

        async def go() -> None:
            t = link.make()
            rx = aiter(t.receive())
            while outbox.stats().depth:
                st = outbox.stats()
                claimed = outbox.claim(max_bytes=2 * len(entry(1).payload))
                await t.send(Batch(link.node, st.acked_upto, tuple(claimed), {}, epoch=st.epoch))
                outbox.ack((await next_ack(rx)).upto_seq)
            await t.close()

        asyncio.run(go())
        assert outbox.stats().acked_upto == 7
        assert ledger(link.store, link.node) == {"entries": 7, "samples": 700, "duplicates": 0}

    def test_a_resent_batch_is_stored_once(self, link: Link) -> None:
        async def go() -> tuple[Ack, Ack]:
            t = link.make()
            rx = aiter(t.receive())
            b = batch(link.node, range(1, 5))
            await t.send(b)
            first = await next_ack(rx)
            await t.send(b)  # as after a lost ack
            second = await next_ack(rx)
            await t.close()
            return first, second

        first, second = asyncio.run(go())
        assert (first.upto_seq, first.accepted) == (4, 4)
        assert (second.upto_seq, second.accepted, second.duplicates) == (4, 0, 4)
        assert ledger(link.store, link.node) == {"entries": 4, "samples": 400, "duplicates": 4}
        assert link.store.duplicate_summary_samples() == 0

    def test_redelivery_after_reconnect_does_not_duplicate(self, link: Link) -> None:
        async def go() -> int:
            t = link.make()
            rx = aiter(t.receive())
            await send_until_accepted(t, batch(link.node, range(1, 4)), rx)
            link.cut()
            b2 = batch(link.node, range(4, 7))
            with pytest.raises(LinkDown):
                for _ in range(100):  # the cut may take a moment to be noticed
                    await t.send(b2)
                    await asyncio.sleep(0.05)
            link.restore()
            failures, ack = await send_until_accepted(t, b2, rx)
            assert ack.upto_seq == 6
            await t.close()
            return failures

        asyncio.run(go())
        got = ledger(link.store, link.node)
        assert (got["entries"], got["samples"]) == (6, 600)
        assert link.store.duplicate_summary_samples() == 0
        assert [s.count for s in link.store.summaries(node=link.node)] == [50, 50] * 6

    def test_ack_watermarks_never_go_down(self, link: Link) -> None:
        async def go() -> list[Ack]:
            t = link.make()
            rx = aiter(t.receive())
            for i in range(5):  # several sends before reading any ack
                await t.send(batch(link.node, range(2 * i + 1, 2 * i + 3)))
            acks = await ack_upto(rx, 10)
            await t.close()
            return acks

        acks = asyncio.run(go())
        marks = [a.upto_seq for a in acks]
        assert marks == sorted(marks) and marks[-1] == 10
        assert ledger(link.store, link.node)["entries"] == 10

    def test_link_down_is_linkdown(self, link: Link) -> None:
        async def go() -> None:
            t = link.make()
            rx = aiter(t.receive())
            await send_until_accepted(t, batch(link.node, range(1, 2)), rx)
            link.cut()
            start = time.monotonic()
            with pytest.raises(LinkDown):
                for _ in range(100):
                    await t.send(batch(link.node, range(2, 3)))
                    await asyncio.sleep(0.05)
            assert time.monotonic() - start < 30
            fresh = link.make()  # a transport that never saw the hub
            with pytest.raises(LinkDown):
                await fresh.send(batch(link.node, range(2, 3)))
            await fresh.close()
            await t.close()

        asyncio.run(go())
        assert ledger(link.store, link.node)["entries"] in (1, 2)  # seq 2 may have got in
        assert link.store.duplicate_summary_samples() == 0

    def test_close_is_idempotent_and_a_new_transport_carries_on(self, link: Link) -> None:
        async def go() -> Ack:
            t = link.make()
            rx = aiter(t.receive())
            await t.send(batch(link.node, range(1, 3)))
            await next_ack(rx)
            await t.close()
            await t.close()
            t2 = link.make()
            rx2 = aiter(t2.receive())
            await t2.send(batch(link.node, range(1, 5), after=0))  # resend 1-2, then 3-4
            ack = await next_ack(rx2)
            await t2.close()
            return ack

        ack = asyncio.run(go())
        assert (ack.upto_seq, ack.accepted, ack.duplicates) == (4, 2, 2)
        assert ledger(link.store, link.node)["entries"] == 4

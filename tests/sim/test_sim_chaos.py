"""Chaos: partition schedules, the chaos transport (partitions, lost acks) and corruption."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

import msgpack
import numpy as np
import pytest

from edgeloop.errors import CodecError, ConfigError, LinkDown, RejectReason, TransportError
from edgeloop.outbox.base import Entry, Priority
from edgeloop.sim.chaos import (
    ChaosTransport,
    Corruption,
    PartitionSchedule,
    corrupt,
    flip_bytes,
    truncate,
    wrong_version,
)
from edgeloop.telemetry import codec
from edgeloop.transport.base import Ack, Batch, Message, Transport
from edgeloop.transport.inproc import InProcTransport

SEC = 1_000_000_000
START = 1_900_000_000 * SEC


class Receiver:
    """A tiny idempotent receiver: commits each (node, seq) once, acks its watermark."""

    def __init__(self) -> None:
        self.committed: dict[str, list[int]] = {}
        self.duplicates = 0

    def commit(self, batch: Batch) -> Ack:
        seen = self.committed.setdefault(batch.node, [])
        for e in batch.entries:
            if e.seq in seen:
                self.duplicates += 1
            else:
                seen.append(e.seq)
        return Ack(batch.node, max(seen, default=0), accepted=len(batch.entries))


class FakeTransport:
    """Records batches, commits them in a :class:`Receiver` and queues the ack.

    ``receive`` yields the queued acks and ends when none is left, so tests can drain
    it without waiting on a clock.
    """

    def __init__(self, fail: bool = False) -> None:
        self.receiver = Receiver()
        self.batches: list[Batch] = []
        self.fail = fail
        self.closed = False
        self._acks: deque[Message] = deque()

    async def send(self, batch: Batch) -> None:
        if self.fail:
            raise TransportError("inner failure")
        self.batches.append(batch)
        self._acks.append(self.receiver.commit(batch))

    async def receive(self) -> AsyncIterator[Message]:
        while self._acks:
            yield self._acks.popleft()

    async def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def batch(seq: int, node: str = "gw1") -> Batch:
    entry = Entry(seq, Priority.SUMMARY, "summary", b"x" * 10, samples=5)
    return Batch(node=node, after_seq=seq - 1, entries=(entry,))


async def drain(chaos: ChaosTransport) -> list[Message]:
    """Every message the chaos layer lets through from the fake's queue."""
    return [m async for m in chaos.receive()]


# --- partition schedule ------------------------------------------------------------------


def test_partition_windows_are_half_open_and_relative_to_start() -> None:
    sched = PartitionSchedule([(30.0, 40.0), (5.0, 10.0)], start_ns=START)
    down = [t for t in range(0, 50) if sched.is_down(START + t * SEC)]
    assert down == [*range(5, 10), *range(30, 40)]
    assert sched.is_down(START + 10 * SEC - 1) and not sched.is_down(START + 10 * SEC)
    assert not sched.is_down(START - SEC)
    assert sched.windows_ns[0] == (START + 5 * SEC, START + 10 * SEC)
    assert sched.down_s() == 15.0


def test_partition_up_at_follows_chained_windows() -> None:
    sched = PartitionSchedule([(1, 3), (2, 5), (5, 6), (8, 9)])
    assert sched.up_at(int(1.5 * SEC)) == 6 * SEC
    assert sched.up_at(7 * SEC) == 7 * SEC
    assert sched.down_s() == 6.0  # overlaps counted once


@pytest.mark.parametrize(
    ("windows", "needle"),
    [([(5, 3)], r"partitions\[0\]"), ([(0, 1), (-1, 2)], r"partitions\[1\]"), ([(1,)], "expected")],
)
def test_partition_schedule_rejects_bad_windows(windows: list, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        PartitionSchedule(windows)


# --- chaos transport ---------------------------------------------------------------------


def test_it_is_a_transport_and_passes_through_when_the_link_is_up() -> None:
    async def go() -> None:
        inner = FakeTransport()
        chaos = ChaosTransport(inner, PartitionSchedule([]), Clock(START))
        assert isinstance(chaos, Transport)
        for seq in (1, 2, 3):
            await chaos.send(batch(seq))
        assert [b.entries[0].seq for b in inner.batches] == [1, 2, 3]
        assert [m.upto_seq for m in await drain(chaos)] == [1, 2, 3]
        assert chaos.stats() == {"sends": 3, "blocked": 0, "delivered": 3, "acks_dropped": 0}
        await chaos.close()
        assert inner.closed

    asyncio.run(go())


def test_partition_blocks_without_calling_inner_then_heals() -> None:
    async def go() -> None:
        inner = FakeTransport()
        clock = Clock(START)
        chaos = ChaosTransport(inner, PartitionSchedule([(10, 20)], start_ns=START), clock)
        await chaos.send(batch(1))
        clock.now = START + 10 * SEC
        for _ in range(3):
            with pytest.raises(LinkDown, match="partitioned"):
                await chaos.send(batch(2))
        assert len(inner.batches) == 1  # nothing reached the receiver
        clock.now = START + 20 * SEC
        await chaos.send(batch(2))
        assert [b.entries[0].seq for b in inner.batches] == [1, 2]
        assert (chaos.sends, chaos.blocked, chaos.delivered) == (5, 3, 2)

    asyncio.run(go())


def test_lost_ack_still_delivers_and_the_ack_never_surfaces() -> None:
    async def go() -> None:
        inner = FakeTransport()
        chaos = ChaosTransport(inner, PartitionSchedule([]), Clock(START), ack_loss=1.0)
        with pytest.raises(LinkDown, match="ack lost"):
            await chaos.send(batch(1))
        assert inner.receiver.committed == {"gw1": [1]}  # the receiver committed it
        assert await drain(chaos) == []
        assert (chaos.delivered, chaos.acks_dropped) == (1, 1)

    asyncio.run(go())


def test_ack_loss_makes_the_sender_resend_and_the_receiver_dedupes() -> None:
    """A node-like loop: resend a batch until its ack arrives. Every entry is committed
    exactly once, the acks line up with the sends that succeeded, and some were resent."""

    async def go(seed: int) -> tuple[int, int, int]:
        inner = FakeTransport()
        chaos = ChaosTransport(inner, PartitionSchedule([]), Clock(START), 0.3, seed)
        for seq in range(1, 201):
            while True:
                try:
                    await chaos.send(batch(seq))
                except LinkDown:
                    continue
                (ack,) = await drain(chaos)  # never a stale ack of a dropped send
                assert ack.upto_seq == seq
                break
        assert inner.receiver.committed["gw1"] == list(range(1, 201))
        assert chaos.delivered == 200 + chaos.acks_dropped
        return chaos.acks_dropped, inner.receiver.duplicates, chaos.sends

    dropped, dups, sends = asyncio.run(go(7))
    assert 40 <= dropped <= 130 and dups == dropped and sends == 200 + dropped
    assert asyncio.run(go(7)) == (dropped, dups, sends)  # seeded: reproducible


def test_inner_failure_propagates_and_does_not_eat_a_later_ack() -> None:
    async def go() -> None:
        inner = FakeTransport(fail=True)
        chaos = ChaosTransport(inner, PartitionSchedule([]), Clock(START), ack_loss=1.0)
        with pytest.raises(TransportError, match="inner failure"):
            await chaos.send(batch(1))
        inner.fail = False
        chaos.ack_loss = 0.0
        await chaos.send(batch(1))
        assert [m.upto_seq for m in await drain(chaos)] == [1]

    asyncio.run(go())


def test_with_the_real_in_process_transport() -> None:
    """The in-process transport queues its ack before ``send`` returns; the lost one
    must still be swallowed, and the receiver sees encoded batches."""
    receiver = Receiver()

    def handler(data: bytes) -> bytes:
        return codec.encode_ack(receiver.commit(codec.decode_batch(data)))

    async def go() -> None:
        chaos = ChaosTransport(InProcTransport(handler), PartitionSchedule([]), Clock(START), 1.0)
        acks = chaos.receive()
        with pytest.raises(LinkDown):
            await chaos.send(batch(1))
        chaos.ack_loss = 0.0
        await chaos.send(batch(1))
        await chaos.send(batch(2))
        assert [(await anext(acks)).upto_seq for _ in range(2)] == [1, 2]
        assert receiver.committed == {"gw1": [1, 2]} and receiver.duplicates == 1
        with pytest.raises(TimeoutError):  # the lost ack is gone for good
            await asyncio.wait_for(anext(acks), timeout=0.01)

    asyncio.run(go())


def test_ack_loss_is_validated() -> None:
    with pytest.raises(ConfigError, match="ack_loss"):
        ChaosTransport(FakeTransport(), PartitionSchedule([]), Clock(0), ack_loss=1.5)


# --- corruption --------------------------------------------------------------------------


def payload() -> bytes:
    return codec.encode_batch(batch(3))


def test_truncate_and_flip() -> None:
    rng = np.random.default_rng(0)
    data = payload()
    for _ in range(50):
        cut = truncate(data, rng)
        assert len(cut) < len(data) and data.startswith(cut)
        flipped = flip_bytes(data, rng)
        diff = np.frombuffer(flipped, np.uint8) != np.frombuffer(data, np.uint8)
        assert len(flipped) == len(data) and 1 <= diff.sum() <= 8
    assert sum(a != b for a, b in zip(flip_bytes(data, rng, n=3), data, strict=True)) == 3
    with pytest.raises(ValueError, match="empty"):
        truncate(b"", rng)


def test_wrong_version_changes_only_the_version() -> None:
    data = payload()
    env = msgpack.unpackb(data, raw=False)
    bad = msgpack.unpackb(wrong_version(data, version=7), raw=False)
    assert bad["v"] == 7 and {k: v for k, v in bad.items() if k != "v"} == {
        k: v for k, v in env.items() if k != "v"
    }
    assert msgpack.unpackb(wrong_version(wrong_version(data, 7), 7), raw=False)["v"] == 8
    with pytest.raises(ValueError, match="msgpack"):
        wrong_version(b"\xc1not msgpack")


@pytest.mark.parametrize(
    ("kind", "reasons"),
    [
        (Corruption.TRUNCATE, {RejectReason.TRUNCATED}),
        (Corruption.WRONG_VERSION, {RejectReason.SCHEMA_VERSION}),
        (Corruption.FLIP, set(RejectReason)),
    ],
)
def test_corrupt_payloads_are_rejected_by_the_codec(
    kind: Corruption, reasons: set[RejectReason]
) -> None:
    rng = np.random.default_rng(1)
    data = payload()
    rejected = 0
    for _ in range(40):
        bad = corrupt(data, rng, kind)
        assert bad != data
        try:
            codec.decode_batch(bad)
        except CodecError as exc:
            assert exc.reason in reasons
            rejected += 1
    # A flipped byte inside an opaque entry payload can still decode; the rest must not.
    assert rejected == 40 if kind != Corruption.FLIP else rejected > 0


def test_random_corruption_never_returns_the_input() -> None:
    rng = np.random.default_rng(2)
    data = payload()
    for raw in (data, b"opaque bytes, not msgpack"):
        for _ in range(30):
            assert corrupt(raw, rng) != raw

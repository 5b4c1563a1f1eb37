"""The outbox seam: a durable store-and-forward queue with priorities and a disk budget.

Everything a node sends upstream is first appended here. The contract, shared by every
implementation (see ``tests/outbox/outbox_contract.py``):

* ``append`` assigns consecutive sequence numbers, per node, starting at 1, and returns
  them as a ``range``. Once ``append`` returns, the entries survive a crash of the
  process (for durable stores) and a restart resumes numbering after the highest
  sequence ever assigned — even if every entry has been acknowledged.
* ``claim(max_bytes, after)`` returns un-acknowledged entries in sequence order, oldest
  first, starting after ``after`` (default: the last acknowledged sequence), up to
  ``max_bytes`` of payload (always at least one entry if any is pending). Claiming does
  not remove anything: an entry stays until acknowledged, so a crash between claim and
  ack means the entry is sent again (at-least-once); the receiver's idempotence on
  (node, sequence) makes that exactly-once in effect.
* ``ack(upto_seq)`` releases every entry with ``seq <= upto_seq``. Acks are cumulative
  and idempotent; an ack lower than a previous one is a no-op.
* When the stored payload exceeds the byte budget, entries are evicted lowest priority
  first (raw < summary < event < alarm), oldest first within a class. Every eviction is
  counted in :class:`EvictionStats` (entries, bytes, samples, by class); nothing is
  dropped silently. Evicted sequence numbers simply never reach the receiver.
* ``append(entries, resume_ns=T)`` also records the producer's **resume point** in the
  same transaction: a data time through which every sample the producer took in is
  covered by this and earlier entries (appended, so either held, acknowledged or
  evicted and counted). :attr:`OutboxStats.resume_ns` returns the highest one recorded
  (``None`` before the first; a lower value never moves it back). A durable store keeps
  it across restarts: a producer that can replay its input (the simulator, a sensor
  with a local buffer) restarts from there after a crash, so what was only in its
  memory is produced again, not lost; what it replays past the point was never
  appended, so nothing is appended twice.
* Every store has an ``epoch`` (:attr:`OutboxStats.epoch`): a random positive 63-bit
  integer drawn when the store is first created (see :func:`new_epoch`). A durable
  store keeps its epoch across restarts (reopening the same file); a new store — a
  wiped or replaced file, a fresh in-memory outbox — gets a new epoch. Sequence numbers
  are only unique within an epoch: a receiver keys its ledger on (node, epoch, seq), so
  a node whose outbox starts again at seq 1 is not mistaken for a replay.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol, runtime_checkable


class Priority(IntEnum):
    """Priority classes; a higher value survives eviction longer."""

    RAW = 0
    SUMMARY = 1
    EVENT = 2
    ALARM = 3


@dataclass(frozen=True, slots=True)
class NewEntry:
    """What a producer hands to ``append``.

    Attributes:
        priority: the eviction class.
        kind: payload type tag understood by the receiver (e.g. ``"summary"``).
        payload: the encoded bytes (see ``edgeloop.telemetry.codec``).
        samples: how many raw samples this entry accounts for (for loss accounting).
        created_ns: producer clock at creation.
    """

    priority: Priority
    kind: str
    payload: bytes
    samples: int = 0
    created_ns: int = 0


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored entry: a :class:`NewEntry` plus its sequence number."""

    seq: int
    priority: Priority
    kind: str
    payload: bytes
    samples: int = 0
    created_ns: int = 0

    @property
    def size(self) -> int:
        return len(self.payload)


@dataclass(slots=True)
class EvictionStats:
    """Cumulative eviction counters, by priority class."""

    entries: dict[Priority, int] = field(default_factory=lambda: dict.fromkeys(Priority, 0))
    bytes: dict[Priority, int] = field(default_factory=lambda: dict.fromkeys(Priority, 0))
    samples: dict[Priority, int] = field(default_factory=lambda: dict.fromkeys(Priority, 0))

    def add(self, priority: Priority, nbytes: int, samples: int, entries: int = 1) -> None:
        self.entries[priority] += entries
        self.bytes[priority] += nbytes
        self.samples[priority] += samples

    @property
    def total_entries(self) -> int:
        return sum(self.entries.values())

    @property
    def total_samples(self) -> int:
        return sum(self.samples.values())

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            p.name.lower(): {
                "entries": self.entries[p],
                "bytes": self.bytes[p],
                "samples": self.samples[p],
            }
            for p in Priority
        }


EPOCH_MAX = 2**63 - 1
"""The largest epoch: epochs are positive and fit a signed 64-bit column."""


def new_epoch() -> int:
    """A fresh outbox epoch: uniformly random in ``1 .. 2**63 - 1``."""
    return 1 + secrets.randbelow(EPOCH_MAX)


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """A snapshot of an outbox: depth, bytes held, sequence bounds, evictions, epoch.

    ``epoch`` identifies this incarnation of the store: the same across restarts of
    the same durable store, new for a new store (see the module docstring).
    ``resume_ns`` is the producer's resume point recorded by ``append`` (or ``None``).
    """

    depth: int
    bytes: int
    next_seq: int
    acked_upto: int
    evicted: EvictionStats
    epoch: int
    resume_ns: int | None = None


@runtime_checkable
class OutboxStore(Protocol):
    """Durable store-and-forward queue. See the module docstring for the contract."""

    def append(self, entries: Sequence[NewEntry], resume_ns: int | None = None) -> range:
        """Store ``entries`` and return their sequence numbers (consecutive); record
        ``resume_ns`` (if given) in the same transaction."""
        ...

    def claim(self, max_bytes: int, after: int | None = None) -> list[Entry]:
        """Oldest un-acked entries with ``seq > after``, up to ``max_bytes`` of payload."""
        ...

    def ack(self, upto_seq: int) -> None:
        """Release every entry with ``seq <= upto_seq``."""
        ...

    def stats(self) -> OutboxStats:
        """Current depth, bytes, sequence bounds and eviction counters."""
        ...

    def close(self) -> None:
        """Release resources; a durable store can be reopened afterwards."""
        ...

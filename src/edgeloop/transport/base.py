"""The transport seam: one interface for in-process, HTTP and (later) MQTT uplinks.

A node sends :class:`Batch` es of outbox entries upstream and receives
:class:`Message` s back: application acks (the highest sequence the receiver has
*committed*, never merely received) and, later, desired state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from edgeloop.outbox.base import Entry


@dataclass(frozen=True, slots=True)
class Batch:
    """A group of outbox entries from one node, in sequence order.

    Attributes:
        node: the sending node's id.
        after_seq: the ``after`` the entries were claimed from: every entry of the node
            with ``after_seq < seq <= entries[-1].seq`` that is not in ``entries`` was
            evicted by the outbox policy. The receiver acknowledges past ``after_seq``
            only when it has committed everything up to it (its watermark for the node).
        entries: entries in ascending ``seq``.
        status: the node's cumulative counters (evictions, rejects, ...) at send time;
            cumulative so that a redelivered or reordered batch never double-counts.
        sent_ns: sender clock.
        epoch: the sending outbox's epoch (``OutboxStats.epoch``). Sequence numbers are
            unique per (node, epoch): a node whose outbox was replaced numbers from 1
            again under a new epoch, and the receiver keeps a ledger and a watermark per
            (node, epoch). ``0`` means unknown (a sender predating epochs).
    """

    node: str
    after_seq: int
    entries: tuple[Entry, ...]
    status: dict[str, Any] = field(default_factory=dict)
    sent_ns: int = 0
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class Ack:
    """The receiver committed every entry of ``node`` up to ``upto_seq``.

    ``duplicates`` counts entries it recognised as already stored and skipped.

    ``answers_seq`` is the last seq of the batch this ack answers, when the transport
    knows it (MQTT: from the correlation data; ``0``: unknown). Above ``upto_seq``, the
    receiver did not commit that batch because an earlier one has not reached it: the
    sender resends from ``upto_seq``. It is not part of the encoded ack.
    """

    node: str
    upto_seq: int
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    answers_seq: int = field(default=0, repr=False, compare=False)


Message = Ack


@runtime_checkable
class Transport(Protocol):
    """Uplink of one node. ``send`` raises :class:`~edgeloop.errors.TransportError` on
    failure, in which case nothing is acknowledged and the entries are sent again.

    A transport whose ``send`` calls may overlap says so with an integer attribute
    ``send_concurrency`` (how many at once; MQTT: its publishes go out in call order);
    without it, the node's uplink finishes one ``send`` before it starts the next.
    """

    async def send(self, batch: Batch) -> None: ...

    def receive(self) -> AsyncIterator[Message]: ...

    async def close(self) -> None: ...

"""Records the hub store takes in and hands out: plain frozen values, no database types.

The query endpoints of the API answer with these records as they are (FastAPI documents
and validates the dataclasses), so each record is defined once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from edgeloop.errors import TelemetryError
from edgeloop.hub.schema import Decoded
from edgeloop.transport.base import Ack


@dataclass(frozen=True, slots=True)
class IngestItem:
    """One outbox entry, decoded by the caller (or rejected by it).

    Attributes:
        seq: the entry's per-node sequence number (> 0).
        priority: its outbox priority class (``Priority`` value).
        kind: ``"summaries"``, ``"events"`` or ``"frame"``.
        samples: raw samples the entry accounts for (the sender's claim).
        size: encoded payload size in bytes.
        decoded: a ``SummaryBatch``, a list of ``Event``, or ``(Frame, sensor names)``;
            ``None`` when ``error`` is set.
        error: why the payload could not be decoded; the entry is then recorded in the
            ledger as rejected and its payload goes to ``dead_letters``.
        payload: the encoded payload. Stored as the blob of a ``"frame"`` entry (saves
            re-encoding) and, truncated, in the dead letter of a rejected entry.
    """

    seq: int
    priority: int
    kind: str
    samples: int
    size: int
    decoded: Decoded | None = None
    error: TelemetryError | None = None
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What :meth:`HubStore.ingest_report` did: the ack (sent only after the commit) and
    the reject reasons of the entries it dead-lettered (duplicates excluded)."""

    ack: Ack
    rejects: Counter[str]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node as the hub knows it (see ``schema.Node``)."""

    id: str
    tier: str | None
    parent: str | None
    first_seen_ns: int
    last_seen_ns: int
    watermark: int
    batches: int
    duplicates: int
    status: dict[str, Any]
    epoch: int = 0
    unknown_upto_seq: int = 0


@dataclass(frozen=True, slots=True)
class IncarnationInfo:
    """One (node, outbox epoch) as the hub knows it (see ``schema.Incarnation``)."""

    node: str
    epoch: int
    watermark: int
    unknown_upto_seq: int
    first_seen_ns: int
    last_seen_ns: int
    batches: int


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A stored event; ``has_raw`` says whether raw context can be fetched by id."""

    id: int
    node: str
    seq: int
    origin: str
    machine: str
    sensor: str
    severity: str
    t_start_ns: int
    t_end_ns: int
    detected_ns: int
    score: float | None
    threshold: float | None
    detector: str
    reason: str
    features: dict[str, Any]
    raw_sensors: list[str]
    has_raw: bool
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class StoredSummary:
    """A stored summary row (statistics are ``None`` where they were not finite)."""

    id: int
    node: str
    seq: int
    sensor: str
    t0_ns: int
    t1_ns: int
    count: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """A stored document entry (``edgeloop.hub.documents``), its JSON body parsed."""

    node: str
    epoch: int
    seq: int
    kind: str
    t_ns: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter without its payload (fetch that with ``dead_letter_payload``)."""

    id: int
    node: str | None
    seq: int | None
    received_ns: int
    reason: str
    field: str
    detail: str
    payload_bytes: int

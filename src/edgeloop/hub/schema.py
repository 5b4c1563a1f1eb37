"""The hub's tables, as SQLAlchemy 2 declarative models (portable: SQLite and PostgreSQL).

::

    nodes ──< incarnations               one row per (node, outbox epoch): its watermark
    nodes ──< received ··< events        (node, epoch, seq) of every stored row names
                      ├··< event_blocks  the ledger row that admitted it
                      ├··< summaries
                      └··< raw_frames
    dead_letters                         payloads that could not be stored, with why
    node_documents                       document entries (measurements, sketches, samples)

``──<`` is a foreign key; ``··<`` is the same relation kept by the ingest transaction
instead (data rows are inserted only for the entries its ledger insert admitted, in the
same transaction): a per-row key check halved PostgreSQL's insert rate (migration 0002).
The schema is made and changed only by the migrations in ``edgeloop.hub.migrations``;
``tests/hub/test_migrations.py`` checks that they and these models agree.

``received`` is the dedupe ledger: its primary key ``(node, epoch, seq)`` is what makes
ingest idempotent, even between two concurrent requests (entries are admitted with
``INSERT ... ON CONFLICT DO NOTHING RETURNING seq``: what another request committed
first comes back as a duplicate). ``epoch`` is the sending outbox's
incarnation (``OutboxStats.epoch``, 0 for a sender predating epochs): a node whose
outbox was replaced numbers from 1 again under a new epoch, and those entries are new,
not duplicates. Timestamps are ``BigInteger`` nanoseconds since the
Unix epoch; blobs are ``LargeBinary``; free-form maps are ``JSON``.

The store (``edgeloop.hub.store``) talks to these tables through SQLAlchemy Core on
``Model.__table__``; the ORM classes exist to declare them once, with types.
``edgeloop.hub.rows`` maps decoded records (summary batches, events, raw frames) onto
rows of these tables, validating what the database would otherwise reject or misfile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from edgeloop.hub.documents import Document
from edgeloop.telemetry.event_columns import EventColumns
from edgeloop.telemetry.frame import Frame
from edgeloop.telemetry.records import Event, SummaryBatch

KIND_SUMMARIES = "summaries"
KIND_EVENTS = "events"
KIND_FRAME = "frame"
KINDS = (KIND_SUMMARIES, KIND_EVENTS, KIND_FRAME)
"""Entry kinds the hub stores: payload types of ``Entry.kind``."""

Decoded = SummaryBatch | EventColumns | list[Event] | tuple[Frame, tuple[str, ...]] | Document
"""A decoded entry payload, by kind: summaries, events (columns as the codec decodes
them, or ``Event`` objects), frame (with its sensor names), a document kind
(``edgeloop.hub.documents``)."""

FrameEncoder = Callable[[Frame, Sequence[str]], bytes]
"""Encodes a frame and its sensor names as bytes (``codec.encode_frame``)."""

# SQLite auto-increments only an ``INTEGER PRIMARY KEY``; PostgreSQL gets a BIGSERIAL-like
# identity. Event and summary ids outgrow 2**31 on a busy hub.
IdType = BigInteger().with_variant(Integer(), "sqlite")

NAME = 256
"""Maximum length of a node, machine, sensor or detector name."""


class Base(DeclarativeBase):
    """Declarative base of the hub's tables; ``Base.metadata`` creates them all."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "pk": "pk_%(table_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        }
    )


class Node(Base):
    """One row per node that ever sent a batch.

    ``epoch`` is the node's current outbox epoch: the one most recently seen for the
    first time (a batch of an older epoch, a stale replay, does not change it).
    ``watermark`` is the current epoch's watermark (see :class:`Incarnation`) and
    ``unknown_upto_seq`` its gap: entries ``1..unknown_upto_seq`` of the current epoch
    never reached this hub and their fate is unknown (0: no gap).
    ``status`` holds the node's latest *cumulative* counters; it is replaced, never
    added to, so redelivered batches cannot double-count. ``status_ns`` is the sender
    clock of the status held, so a reordered older batch does not overwrite a newer one.
    """

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    tier: Mapped[str | None] = mapped_column(String(64))
    parent: Mapped[str | None] = mapped_column(String(NAME))
    first_seen_ns: Mapped[int] = mapped_column(BigInteger)
    last_seen_ns: Mapped[int] = mapped_column(BigInteger)
    watermark: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    batches: Mapped[int] = mapped_column(BigInteger, default=0)
    duplicates: Mapped[int] = mapped_column(BigInteger, default=0)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    unknown_upto_seq: Mapped[int] = mapped_column(BigInteger, default=0)


class Incarnation(Base):
    """One row per (node, outbox epoch) ever seen: the watermark of that epoch.

    ``watermark`` is the highest seq such that every entry of the node's epoch up to it
    is committed here or was evicted by the node's outbox: the ``upto_seq`` of the acks
    of that epoch. A new epoch starts at 0. When the first batch of an epoch the hub
    never saw has ``after_seq > 0`` (the hub lost its database, or the node moved
    here), the hub cannot know what became of entries ``1..after_seq``: it accepts the
    batch, starts the watermark at ``after_seq`` instead of stalling the node, and
    records ``unknown_upto_seq = after_seq``, so the gap is visible, never silent.
    """

    __tablename__ = "incarnations"
    __table_args__ = (ForeignKeyConstraint(["node"], ["nodes.id"]),)

    node: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    watermark: Mapped[int] = mapped_column(BigInteger, default=0)
    unknown_upto_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    first_seen_ns: Mapped[int] = mapped_column(BigInteger)
    last_seen_ns: Mapped[int] = mapped_column(BigInteger)
    batches: Mapped[int] = mapped_column(BigInteger, default=0)


class Received(Base):
    """The dedupe ledger: one row per (node, epoch, seq) ever admitted, rejected ones
    included.

    A rejected entry (its payload could not be decoded or validated) is recorded too, so
    the watermark can pass it and the node stops resending a poison entry; its payload
    went to ``dead_letters``.
    """

    __tablename__ = "received"
    __table_args__ = (ForeignKeyConstraint(["node"], ["nodes.id"]),)

    node: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer)
    samples: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    received_ns: Mapped[int] = mapped_column(BigInteger)
    rejected: Mapped[bool] = mapped_column(Boolean, default=False)
    # Commit order (migration 0005): on PostgreSQL a sequence value drawn by the INSERT,
    # under the node's row lock, so per node it follows the commits; NULL on SQLite.
    commit_order: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class EventRow(Base):
    """An anomaly or alarm (``edgeloop.telemetry.records.Event``).

    ``node`` is the node that sent it (the ledger key), ``origin`` the node that raised
    it (they differ when a gateway forwards a child's events).

    Features and raw context are kept one of two ways. Events that arrived as columns
    (``codec.decode_events``, the wire path) have ``idx``, their position in the entry,
    and their features, raw samples and raw sensor names are in the entry's
    :class:`EventBlock`; ``features``, ``raw`` and ``raw_sensors`` are NULL. Events
    stored from ``Event`` objects (and every event stored before migration 0003) have
    ``idx`` NULL and those three columns filled: ``raw`` an encoded frame
    (``codec.encode_frame``), ``raw_sensors`` its names.

    Indexes serve the query endpoints (``edgeloop.hub.queries``): the id (raw context by
    id), machine and time (events of a machine; ``machine`` compares bytewise on
    PostgreSQL), time (a window of every event; on PostgreSQL a BRIN index, nearly free
    to maintain on rows that arrive roughly in time order). A node filter is answered
    through the time index: migration 0003 dropped the btree on (node, t_start_ns), as
    each btree on a text column cost about as much server time per inserted event as
    the row itself (``docs/hub.md``).
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_machine_t", "machine", "t_start_ns"),
        Index(
            "ix_events_t",
            "t_start_ns",
            postgresql_using="brin",
            postgresql_with={"autosummarize": "on"},
        ),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    node: Mapped[str] = mapped_column(String(NAME))
    seq: Mapped[int] = mapped_column(BigInteger)
    origin: Mapped[str] = mapped_column(String(NAME))
    # Collation "C" on PostgreSQL: the index on (machine, t_start_ns) compares bytes,
    # not locale rules (about 2 us less server time per inserted event; docs/hub.md).
    # The order is the same as the default's on a UTF-8 code-point collation.
    machine: Mapped[str] = mapped_column(
        String(NAME).with_variant(String(NAME, collation="C"), "postgresql")
    )
    sensor: Mapped[str] = mapped_column(String(NAME))
    severity: Mapped[str] = mapped_column(String(16))
    t_start_ns: Mapped[int] = mapped_column(BigInteger)
    t_end_ns: Mapped[int] = mapped_column(BigInteger)
    detected_ns: Mapped[int] = mapped_column(BigInteger)
    score: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    detector: Mapped[str] = mapped_column(String(NAME))
    reason: Mapped[str] = mapped_column(Text, default="")
    features: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    raw_sensors: Mapped[list[str] | None] = mapped_column(JSON)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    idx: Mapped[int | None] = mapped_column(Integer)


class EventBlock(Base):
    """The events entry (node, epoch, seq) as it arrived: its encoded columns
    (``codec.encode_events``, version 2), stored once for all its events.

    Features, raw samples and raw sensor names of those events are read from here
    (event ``idx`` of the payload), so ingest writes them as one compressed value per
    entry instead of JSON and a frame per event. On PostgreSQL ``payload`` has storage
    EXTERNAL (never compressed again: it is zstd already) and the table a
    ``toast_tuple_target`` of 8160 bytes (migration 0003).
    """

    __tablename__ = "event_blocks"

    node: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class SummaryRow(Base):
    """One sensor's aggregates over one summary period (a row of a ``SummaryBatch``).

    Statistics are nullable: SQLite stores a NaN as NULL, so a non-finite value reads
    back as ``None`` on every backend.
    """

    __tablename__ = "summaries"
    __table_args__ = (
        # Serves the sensor filter and the duplicate check on (node, sensor, t0_ns).
        Index("ix_summaries_sensor_t", "sensor", "t0_ns"),
        Index("ix_summaries_node_sensor_t", "node", "sensor", "t0_ns"),
        Index("ix_summaries_t", "t0_ns"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    node: Mapped[str] = mapped_column(String(NAME))
    seq: Mapped[int] = mapped_column(BigInteger)
    sensor: Mapped[str] = mapped_column(String(NAME))
    t0_ns: Mapped[int] = mapped_column(BigInteger)
    t1_ns: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(BigInteger)
    mean: Mapped[float | None] = mapped_column(Float)
    std: Mapped[float | None] = mapped_column(Float)
    min: Mapped[float | None] = mapped_column(Float)
    max: Mapped[float | None] = mapped_column(Float)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)


class RawFrameRow(Base):
    """Raw samples forwarded as they are (kind ``"frame"``): the encoded frame blob."""

    __tablename__ = "raw_frames"

    node: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    sensors: Mapped[list[str]] = mapped_column(JSON, default=list)
    n: Mapped[int] = mapped_column(BigInteger)
    blob: Mapped[bytes] = mapped_column(LargeBinary)


class DeadLetter(Base):
    """A payload the hub could not store, with the reason; ``payload`` is truncated.

    ``node`` is ``None`` when the batch itself could not be decoded (the sender is
    unknown).
    """

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index("ix_dead_letters_node", "node"),
        Index("ix_dead_letters_t", "received_ns"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    node: Mapped[str | None] = mapped_column(String(NAME))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    received_ns: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(64))
    field: Mapped[str] = mapped_column(String(NAME))
    detail: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    payload_bytes: Mapped[int] = mapped_column(BigInteger)


class NodeDocument(Base):
    """A document entry (``edgeloop.hub.documents``): a shadow measurement, a drift
    sketch, a curated sample, as the node sent it (``body``: the JSON bytes).

    Keyed like the ledger row that admitted it; ``t_ns`` is the document's own time
    (a period's end), indexed with the kind for "the sketches of this period" queries.
    """

    __tablename__ = "node_documents"
    __table_args__ = (Index("ix_node_documents_kind_t", "kind", "t_ns"),)

    node: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(64))
    t_ns: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[bytes] = mapped_column(LargeBinary)


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


nodes = _table(Node)
incarnations = _table(Incarnation)
received = _table(Received)
events = _table(EventRow)
summaries = _table(SummaryRow)
raw_frames = _table(RawFrameRow)
event_blocks = _table(EventBlock)
dead_letters = _table(DeadLetter)
node_documents = _table(NodeDocument)
metadata = Base.metadata


__all__ = [
    "KINDS",
    "KIND_EVENTS",
    "KIND_FRAME",
    "KIND_SUMMARIES",
    "Base",
    "DeadLetter",
    "Decoded",
    "EventBlock",
    "EventRow",
    "FrameEncoder",
    "Incarnation",
    "Node",
    "NodeDocument",
    "RawFrameRow",
    "Received",
    "SummaryRow",
    "dead_letters",
    "event_blocks",
    "events",
    "incarnations",
    "metadata",
    "node_documents",
    "nodes",
    "raw_frames",
    "received",
    "summaries",
]

# The control plane's tables (model registry, artifacts, desired and actual state) are
# declared in their own module on this ``Base``; importing it here makes ``metadata``
# hold every hub table.
from edgeloop.hub import drift_tables as _drift_tables  # noqa: E402, F401
from edgeloop.hub import feedback_tables as _feedback_tables  # noqa: E402, F401
from edgeloop.hub import model_tables as _model_tables  # noqa: E402, F401

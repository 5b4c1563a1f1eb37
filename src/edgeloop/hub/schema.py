"""The hub's tables, as SQLAlchemy 2 declarative models (portable: SQLite and PostgreSQL).

::

    nodes ──< incarnations               one row per (node, outbox epoch): its watermark
    nodes ──< received ··< events        (node, epoch, seq) of every stored row names
                      ├··< summaries     the ledger row that admitted it
                      └··< raw_frames
    dead_letters                         payloads that could not be stored, with why

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
:func:`rows_for` maps decoded records (summary batches, events, raw frames) onto rows of
these tables, validating what the database would otherwise reject or misfile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np
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

from edgeloop.errors import RejectReason, TelemetryError
from edgeloop.telemetry.frame import Frame
from edgeloop.telemetry.records import Event, SummaryBatch

KIND_SUMMARIES = "summaries"
KIND_EVENTS = "events"
KIND_FRAME = "frame"
KINDS = (KIND_SUMMARIES, KIND_EVENTS, KIND_FRAME)
"""Entry kinds the hub stores: payload types of ``Entry.kind``."""

Decoded = SummaryBatch | list[Event] | tuple[Frame, tuple[str, ...]]
"""A decoded entry payload, by kind: summaries, events, frame (with its sensor names)."""

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


class EventRow(Base):
    """An anomaly or alarm (``edgeloop.telemetry.records.Event``).

    ``node`` is the node that sent it (the ledger key), ``origin`` the node that raised
    it (they differ when a gateway forwards a child's events). ``raw`` is the captured
    context as an encoded frame (``codec.encode_frame``), ``raw_sensors`` its names.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_node_t", "node", "t_start_ns"),
        Index("ix_events_machine_t", "machine", "t_start_ns"),
        Index("ix_events_t", "t_start_ns"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    node: Mapped[str] = mapped_column(String(NAME))
    seq: Mapped[int] = mapped_column(BigInteger)
    origin: Mapped[str] = mapped_column(String(NAME))
    machine: Mapped[str] = mapped_column(String(NAME))
    sensor: Mapped[str] = mapped_column(String(NAME))
    severity: Mapped[str] = mapped_column(String(16))
    t_start_ns: Mapped[int] = mapped_column(BigInteger)
    t_end_ns: Mapped[int] = mapped_column(BigInteger)
    detected_ns: Mapped[int] = mapped_column(BigInteger)
    score: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    detector: Mapped[str] = mapped_column(String(NAME))
    reason: Mapped[str] = mapped_column(Text, default="")
    features: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    raw_sensors: Mapped[list[str]] = mapped_column(JSON, default=list)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)


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
dead_letters = _table(DeadLetter)
metadata = Base.metadata


# -- records → rows ---------------------------------------------------------------------
class Rows(NamedTuple):
    """Rows for one table: column names and one tuple per row, ready for executemany.

    ``native`` promises that every value already is a plain DB-API type (``str``,
    ``int``, ``float``, ``None``), so no SQLAlchemy type processing is needed.
    """

    keys: tuple[str, ...]
    values: list[tuple[Any, ...]]
    native: bool = False

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.keys, v, strict=True)) for v in self.values]

    @classmethod
    def of(cls, dicts: Sequence[dict[str, Any]]) -> Rows:
        if not dicts:
            return cls((), [])
        keys = tuple(dicts[0])
        return cls(keys, [tuple(d[k] for k in keys) for d in dicts])


SUMMARY_KEYS = (
    "node",
    "seq",
    "sensor",
    "t0_ns",
    "t1_ns",
    "count",
    "mean",
    "std",
    "min",
    "max",
    "epoch",
)


def rows_for(
    node: str,
    seq: int,
    kind: str,
    decoded: object,
    payload: bytes,
    encode_frame: FrameEncoder,
    *,
    epoch: int = 0,
) -> dict[str, Rows]:
    """The rows one decoded entry adds, by table name.

    Args:
        node: the sending node (ledger key).
        seq: the entry's sequence number.
        epoch: the sending outbox's epoch (ledger key with ``node`` and ``seq``).
        kind: ``"summaries"``, ``"events"`` or ``"frame"``.
        decoded: the decoded payload for that kind (see :data:`Decoded`).
        payload: the encoded payload; becomes the blob of a ``"frame"`` entry (if empty,
            the frame is encoded with ``encode_frame``).
        encode_frame: encodes the raw context of events.

    Raises:
        TelemetryError: the payload does not fit its kind or cannot be stored (sensor
            index without a name, unequal columns, negative count, over-long name); the
            error names the field, e.g. ``summaries.sensor`` or ``events[2].machine``.
    """
    if kind == KIND_SUMMARIES:
        if not isinstance(decoded, SummaryBatch):
            raise _wrong_type("summaries", decoded, "SummaryBatch")
        return {"summaries": summary_rows(node, seq, decoded, epoch)}
    if kind == KIND_EVENTS:
        if not isinstance(decoded, list | tuple):
            raise _wrong_type("events", decoded, "list of Event")
        return {"events": event_rows(node, seq, decoded, encode_frame, epoch)}
    if kind == KIND_FRAME:
        if not (isinstance(decoded, tuple) and len(decoded) == 2):
            raise _wrong_type("frame", decoded, "(Frame, sensor names)")
        frame, names = decoded
        if not isinstance(frame, Frame):
            raise _wrong_type("frame", frame, "Frame")
        names = tuple(_name(n, f"frame.sensor_names[{i}]") for i, n in enumerate(names))
        _check_indices(frame.sensor, len(names), "frame.sensor")
        blob = payload or encode_frame(frame, names)
        keys = ("node", "epoch", "seq", "sensors", "n", "blob")
        return {"raw_frames": Rows(keys, [(node, epoch, seq, list(names), len(frame), blob)])}
    raise TelemetryError(
        "kind", RejectReason.MALFORMED, f"unknown entry kind {kind!r}; expected one of {KINDS}"
    )


def summary_rows(node: str, seq: int, batch: SummaryBatch, epoch: int = 0) -> Rows:
    """Rows of ``summaries`` for a batch (columns :data:`SUMMARY_KEYS`): columns are
    validated and converted whole, with numpy; only the final zip is per row."""
    n = len(batch)
    for col in ("sensor", "t0_ns", "t1_ns", "count", "mean", "std", "min", "max"):
        arr = np.asarray(getattr(batch, col))
        if arr.ndim != 1 or arr.shape[0] != n:
            raise TelemetryError(
                f"summaries.{col}",
                RejectReason.TRUNCATED,
                f"column has shape {arr.shape}, expected ({n},) like summaries.sensor",
            )
    if n == 0:
        return Rows(SUMMARY_KEYS, [], native=True)
    names = tuple(
        _name(s, f"summaries.sensor_names[{i}]") for i, s in enumerate(batch.sensor_names)
    )
    sensor = _check_indices(batch.sensor, len(names), "summaries.sensor")
    if (np.asarray(batch.count) < 0).any():
        raise TelemetryError("summaries.count", RejectReason.MALFORMED, "negative sample count")
    if (np.asarray(batch.t1_ns) < np.asarray(batch.t0_ns)).any():
        raise TelemetryError("summaries.t1_ns", RejectReason.MALFORMED, "t1_ns before t0_ns")
    cols = (
        np.asarray(names, dtype=object)[sensor].tolist(),
        np.asarray(batch.t0_ns, dtype=np.int64).tolist(),
        np.asarray(batch.t1_ns, dtype=np.int64).tolist(),
        np.asarray(batch.count, dtype=np.int64).tolist(),
        _floats(batch.mean),
        _floats(batch.std),
        _floats(batch.min),
        _floats(batch.max),
    )
    values = list(zip(repeat(node, n), repeat(seq, n), *cols, repeat(epoch, n), strict=True))
    return Rows(SUMMARY_KEYS, values, native=True)


EVENT_KEYS = (
    "node",
    "seq",
    "epoch",
    "origin",
    "machine",
    "sensor",
    "severity",
    "t_start_ns",
    "t_end_ns",
    "detected_ns",
    "score",
    "threshold",
    "detector",
    "reason",
    "features",
    "raw",
    "raw_sensors",
)


def event_rows(
    node: str,
    seq: int,
    events: Sequence[object],
    encode_frame: FrameEncoder,
    epoch: int = 0,
) -> Rows:
    """Rows of ``events`` (columns :data:`EVENT_KEYS`); raw context is re-encoded as one
    frame blob per event."""
    rows: list[tuple[Any, ...]] = []
    for i, ev in enumerate(events):
        if not isinstance(ev, Event):
            raise _wrong_type(f"events[{i}]", ev, "Event")
        raw_sensors = tuple(
            _ev_name(s, i, f"raw_sensors[{j}]") for j, s in enumerate(ev.raw_sensors)
        )
        blob = None
        if ev.raw is not None and len(ev.raw):
            _check_indices(ev.raw.sensor, len(raw_sensors), f"events[{i}].raw.sensor")
            blob = encode_frame(ev.raw, raw_sensors)
        severity = ev.severity
        rows.append(
            (
                node,
                seq,
                epoch,
                _ev_name(ev.node, i, "node"),
                _ev_name(ev.machine, i, "machine"),
                _ev_name(ev.sensor, i, "sensor"),
                _ev_name(str(getattr(severity, "value", severity)), i, "severity", 16),
                _ev_int64(ev.t_start_ns, i, "t_start_ns"),
                _ev_int64(ev.t_end_ns, i, "t_end_ns"),
                _ev_int64(ev.detected_ns, i, "detected_ns"),
                _float(ev.score),
                _float(ev.threshold),
                _ev_name(ev.detector, i, "detector"),
                text(ev.reason),
                json_safe(dict(ev.features)),
                blob,
                list(raw_sensors),
            )
        )
    return Rows(EVENT_KEYS, rows)


def _ev_name(value: Any, i: int, attr: str, limit: int = NAME) -> str:
    # The common case without building the field's name (an f-string per check).
    if type(value) is str and len(value) <= limit and "\x00" not in value:
        return value
    return _name(value, f"events[{i}].{attr}", limit)


def _ev_int64(value: Any, i: int, attr: str) -> int:
    if type(value) is int and -(2**63) <= value < 2**63:
        return value
    return int64(value, f"events[{i}].{attr}")


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types: non-finite floats become ``None`` (JSON has no NaN),
    numpy scalars Python numbers, tuples lists, bytes hex, anything else its ``str``.

    A flat dict that already is plain (string keys; str, int or finite float values) is
    returned as it is, not copied."""
    if value is None or isinstance(value, bool | str):
        return value
    if type(value) is dict and all(
        type(k) is str
        and (type(v) is str or type(v) is int or (type(v) is float and math.isfinite(v)))
        for k, v in value.items()
    ):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _float(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _float(value: Any) -> float | None:
    f = float(value)
    return f if math.isfinite(f) else None


def _floats(arr: Any) -> list[float | None]:
    values = np.asarray(arr, dtype=np.float64)
    finite = np.isfinite(values)
    if finite.all():
        return values.tolist()  # type: ignore[no-any-return]
    obj = values.astype(object)
    obj[~finite] = None
    return obj.tolist()  # type: ignore[no-any-return]


def _check_indices(sensor: Any, n_names: int, field: str) -> Any:
    idx = np.asarray(sensor, dtype=np.int64)
    bad = (idx < 0) | (idx >= n_names)
    if bad.any():
        raise TelemetryError(
            field,
            RejectReason.UNKNOWN_SENSOR,
            f"{int(bad.sum())} rows index beyond the {n_names} sensor names "
            f"(first: {int(idx[bad][0])})",
        )
    return idx


def int64(value: Any, field: str) -> int:
    """``value`` as an int that fits a ``BIGINT`` column, else a TelemetryError naming
    ``field`` (a value the database would refuse must not fail the whole batch)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise _wrong_type(field, value, "int")
    v = int(value)
    if not -(2**63) <= v < 2**63:
        raise TelemetryError(field, RejectReason.MALFORMED, f"{v} does not fit in int64")
    return v


def text(value: Any) -> str:
    """Free text for a ``TEXT`` column: NUL characters (refused by PostgreSQL) replaced."""
    return str(value).replace("\x00", "\ufffd")


def _name(value: Any, field: str, limit: int = NAME) -> str:
    if not isinstance(value, str):
        raise _wrong_type(field, value, "str")
    if len(value) > limit:
        raise TelemetryError(field, RejectReason.MALFORMED, f"{len(value)} characters > {limit}")
    if "\x00" in value:
        raise TelemetryError(field, RejectReason.MALFORMED, "NUL character in a name")
    return value


def _wrong_type(field: str, value: object, expected: str) -> TelemetryError:
    return TelemetryError(
        field, RejectReason.WRONG_TYPE, f"expected {expected}, got {type(value).__name__}"
    )


__all__ = [
    "EVENT_KEYS",
    "KINDS",
    "KIND_EVENTS",
    "KIND_FRAME",
    "KIND_SUMMARIES",
    "SUMMARY_KEYS",
    "Base",
    "DeadLetter",
    "Decoded",
    "EventRow",
    "FrameEncoder",
    "Incarnation",
    "Node",
    "RawFrameRow",
    "Received",
    "Rows",
    "SummaryRow",
    "dead_letters",
    "event_rows",
    "events",
    "incarnations",
    "int64",
    "json_safe",
    "metadata",
    "nodes",
    "raw_frames",
    "received",
    "rows_for",
    "summaries",
    "summary_rows",
    "text",
]

"""The hub's store: idempotent ingest on (node, epoch, seq), then queries. SQLite or
PostgreSQL.

``HubStore`` is the facade; the work lives beside it: ``engine`` (connections),
``migrate`` (schema revisions, Alembic), ``ingest`` (the ingest transaction), ``bulk``
(one insert statement per table), ``queries`` and ``dead_letters``.

The store ingests items that are already decoded (:class:`IngestItem`); it never parses
wire bytes, so it is usable and testable without the codec. ``ingest`` is one
transaction, and its :class:`~edgeloop.transport.base.Ack` is built only after the
commit returned: an ack always means "durably stored here".

Idempotence: the ``received`` ledger's primary key ``(node, epoch, seq)`` admits an
entry once. Entries already in the ledger are skipped and counted as duplicates. The
epoch is the sending outbox's incarnation: a node whose outbox was wiped or replaced
numbers from 1 again under a new epoch, and the hub keeps a watermark per (node, epoch)
(``schema.Incarnation``), so those entries are new, not duplicates. Two requests
carrying the same entries at the same time cannot both insert them: on SQLite the write
transaction starts with ``BEGIN IMMEDIATE`` (writers serialize, the second one sees the
first one's rows); on PostgreSQL the node row is locked ``FOR UPDATE``, and the ledger
admits entries with ``INSERT ... ON CONFLICT DO NOTHING RETURNING seq``, so an entry a
concurrent request committed first comes back as a duplicate, never as a second copy.

>>> import numpy as np
>>> from edgeloop.telemetry.records import SummaryBatch
>>> store = HubStore.open("sqlite://")
>>> b = SummaryBatch(*(np.array([0, 1], dtype=d) for d in
...     ("u4", "i8", "i8", "i8", "f4", "f4", "f4", "f4")), sensor_names=("a", "b"))
>>> item = IngestItem(seq=1, priority=1, kind="summaries", samples=1, size=10, decoded=b)
>>> store.ingest("n1", 0, [item], {"frames": 1}, now_ns=5)
Ack(node='n1', upto_seq=1, accepted=1, duplicates=0, rejected=0)
>>> store.ingest("n1", 0, [item], {"frames": 1}, now_ns=6).duplicates
1
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from edgeloop.hub import dead_letters as dl
from edgeloop.hub import ingest as ing
from edgeloop.hub import migrate, queries
from edgeloop.hub.dead_letters import DEAD_LETTER_PAYLOAD_CAP
from edgeloop.hub.engine import open_engine
from edgeloop.hub.records import (
    IncarnationInfo,
    IngestItem,
    IngestReport,
    NodeInfo,
    StoredDeadLetter,
    StoredDocument,
    StoredEvent,
    StoredSummary,
)
from edgeloop.hub.rows import json_safe
from edgeloop.hub.schema import KIND_EVENTS, KIND_FRAME, KIND_SUMMARIES, FrameEncoder
from edgeloop.telemetry.frame import Frame
from edgeloop.transport.base import Ack

INTEGRITY_RETRIES = 3
"""Attempts of one batch when a concurrent request inserted the same keys first."""

__all__ = [
    "DEAD_LETTER_PAYLOAD_CAP",
    "KIND_EVENTS",
    "KIND_FRAME",
    "KIND_SUMMARIES",
    "HubStore",
    "IncarnationInfo",
    "IngestItem",
    "IngestReport",
    "NodeInfo",
    "StoredDeadLetter",
    "StoredDocument",
    "StoredEvent",
    "StoredSummary",
]


def _default_encode_frame(frame: Frame, sensor_names: Sequence[str]) -> bytes:
    # Imported lazily: the store does not depend on the codec unless raw context has to
    # be re-encoded (events carrying raw samples).
    from edgeloop.telemetry import codec

    return codec.encode_frame(frame, sensor_names)


class HubStore:
    """The hub's storage adapter over SQLAlchemy 2 Core.

    Args:
        url: SQLAlchemy URL. ``"sqlite://"`` (default) is an in-memory database shared by
            all threads of the process; ``"sqlite:///path.db"`` a file in WAL mode;
            ``"postgresql+psycopg://..."`` PostgreSQL.
        encode_frame: encodes the raw context of events for the ``events.raw`` column
            (default: ``edgeloop.telemetry.codec.encode_frame``).
        echo: log SQL (debugging).

    The constructor does not touch the database; :meth:`open` (or :meth:`upgrade`)
    brings its schema to this release's revision first.

    Raises:
        ValueError: the URL names a backend other than SQLite or PostgreSQL.
    """

    def __init__(
        self,
        url: str = "sqlite://",
        *,
        encode_frame: FrameEncoder | None = None,
        echo: bool = False,
    ) -> None:
        self.url = url
        self._hub = open_engine(url, echo=echo)
        self.is_sqlite = self._hub.backend == "sqlite"
        self._encode_frame = encode_frame or _default_encode_frame
        self.integrity_retries = 0
        self.reconnects = 0

    @classmethod
    def open(cls, url: str = "sqlite://", *, encode_frame: FrameEncoder | None = None) -> HubStore:
        """A store on ``url`` whose schema was brought to this release's head
        (:meth:`upgrade`); how every hub process starts.

        Raises:
            edgeloop.hub.migrate.SchemaError: the schema cannot be upgraded
                automatically (the message says why and what to do).
        """
        store = cls(url, encode_frame=encode_frame)
        try:
            store.upgrade()
        except BaseException:
            store.close()
            raise
        return store

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for operators and tests that inspect the tables)."""
        return self._hub.engine

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._hub.backend

    def upgrade(self) -> migrate.Upgrade:
        """Bring the schema to this release's newest revision (Alembic migrations; an
        empty database gets every table, a database created before migrations existed
        is adopted when it matches the baseline). Idempotent and safe to run from
        several processes at once.

        Raises:
            edgeloop.hub.migrate.SchemaError: see :func:`edgeloop.hub.migrate.upgrade`.
        """
        return migrate.upgrade(self._hub)

    def create_all(self) -> None:
        """Create the tables: the same as :meth:`upgrade` (kept for callers of the
        pre-migration API; the schema is only ever made by the migrations)."""
        self.upgrade()

    def ping(self) -> None:
        """Raise ``SQLAlchemyError`` unless the database answers a trivial query."""
        with self._read() as conn:
            conn.execute(select(1))

    def close(self) -> None:
        """Release every pooled connection; the store must not be used afterwards."""
        self._hub.engine.dispose()

    # -- transactions ---------------------------------------------------------------
    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction; committed when the block exits without an exception."""
        with self._hub.lock, self._hub.engine.connect() as conn:
            conn.execution_options(edgeloop_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._hub.lock, self._hub.engine.connect() as conn:
            yield conn

    # -- ingest ---------------------------------------------------------------------
    def ingest(
        self,
        node: str,
        after_seq: int,
        items: Sequence[IngestItem],
        status: Mapping[str, Any],
        now_ns: int,
        *,
        sent_ns: int = 0,
        epoch: int = 0,
    ) -> Ack:
        """Store one batch of a node and acknowledge it after commit.

        The same as :meth:`ingest_report` (see there for the semantics), ack only.
        """
        return self.ingest_report(
            node, after_seq, items, status, now_ns, sent_ns=sent_ns, epoch=epoch
        ).ack

    def ingest_report(
        self,
        node: str,
        after_seq: int,
        items: Sequence[IngestItem],
        status: Mapping[str, Any],
        now_ns: int,
        *,
        sent_ns: int = 0,
        epoch: int = 0,
    ) -> IngestReport:
        """Store one batch of a node in one transaction and acknowledge it after commit.

        Every table gets one insert statement per batch (``edgeloop.hub.bulk``), however
        many entries and rows the batch holds.

        Args:
            node: the sending node's id.
            after_seq: the batch's ``after_seq``: entries of ``node`` with
                ``after_seq < seq < items[0].seq`` that are absent were evicted.
            items: the batch's entries, decoded (or rejected) by the caller.
            status: the node's cumulative counters; they replace the stored ones (never
                added), unless a status with a newer ``sent_ns`` is already stored.
            now_ns: hub clock, recorded as ``received_ns`` / ``last_seen_ns``.
            sent_ns: sender clock of ``status`` (orders statuses of reordered batches).
            epoch: the sending outbox's epoch (``Batch.epoch``; 0: unknown). Ledger,
                dedupe and watermark are per (node, epoch). The first batch of an epoch
                never seen before makes it the node's current epoch; a batch of an older
                epoch (a stale replay) is deduplicated against that epoch's ledger and
                moves only that epoch's watermark.

        Returns:
            an :class:`IngestReport`: the ack and the reasons of its rejects. The ack is
            ``Ack(node, upto_seq=watermark, accepted, duplicates, rejected)`` with the
            watermark of (node, epoch): it advances to the batch's last seq when
            ``after_seq <= watermark`` (nothing before the batch is missing); otherwise
            it stays, because an earlier batch has not arrived. The first batch of an
            epoch the hub never saw starts the watermark at ``after_seq`` (the hub
            cannot wait for entries acknowledged by a hub that forgot them) and records
            the gap as ``unknown_upto_seq`` of the node and the epoch. ``accepted``
            counts new stored entries, ``duplicates`` entries already in the ledger (or
            repeated in the batch), ``rejected`` new entries whose payload went to
            ``dead_letters``.

        Raises:
            TelemetryError: ``node`` is not a valid id, a ``seq`` is not positive, or a
                number does not fit in int64 (nothing stored: the batch is refused).
            sqlalchemy.exc.SQLAlchemyError: the database failed; nothing was stored and
                nothing may be acknowledged.
        """
        ing.check_batch(node, after_seq, sent_ns, epoch, items)
        safe_status = json_safe(dict(status))
        for attempt in range(INTEGRITY_RETRIES):
            try:
                with self._write() as conn:
                    out = ing.commit_batch(
                        conn,
                        node,
                        epoch,
                        after_seq,
                        items,
                        safe_status,
                        now_ns,
                        sent_ns,
                        self._encode_frame,
                    )
            except IntegrityError:
                # A concurrent request committed a key this one inserts without
                # ON CONFLICT (this node's first incarnation row): retry.
                self.integrity_retries += 1
                if attempt == INTEGRITY_RETRIES - 1:
                    raise
                continue
            except DBAPIError as exc:
                # The connection died under the transaction (a server restart): nothing
                # was stored; the pool dropped it, so the retry runs on a new one.
                if not exc.connection_invalidated or attempt == INTEGRITY_RETRIES - 1:
                    raise
                self.reconnects += 1
                continue
            # The transaction committed when the block above exited: only now is it an ack.
            ack = Ack(node, out.watermark, out.accepted, out.duplicates, out.rejected)
            return IngestReport(ack, out.rejects)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- dead letters ---------------------------------------------------------------
    def dead_letter(
        self,
        node: str | None,
        reason: str,
        field: str,
        detail: str,
        payload: bytes,
        now_ns: int,
        *,
        seq: int | None = None,
    ) -> int:
        """Record a payload that could not be stored (e.g. a batch that does not decode).

        The payload is truncated to :data:`DEAD_LETTER_PAYLOAD_CAP` bytes; its original
        size is kept. Returns the dead letter's id.
        """
        row = dl.row(node, seq, reason, field, detail, payload, now_ns)
        with self._write() as conn:
            return dl.insert_one(conn, row)

    def dead_letters(self, node: str | None = None, limit: int = 100) -> list[StoredDeadLetter]:
        """Most recent dead letters first, optionally of one node."""
        with self._read() as conn:
            return dl.recent(conn, node, limit)

    def dead_letter_payload(self, dead_letter_id: int) -> bytes | None:
        """The (truncated) payload of a dead letter, or ``None`` if there is no such id."""
        with self._read() as conn:
            return dl.payload(conn, dead_letter_id)

    # -- queries --------------------------------------------------------------------
    def nodes(self) -> list[NodeInfo]:
        """Every node, ordered by id."""
        with self._read() as conn:
            return queries.nodes(conn)

    def node(self, node_id: str) -> NodeInfo | None:
        """One node, or ``None`` if it never sent a batch."""
        with self._read() as conn:
            found = queries.nodes(conn, node_id)
        return found[0] if found else None

    def incarnations(self, node_id: str) -> list[IncarnationInfo]:
        """Every outbox epoch of a node seen here, in the order first seen (empty if the
        node is unknown). A non-zero ``unknown_upto_seq`` is a gap the hub cannot
        account for (see ``schema.Incarnation``)."""
        with self._read() as conn:
            return queries.incarnations(conn, node_id)

    def events(
        self,
        node: str | None = None,
        machine: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 1000,
    ) -> list[StoredEvent]:
        """Events with ``since_ns <= t_start_ns < until_ns``, oldest first, at most ``limit``.

        ``node`` filters on the sending node.
        """
        with self._read() as conn:
            return queries.events(conn, node, machine, since_ns, until_ns, limit)

    def event_raw(self, event_id: int) -> tuple[bytes, list[str]] | None:
        """The raw context of an event: (encoded frame, sensor names), or ``None``."""
        with self._read() as conn:
            return queries.event_raw(conn, event_id)

    def summaries(
        self,
        node: str | None = None,
        sensor: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 10_000,
    ) -> list[StoredSummary]:
        """Summary rows with ``since_ns <= t0_ns < until_ns``, oldest first (then by id)."""
        with self._read() as conn:
            return queries.summaries(conn, node, sensor, since_ns, until_ns, limit)

    def documents(
        self,
        kind: str,
        node: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 10_000,
    ) -> list[StoredDocument]:
        """Document entries of ``kind`` (``edgeloop.hub.documents``) with
        ``since_ns <= t_ns < until_ns``, oldest first, at most ``limit``."""
        with self._read() as conn:
            return queries.documents(conn, kind, node, since_ns, until_ns, limit)

    def totals(self) -> dict[str, Any]:
        """Accounting per node and overall.

        Returns:
            ``{"nodes": {id: counters}, "overall": counters}`` where counters are
            ``samples`` (sum of summary ``count``: samples covered by summaries),
            ``events`` (stored), ``entries`` (admitted to the ledger, rejected ones
            included), ``rejected`` (entries dead-lettered), ``duplicates`` (entries
            skipped as already stored), ``bytes`` (payload bytes admitted),
            ``batches`` and ``dead_letters``. ``overall.dead_letters`` includes dead
            letters of unknown senders.
        """
        with self._read() as conn:
            return queries.totals(conn)

    def duplicate_summary_samples(self) -> int:
        """Samples the hub would count twice: ``SUM(count)`` over the summary rows beyond
        the first of each ``(node, sensor, t0_ns)``.

        A check of the stored data itself, independent of the ledger: 0 unless some
        window's summary was stored twice.
        """
        with self._read() as conn:
            return queries.duplicate_summary_samples(conn)

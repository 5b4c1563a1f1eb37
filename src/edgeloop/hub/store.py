"""The hub's store: idempotent ingest on (node, epoch, seq), then queries. SQLite or
PostgreSQL.

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
first one's rows); on PostgreSQL the node row is locked ``FOR UPDATE`` and a racing
first insert of the same key raises ``IntegrityError``, upon which the whole batch is
retried and the rows the other request committed count as duplicates.

>>> import numpy as np
>>> from edgeloop.telemetry.records import SummaryBatch
>>> store = HubStore("sqlite://")
>>> store.create_all()
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
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool

from edgeloop.errors import RejectReason, TelemetryError
from edgeloop.hub import schema as t
from edgeloop.hub.records import (
    IncarnationInfo,
    IngestItem,
    IngestReport,
    NodeInfo,
    StoredDeadLetter,
    StoredEvent,
    StoredSummary,
)
from edgeloop.hub.schema import (
    KIND_EVENTS,
    KIND_FRAME,
    KIND_SUMMARIES,
    FrameEncoder,
    Rows,
    int64,
    json_safe,
    rows_for,
    text,
)
from edgeloop.telemetry.frame import Frame
from edgeloop.transport.base import Ack

DEAD_LETTER_PAYLOAD_CAP = 64 * 1024
"""Bytes of a dead-lettered payload kept for inspection; the original size is recorded."""

INTEGRITY_RETRIES = 3
"""Attempts of one batch when a concurrent request inserted the same ledger keys."""

_IN_CHUNK = 900  # bound parameters per IN (...) lookup; far below every backend's limit

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
    """

    def __init__(
        self,
        url: str = "sqlite://",
        *,
        encode_frame: FrameEncoder | None = None,
        echo: bool = False,
    ) -> None:
        parsed = make_url(url)
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self._encode_frame = encode_frame or _default_encode_frame
        self.integrity_retries = 0
        self._lock: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self.is_sqlite:
            memory = parsed.database in (None, "", ":memory:")
            if memory:
                # One connection shared by every thread; the lock serializes its use.
                self._engine = create_engine(
                    url,
                    echo=echo,
                    poolclass=StaticPool,
                    connect_args={"check_same_thread": False},
                )
                self._lock = threading.RLock()
            else:
                self._engine = create_engine(
                    url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30.0}
                )
            _sqlite_pragmas(self._engine, wal=not memory)
        else:
            self._engine = create_engine(url, echo=echo, pool_pre_ping=True)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for operators and tests that inspect the tables)."""
        return self._engine

    def create_all(self) -> None:
        """Create missing tables and indexes (idempotent)."""
        with self._lock:
            t.metadata.create_all(self._engine)

    def ping(self) -> None:
        """Raise ``SQLAlchemyError`` unless the database answers a trivial query."""
        with self._read() as conn:
            conn.execute(select(1))

    def close(self) -> None:
        """Release every pooled connection; the store must not be used afterwards."""
        self._engine.dispose()

    # -- transactions ---------------------------------------------------------------
    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction; committed when the block exits without an exception."""
        with self._lock, self._engine.connect() as conn:
            conn.execution_options(edgeloop_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._lock, self._engine.connect() as conn:
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
            the gap as ``unknown_upto_seq`` of the node and the epoch. ``accepted`` counts new stored entries, ``duplicates``
            entries already in the ledger (or repeated in the batch), ``rejected`` new
            entries whose payload went to ``dead_letters``.

        Raises:
            TelemetryError: ``node`` is not a valid id, a ``seq`` is not positive, or a
                number does not fit in int64 (nothing stored: the batch is refused).
            sqlalchemy.exc.SQLAlchemyError: the database failed; nothing was stored and
                nothing may be acknowledged.
        """
        if not node or len(node) > t.NAME or "\x00" in node:
            raise TelemetryError("node", RejectReason.MALFORMED, f"node id {node!r:.300}")
        int64(after_seq, "after_seq")
        int64(sent_ns, "sent_ns")
        if int64(epoch, "epoch") < 0:
            raise TelemetryError("epoch", RejectReason.MALFORMED, f"negative epoch {epoch}")
        for i, item in enumerate(items):
            for name in ("seq", "samples", "size", "priority"):
                if int64(getattr(item, name), f"entries[{i}].{name}") < (name == "seq"):
                    raise TelemetryError(
                        f"entries[{i}].{name}",
                        RejectReason.MALFORMED,
                        f"{name} {getattr(item, name)} < {int(name == 'seq')}",
                    )
        safe_status = json_safe(dict(status))
        # Entries already in the ledger need no rows: a redelivered batch (lost ack) costs
        # a lookup, not a rebuild. The ledger only grows, so what is seen now is still
        # seen inside the transaction; if it is not (rows were purged meanwhile), the
        # transaction refuses with _Stale and the batch is prepared in full.
        known = self._known(node, epoch, [item.seq for item in items])
        for attempt in range(INTEGRITY_RETRIES):
            prepared = [
                self._prepare(node, epoch, item, now_ns, item.seq in known) for item in items
            ]
            try:
                return self._ingest_once(
                    node, epoch, after_seq, prepared, safe_status, now_ns, sent_ns
                )
            except IntegrityError:
                # A concurrent request committed some of these keys (or this node's
                # first row) between our lookup and our insert: retry; they are
                # duplicates now.
                self.integrity_retries += 1
                if attempt == INTEGRITY_RETRIES - 1:
                    raise
            except _Stale:
                known = set()
        raise AssertionError("unreachable")  # pragma: no cover

    def _known(self, node: str, epoch: int, seqs: Sequence[int]) -> set[int]:
        with self._read() as conn:
            return self._seen(conn, node, epoch, seqs)

    def _prepare(
        self, node: str, epoch: int, item: IngestItem, now_ns: int, known: bool
    ) -> _Prepared:
        """Build every row of ``item`` before the transaction (pure work, no lock held);
        nothing for a ``known`` (already stored) entry."""
        if known:
            return _Prepared(item.seq, {}, {}, None, built=False)
        error = item.error
        rows: dict[str, Rows] = {}
        if error is None:
            try:
                rows = rows_for(
                    node,
                    item.seq,
                    item.kind,
                    item.decoded,
                    item.payload,
                    self._encode_frame,
                    epoch=epoch,
                )
            except TelemetryError as exc:
                error = exc
        ledger = {
            "node": node,
            "epoch": epoch,
            "seq": item.seq,
            "kind": text(item.kind[:64]),
            "priority": int(item.priority),
            "samples": int(item.samples),
            "bytes": int(item.size),
            "received_ns": now_ns,
            "rejected": error is not None,
        }
        dead = None
        if error is not None:
            rows = {}
            dead = _dead_letter_row(
                node,
                item.seq,
                error.reason.value,
                error.field,
                f"entry seq {item.seq} epoch {epoch} kind {item.kind!r}: {error.detail}",
                item.payload,
                now_ns,
            )
        return _Prepared(item.seq, ledger, rows, dead)

    def _ingest_once(
        self,
        node: str,
        epoch: int,
        after_seq: int,
        prepared: Sequence[_Prepared],
        status: dict[str, Any],
        now_ns: int,
        sent_ns: int,
    ) -> IngestReport:
        with self._write() as conn:
            row = conn.execute(_NODE_FOR_UPDATE, {"node": node}).one_or_none()
            if row is None:
                conn.execute(
                    insert(t.nodes).values(
                        id=node,
                        tier=None,
                        parent=None,
                        first_seen_ns=now_ns,
                        last_seen_ns=now_ns,
                        watermark=0,
                        status={},
                        status_ns=-1,
                        batches=0,
                        duplicates=0,
                        epoch=epoch,
                        unknown_upto_seq=0,
                    )
                )
                current_epoch, status_ns, last_seen = epoch, -1, now_ns
            else:
                current_epoch, status_ns, last_seen = row

            # The node row is locked (or was just inserted): the incarnation rows of the
            # node cannot change under us.
            inc = conn.execute(_INCARNATION, {"node": node, "epoch": epoch}).one_or_none()
            new_epoch = inc is None
            unknown_upto = 0
            if inc is None:
                # An epoch never seen here: a new outbox (it numbers from 1 again) or a
                # hub that forgot this one. Entries up to after_seq were acknowledged by
                # a hub that is not this database; waiting for them would stall the node
                # forever, so the watermark starts at after_seq and the gap is recorded.
                watermark = unknown_upto = max(after_seq, 0)
                inc_last_seen = now_ns
            else:
                watermark, inc_last_seen = inc
            # The current epoch is the one most recently seen for the first time; a batch
            # of an older epoch (a stale replay) only touches that epoch's watermark.
            current = new_epoch or epoch == current_epoch

            seen = self._seen(conn, node, epoch, [p.seq for p in prepared])
            fresh: list[_Prepared] = []
            for p in prepared:
                if p.seq not in seen:
                    if not p.built:
                        raise _Stale
                    seen.add(p.seq)  # a seq repeated inside the batch is a duplicate too
                    fresh.append(p)
            duplicates = len(prepared) - len(fresh)
            rejected = sum(1 for p in fresh if p.dead is not None)
            self._insert_rows(conn, fresh)

            if prepared and after_seq <= watermark:
                watermark = max(watermark, max(p.seq for p in prepared))
            if new_epoch:
                conn.execute(
                    insert(t.incarnations).values(
                        node=node,
                        epoch=epoch,
                        watermark=watermark,
                        unknown_upto_seq=unknown_upto,
                        first_seen_ns=now_ns,
                        last_seen_ns=now_ns,
                        batches=1,
                    )
                )
            else:
                inc_c = t.incarnations.c
                conn.execute(
                    update(t.incarnations)
                    .where(inc_c.node == node, inc_c.epoch == epoch)
                    .values(
                        watermark=watermark,
                        last_seen_ns=max(inc_last_seen, now_ns),
                        batches=inc_c.batches + 1,
                    )
                )
            values: dict[str, Any] = {
                "last_seen_ns": max(last_seen, now_ns),
                "batches": t.nodes.c.batches + 1,
                "duplicates": t.nodes.c.duplicates + duplicates,
            }
            if current:
                values["watermark"] = watermark
            if new_epoch:
                values.update(epoch=epoch, unknown_upto_seq=unknown_upto)
            if sent_ns >= status_ns:
                values.update(status=status, status_ns=sent_ns)
                for key in ("tier", "parent"):
                    if isinstance(status.get(key), str):
                        values[key] = text(status[key][: 64 if key == "tier" else t.NAME])
            conn.execute(update(t.nodes).where(t.nodes.c.id == node).values(**values))
        # The transaction committed when the block above exited: only now is it an ack.
        ack = Ack(
            node=node,
            upto_seq=int(watermark),
            accepted=len(fresh) - rejected,
            duplicates=duplicates,
            rejected=rejected,
        )
        return IngestReport(ack, Counter(p.dead["reason"] for p in fresh if p.dead is not None))

    @staticmethod
    def _seen(conn: Connection, node: str, epoch: int, seqs: Sequence[int]) -> set[int]:
        found: set[int] = set()
        uniq = sorted(set(seqs))
        for i in range(0, len(uniq), _IN_CHUNK):
            chunk = uniq[i : i + _IN_CHUNK]
            found.update(conn.scalars(_SEEN, {"node": node, "epoch": epoch, "seqs": chunk}))
        return found

    @staticmethod
    def _insert_rows(conn: Connection, fresh: Sequence[_Prepared]) -> None:
        if not fresh:
            return
        # The ledger first: the foreign keys of the data rows point at it.
        conn.execute(insert(t.received), [p.ledger for p in fresh])
        by_table: dict[str, Rows] = {}
        for p in fresh:
            for name, rows in p.rows.items():
                have = by_table.get(name)
                if have is None or have.keys != rows.keys:
                    if have is not None:
                        _bulk_insert(conn, name, have)
                    by_table[name] = Rows(rows.keys, list(rows.values), rows.native)
                else:
                    have.values.extend(rows.values)
        for name, rows in by_table.items():
            _bulk_insert(conn, name, rows)
        dead = [p.dead for p in fresh if p.dead is not None]
        if dead:
            conn.execute(insert(t.dead_letters), dead)

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
        row = _dead_letter_row(node, seq, reason, field, detail, payload, now_ns)
        with self._write() as conn:
            result = conn.execute(insert(t.dead_letters).values(**row))
            key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def dead_letters(self, node: str | None = None, limit: int = 100) -> list[StoredDeadLetter]:
        """Most recent dead letters first, optionally of one node."""
        c = t.dead_letters.c
        q = select(c.id, c.node, c.seq, c.received_ns, c.reason, c.field, c.detail, c.payload_bytes)
        if node is not None:
            q = q.where(c.node == node)
        q = q.order_by(c.id.desc()).limit(limit)
        with self._read() as conn:
            return [StoredDeadLetter(*r) for r in conn.execute(q)]

    def dead_letter_payload(self, dead_letter_id: int) -> bytes | None:
        """The (truncated) payload of a dead letter, or ``None`` if there is no such id."""
        q = select(t.dead_letters.c.payload).where(t.dead_letters.c.id == dead_letter_id)
        with self._read() as conn:
            value = conn.scalar(q)
        return None if value is None else bytes(value)

    # -- queries --------------------------------------------------------------------
    def nodes(self) -> list[NodeInfo]:
        """Every node, ordered by id."""
        with self._read() as conn:
            rows = conn.execute(select(*_NODE_COLS).order_by(t.nodes.c.id))
            return [NodeInfo(*r) for r in rows]

    def node(self, node_id: str) -> NodeInfo | None:
        """One node, or ``None`` if it never sent a batch."""
        with self._read() as conn:
            row = conn.execute(select(*_NODE_COLS).where(t.nodes.c.id == node_id)).first()
        return None if row is None else NodeInfo(*row)

    def incarnations(self, node_id: str) -> list[IncarnationInfo]:
        """Every outbox epoch of a node seen here, in the order first seen (empty if the
        node is unknown). A non-zero ``unknown_upto_seq`` is a gap the hub cannot
        account for (see ``schema.Incarnation``)."""
        c = t.incarnations.c
        q = (
            select(
                c.node,
                c.epoch,
                c.watermark,
                c.unknown_upto_seq,
                c.first_seen_ns,
                c.last_seen_ns,
                c.batches,
            )
            .where(c.node == node_id)
            .order_by(c.first_seen_ns, c.epoch)
        )
        with self._read() as conn:
            return [IncarnationInfo(*r) for r in conn.execute(q)]

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
        c = t.events.c
        cols = [col for col in t.events.columns if col.name != "raw"]
        q = select(*cols, (c.raw.is_not(None)).label("has_raw"))
        if node is not None:
            q = q.where(c.node == node)
        if machine is not None:
            q = q.where(c.machine == machine)
        if since_ns is not None:
            q = q.where(c.t_start_ns >= since_ns)
        if until_ns is not None:
            q = q.where(c.t_start_ns < until_ns)
        q = q.order_by(c.t_start_ns, c.id).limit(limit)
        with self._read() as conn:
            out = []
            for r in conn.execute(q).mappings():
                d = dict(r)
                d["has_raw"] = bool(d["has_raw"])
                out.append(StoredEvent(**d))
            return out

    def event_raw(self, event_id: int) -> tuple[bytes, list[str]] | None:
        """The raw context of an event: (encoded frame, sensor names), or ``None``."""
        c = t.events.c
        with self._read() as conn:
            row = conn.execute(select(c.raw, c.raw_sensors).where(c.id == event_id)).first()
        if row is None or row[0] is None:
            return None
        return bytes(row[0]), list(row[1] or [])

    def summaries(
        self,
        node: str | None = None,
        sensor: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 10_000,
    ) -> list[StoredSummary]:
        """Summary rows with ``since_ns <= t0_ns < until_ns``, oldest first (then by id)."""
        c = t.summaries.c
        q = select(*t.summaries.columns)
        if node is not None:
            q = q.where(c.node == node)
        if sensor is not None:
            q = q.where(c.sensor == sensor)
        if since_ns is not None:
            q = q.where(c.t0_ns >= since_ns)
        if until_ns is not None:
            q = q.where(c.t0_ns < until_ns)
        q = q.order_by(c.t0_ns, c.id).limit(limit)
        with self._read() as conn:
            return [StoredSummary(*r) for r in conn.execute(q)]

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
        keys = (
            "samples",
            "events",
            "entries",
            "rejected",
            "duplicates",
            "bytes",
            "batches",
            "dead_letters",
        )
        per: dict[str, dict[str, int]] = {}

        def put(node: str | None, key: str, value: Any) -> None:
            if node is not None:
                per.setdefault(node, dict.fromkeys(keys, 0))[key] = int(value or 0)

        r, s, e, n, d = t.received.c, t.summaries.c, t.events.c, t.nodes.c, t.dead_letters.c
        with self._read() as conn:
            for node, batches, dups in conn.execute(select(n.id, n.batches, n.duplicates)):
                put(node, "batches", batches)
                put(node, "duplicates", dups)
            for node, entries, rej, nbytes in conn.execute(
                select(
                    r.node, func.count(), func.sum(_as_int(r.rejected)), func.sum(r.bytes)
                ).group_by(r.node)
            ):
                put(node, "entries", entries)
                put(node, "rejected", rej)
                put(node, "bytes", nbytes)
            for node, samples in conn.execute(select(s.node, func.sum(s.count)).group_by(s.node)):
                put(node, "samples", samples)
            for node, count in conn.execute(select(e.node, func.count()).group_by(e.node)):
                put(node, "events", count)
            orphan = 0
            for node, count in conn.execute(select(d.node, func.count()).group_by(d.node)):
                if node is None:
                    orphan += int(count)
                put(node, "dead_letters", count)
        overall = {k: sum(v[k] for v in per.values()) for k in keys}
        overall["dead_letters"] += orphan
        return {"nodes": dict(sorted(per.items())), "overall": overall}

    def duplicate_summary_samples(self) -> int:
        """Samples the hub would count twice: ``SUM(count)`` over the summary rows beyond
        the first of each ``(node, sensor, t0_ns)``.

        A check of the stored data itself, independent of the ledger: 0 unless some
        window's summary was stored twice.
        """
        s = t.summaries.c
        rn = (
            func.row_number()
            .over(partition_by=(s.node, s.sensor, s.t0_ns), order_by=s.id)
            .label("rn")
        )
        ranked = select(s.count, rn).subquery()
        q = select(func.coalesce(func.sum(ranked.c.count), 0)).where(ranked.c.rn > 1)
        with self._read() as conn:
            return int(conn.scalar(q) or 0)


@dataclass(frozen=True, slots=True)
class _Prepared:
    seq: int
    ledger: dict[str, Any]
    rows: dict[str, Rows]
    dead: dict[str, Any] | None
    built: bool = True


class _Stale(Exception):
    """An entry thought already stored is not in the ledger: prepare the batch in full."""


def _bulk_insert(conn: Connection, table_name: str, rows: Rows) -> None:
    """One executemany for all ``rows`` of a table.

    When the values are native DB-API types (the summaries: names and numbers, see
    ``Rows.native``) and the driver takes positional parameters, the tuples go to the
    driver as they are. That skips SQLAlchemy's per-row parameter processing, about half
    the time of inserting a large summary batch. Otherwise (JSON columns, named
    paramstyles) it is Core's executemany.
    """
    if not rows.values:
        return
    table = t.metadata.tables[table_name]
    dialect = conn.dialect
    if rows.native:
        key = (table_name, rows.keys, dialect.name)
        if key not in _INSERT_SQL:
            compiled = insert(table).compile(dialect=dialect, column_keys=list(rows.keys))
            order = compiled.positiontup
            ok = compiled.positional and order is not None and tuple(order) == rows.keys
            _INSERT_SQL[key] = compiled.string if ok else None
        sql = _INSERT_SQL[key]
        if sql is not None:
            conn.exec_driver_sql(sql, rows.values)
            return
    conn.execute(insert(table), rows.dicts())


# Built once: statements run per batch, and building one costs more than running it.
_SEEN = select(t.received.c.seq).where(
    t.received.c.node == bindparam("node"),
    t.received.c.epoch == bindparam("epoch"),
    t.received.c.seq.in_(bindparam("seqs", expanding=True)),
)
_NODE_FOR_UPDATE = (
    select(t.nodes.c.epoch, t.nodes.c.status_ns, t.nodes.c.last_seen_ns)
    .where(t.nodes.c.id == bindparam("node"))
    .with_for_update()
)
_INCARNATION = select(t.incarnations.c.watermark, t.incarnations.c.last_seen_ns).where(
    t.incarnations.c.node == bindparam("node"),
    t.incarnations.c.epoch == bindparam("epoch"),
)
_INSERT_SQL: dict[tuple[str, tuple[str, ...], str], str | None] = {}

_NODE_COLS = (
    t.nodes.c.id,
    t.nodes.c.tier,
    t.nodes.c.parent,
    t.nodes.c.first_seen_ns,
    t.nodes.c.last_seen_ns,
    t.nodes.c.watermark,
    t.nodes.c.batches,
    t.nodes.c.duplicates,
    t.nodes.c.status,
    t.nodes.c.epoch,
    t.nodes.c.unknown_upto_seq,
)


def _as_int(col: Any) -> Any:
    return cast(col, Integer)


def _dead_letter_row(
    node: str | None,
    seq: int | None,
    reason: str,
    field: str,
    detail: str,
    payload: bytes,
    now_ns: int,
) -> dict[str, Any]:
    return {
        "node": None if node is None else text(node[: t.NAME]),
        "seq": seq,
        "received_ns": now_ns,
        "reason": str(reason)[:64],
        "field": text(field[: t.NAME]),
        "detail": text(detail[:4096]),
        "payload": bytes(payload[:DEAD_LETTER_PAYLOAD_CAP]),
        "payload_bytes": len(payload),
    }


def _sqlite_pragmas(engine: Engine, *, wal: bool) -> None:
    """WAL and foreign keys on every connection; SQLAlchemy emits BEGIN itself, so that a
    write transaction can start ``IMMEDIATE`` (take the write lock before reading)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver must not emit BEGIN on its own
        cur = dbapi_conn.cursor()
        try:
            if wal:
                cur.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL: a commit survives a process crash, not a power loss.
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("edgeloop_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

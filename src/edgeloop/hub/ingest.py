"""The hub's ingest transaction: one batch of a node, idempotent on (node, epoch, seq).

Three steps, driven by ``HubStore.ingest_report``:

1. :func:`check_batch` refuses a batch whose numbers or node id the tables cannot hold
   (nothing is stored).
2. :func:`prepare` builds the rows of each entry before any lock is taken (pure work);
   entries the ledger already holds (looked up with :func:`known_seqs`) are not built.
3. :func:`commit_batch`, inside one write transaction: lock the node row (creating it
   if new), admit the entries to the ``received`` ledger with one
   ``INSERT ... ON CONFLICT DO NOTHING RETURNING seq``, insert the data rows of the
   admitted entries (one statement per table, ``edgeloop.hub.bulk``), move the
   watermark of (node, epoch) and the node's counters.

An entry the ledger refuses (its key is there: a resent batch, or a concurrent request
that committed it first) is a duplicate: its rows are not inserted. The caller builds
the ack only after the transaction committed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from edgeloop.errors import RejectReason, TelemetryError
from edgeloop.hub import dead_letters
from edgeloop.hub import schema as t
from edgeloop.hub.bulk import insert_columns, insert_rows
from edgeloop.hub.columns import ColumnRows
from edgeloop.hub.records import IngestItem
from edgeloop.hub.rows import Rows, int64, rows_for, text
from edgeloop.hub.schema import FrameEncoder

LEDGER_KEYS = (
    "node",
    "epoch",
    "seq",
    "kind",
    "priority",
    "samples",
    "bytes",
    "received_ns",
    "rejected",
)
DEAD_LETTER_KEYS = (
    "node",
    "seq",
    "received_ns",
    "reason",
    "field",
    "detail",
    "payload",
    "payload_bytes",
)
_IN_CHUNK = 900  # bound parameters per IN (...) lookup; far below every backend's limit


@dataclass(frozen=True, slots=True)
class Prepared:
    """One entry, ready to insert: its ledger row, its data rows by table, its dead
    letter (when its payload was unusable). ``built`` is false for an entry the ledger
    held before the transaction: only its ledger row exists, to prove it still does."""

    seq: int
    ledger: tuple[Any, ...]
    rows: dict[str, Rows | ColumnRows]
    dead: dict[str, Any] | None
    built: bool = True


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :func:`commit_batch` did (turned into an ack after the commit)."""

    watermark: int
    accepted: int
    duplicates: int
    rejected: int
    rejects: Counter[str]


class Stale(Exception):
    """An entry thought already stored is not in the ledger: prepare the batch in full."""


def check_batch(
    node: str, after_seq: int, sent_ns: int, epoch: int, items: Sequence[IngestItem]
) -> None:
    """Raise :class:`TelemetryError` naming the field if the batch cannot be stored."""
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


def known_seqs(conn: Connection, node: str, epoch: int, seqs: Sequence[int]) -> set[int]:
    """The seqs of ``seqs`` the ledger holds for (node, epoch)."""
    found: set[int] = set()
    uniq = sorted(set(seqs))
    for i in range(0, len(uniq), _IN_CHUNK):
        chunk = uniq[i : i + _IN_CHUNK]
        found.update(conn.scalars(_SEEN, {"node": node, "epoch": epoch, "seqs": chunk}))
    return found


def prepare(
    node: str,
    epoch: int,
    item: IngestItem,
    now_ns: int,
    encode_frame: FrameEncoder,
    known: bool,
) -> Prepared:
    """Build every row of ``item``; only the ledger row for a ``known`` entry."""
    error = None if known else item.error
    rows: dict[str, Rows | ColumnRows] = {}
    if not known and error is None:
        try:
            rows = rows_for(
                node, item.seq, item.kind, item.decoded, item.payload, encode_frame, epoch=epoch
            )
        except TelemetryError as exc:
            error = exc
    ledger = (
        node,
        epoch,
        item.seq,
        text(item.kind[:64]),
        int(item.priority),
        int(item.samples),
        int(item.size),
        now_ns,
        error is not None,
    )
    dead = None
    if error is not None:
        rows = {}
        dead = dead_letters.row(
            node,
            item.seq,
            error.reason.value,
            error.field,
            f"entry seq {item.seq} epoch {epoch} kind {item.kind!r}: {error.detail}",
            item.payload,
            now_ns,
        )
    return Prepared(item.seq, ledger, rows, dead, built=not known)


def commit_batch(
    conn: Connection,
    node: str,
    epoch: int,
    after_seq: int,
    prepared: Sequence[Prepared],
    status: dict[str, Any],
    now_ns: int,
    sent_ns: int,
) -> Outcome:
    """Store a prepared batch inside the caller's write transaction.

    Raises:
        Stale: an entry prepared as known is not in the ledger (roll back, rebuild).
        sqlalchemy.exc.IntegrityError: a concurrent first insert of this node's
            incarnation row (roll back, retry).
    """
    # One round trip: the node row, locked, with its incarnation row of this epoch (the
    # node row is locked: the incarnation rows of the node cannot change under us).
    params = {"node": node, "epoch": epoch}
    row = conn.execute(_NODE_FOR_UPDATE, params).one_or_none()
    if row is None:
        # ON CONFLICT: a concurrent first batch of the node may insert it too.
        conn.execute(_NEW_NODE[conn.dialect.name], _new_node(node, epoch, now_ns))
        row = conn.execute(_NODE_FOR_UPDATE, params).one()
    current_epoch, status_ns, last_seen, inc_watermark, inc_seen = row
    inc = None if inc_watermark is None else (inc_watermark, inc_seen)
    new_epoch = inc is None
    unknown_upto = 0
    if inc is None:
        # An epoch never seen here: a new outbox (it numbers from 1 again) or a hub that
        # forgot this one. Entries up to after_seq were acknowledged by a hub that is not
        # this database; waiting for them would stall the node forever, so the watermark
        # starts at after_seq and the gap is recorded.
        watermark = unknown_upto = max(after_seq, 0)
        inc_last_seen = now_ns
    else:
        watermark, inc_last_seen = inc
    # The current epoch is the one most recently seen for the first time; a batch of an
    # older epoch (a stale replay) only touches that epoch's watermark.
    current = new_epoch or epoch == current_epoch

    fresh = _admit(conn, prepared)
    _insert_data(conn, fresh)
    duplicates = len(prepared) - len(fresh)
    dead = [p.dead for p in fresh if p.dead is not None]

    if prepared and after_seq <= watermark:
        watermark = max(watermark, max(p.seq for p in prepared))
    inc_c = t.incarnations.c
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
    return Outcome(
        watermark=int(watermark),
        accepted=len(fresh) - len(dead),
        duplicates=duplicates,
        rejected=len(dead),
        rejects=Counter(d["reason"] for d in dead),
    )


def _admit(conn: Connection, prepared: Sequence[Prepared]) -> list[Prepared]:
    """Insert the ledger rows; the entries admitted now (the rest are duplicates)."""
    first: dict[int, Prepared] = {}
    for p in prepared:
        first.setdefault(p.seq, p)  # a seq repeated inside the batch is a duplicate too
    admitted = set(
        insert_rows(
            conn,
            t.received,
            LEDGER_KEYS,
            [p.ledger for p in first.values()],
            skip_conflicts=True,
            returning="seq",
        )
    )
    fresh = [p for p in first.values() if p.seq in admitted]
    if any(not p.built for p in fresh):
        raise Stale
    return fresh


def _insert_data(conn: Connection, fresh: Sequence[Prepared]) -> None:
    """One insert per table (and form of rows) for the rows of the admitted entries."""
    by_table: dict[tuple[str, tuple[str, ...], bool], list[tuple[Any, ...]]] = {}
    by_columns: dict[tuple[str, tuple[str, ...]], list[ColumnRows]] = {}
    for p in fresh:
        for name, rows in p.rows.items():
            if isinstance(rows, ColumnRows):
                by_columns.setdefault((name, rows.keys), []).append(rows)
            else:
                by_table.setdefault((name, rows.keys, rows.native), []).extend(rows.values)
    for (name, keys, native), values in by_table.items():
        insert_rows(conn, t.metadata.tables[name], keys, values, serialised=native)
    for (name, _), parts in by_columns.items():
        insert_columns(conn, t.metadata.tables[name], ColumnRows.concat(parts))
    dead = [tuple(d[k] for k in DEAD_LETTER_KEYS) for p in fresh if (d := p.dead) is not None]
    insert_rows(conn, t.dead_letters, DEAD_LETTER_KEYS, dead)


def _new_node(node: str, epoch: int, now_ns: int) -> dict[str, Any]:
    return {
        "id": node,
        "tier": None,
        "parent": None,
        "first_seen_ns": now_ns,
        "last_seen_ns": now_ns,
        "watermark": 0,
        "status": {},
        "status_ns": -1,
        "batches": 0,
        "duplicates": 0,
        "epoch": epoch,
        "unknown_upto_seq": 0,
    }


# Built once: statements run per batch, and building one costs more than running it.
_SEEN = select(t.received.c.seq).where(
    t.received.c.node == bindparam("node"),
    t.received.c.epoch == bindparam("epoch"),
    t.received.c.seq.in_(bindparam("seqs", expanding=True)),
)
_NODE_FOR_UPDATE = (
    select(
        t.nodes.c.epoch,
        t.nodes.c.status_ns,
        t.nodes.c.last_seen_ns,
        t.incarnations.c.watermark,
        t.incarnations.c.last_seen_ns,
    )
    .select_from(
        t.nodes.outerjoin(
            t.incarnations,
            and_(
                t.incarnations.c.node == t.nodes.c.id,
                t.incarnations.c.epoch == bindparam("epoch"),
            ),
        )
    )
    .where(t.nodes.c.id == bindparam("node"))
    .with_for_update(of=t.nodes)
)
_NEW_NODE = {
    "postgresql": postgresql.insert(t.nodes).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(t.nodes).on_conflict_do_nothing(),
}

__all__ = [
    "DEAD_LETTER_KEYS",
    "LEDGER_KEYS",
    "Outcome",
    "Prepared",
    "Stale",
    "check_batch",
    "commit_batch",
    "known_seqs",
    "prepare",
]

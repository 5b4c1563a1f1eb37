"""The hub's ingest transaction: one batch of a node, idempotent on (node, epoch, seq).

Two steps, driven by ``HubStore.ingest_report``:

1. :func:`check_batch` refuses a batch whose numbers or node id the tables cannot hold
   (nothing is stored).
2. :func:`commit_batch`, inside one write transaction: lock the node row (creating it
   if new), admit the entries to the ``received`` ledger with one
   ``INSERT ... ON CONFLICT DO NOTHING RETURNING seq``, build the rows of the admitted
   entries only (:func:`prepare`), insert them (one statement per table,
   ``edgeloop.hub.bulk``), move the watermark of (node, epoch) and the node's counters.

An entry the ledger refuses (its key is there: a resent batch, or a concurrent request
that committed it first) is a duplicate: its rows are neither built nor inserted, so a
redelivered batch (a lost ack) costs the ledger insert, not a rebuild, and no separate
lookup is needed. An entry whose rows cannot be built (a name too long for its column)
is marked rejected in the ledger row it was just given and dead-lettered. The caller
builds the ack only after the transaction committed.
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


@dataclass(frozen=True, slots=True)
class Prepared:
    """One admitted entry, ready to insert: its data rows by table, its dead letter
    (when its payload was unusable). ``late`` is true when the payload decoded but its
    rows could not be built: its ledger row went in as not rejected and must be marked."""

    seq: int
    rows: dict[str, Rows | ColumnRows]
    dead: dict[str, Any] | None
    late: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :func:`commit_batch` did (turned into an ack after the commit)."""

    watermark: int
    accepted: int
    duplicates: int
    rejected: int
    rejects: Counter[str]


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


def ledger_row(node: str, epoch: int, item: IngestItem, now_ns: int) -> tuple[Any, ...]:
    """The ``received`` row of ``item`` (:data:`LEDGER_KEYS`); rejected if it did not
    decode."""
    return (
        node,
        epoch,
        item.seq,
        text(item.kind[:64]),
        int(item.priority),
        int(item.samples),
        int(item.size),
        now_ns,
        item.error is not None,
    )


def prepare(
    node: str, epoch: int, item: IngestItem, now_ns: int, encode_frame: FrameEncoder
) -> Prepared:
    """Build every row of ``item``, or its dead letter when it cannot be stored."""
    error = item.error
    late = False
    rows: dict[str, Rows | ColumnRows] = {}
    if error is None:
        try:
            rows = rows_for(
                node, item.seq, item.kind, item.decoded, item.payload, encode_frame, epoch=epoch
            )
        except TelemetryError as exc:
            error, late = exc, True
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
    return Prepared(item.seq, rows, dead, late)


def commit_batch(
    conn: Connection,
    node: str,
    epoch: int,
    after_seq: int,
    items: Sequence[IngestItem],
    status: dict[str, Any],
    now_ns: int,
    sent_ns: int,
    encode_frame: FrameEncoder,
) -> Outcome:
    """Store a batch inside the caller's write transaction.

    Raises:
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

    admitted = _admit(conn, node, epoch, items, now_ns)
    fresh = [prepare(node, epoch, item, now_ns, encode_frame) for item in admitted]
    late = [p.seq for p in fresh if p.late]
    if late:
        conn.execute(_MARK_REJECTED, {"w_node": node, "w_epoch": epoch, "w_seqs": late})
    _insert_data(conn, fresh)
    duplicates = len(items) - len(fresh)
    dead = [p.dead for p in fresh if p.dead is not None]

    if items and after_seq <= watermark:
        watermark = max(watermark, max(item.seq for item in items))
    inc_params = {
        "i_node": node,
        "i_epoch": epoch,
        "i_watermark": watermark,
        "i_last_seen_ns": max(inc_last_seen, now_ns),
        "i_unknown_upto_seq": unknown_upto,
    }
    values: dict[str, Any] = {"last_seen_ns": max(last_seen, now_ns), "dups": duplicates}
    if current:
        values["watermark"] = watermark
    if new_epoch:
        values.update(epoch=epoch, unknown_upto_seq=unknown_upto)
    if sent_ns >= status_ns:
        values.update(status=status, status_ns=sent_ns)
        for key in ("tier", "parent"):
            if isinstance(status.get(key), str):
                values[key] = text(status[key][: 64 if key == "tier" else t.NAME])
    params = {"node_id": node, **{f"v_{k}": v for k, v in values.items()}}
    incarnation = "insert" if new_epoch else "update"
    if conn.dialect.name == "postgresql":
        # One round trip: the incarnation's insert or update rides along as a CTE.
        conn.execute(_update_node(tuple(values), incarnation), {**params, **inc_params})
    else:  # SQLite has no data-modifying CTEs
        conn.execute(_INCARNATION[incarnation], inc_params)
        conn.execute(_update_node(tuple(values), None), params)
    return Outcome(
        watermark=int(watermark),
        accepted=len(fresh) - len(dead),
        duplicates=duplicates,
        rejected=len(dead),
        rejects=Counter(d["reason"] for d in dead),
    )


def _admit(
    conn: Connection, node: str, epoch: int, items: Sequence[IngestItem], now_ns: int
) -> list[IngestItem]:
    """Insert the ledger rows; the entries admitted now (the rest are duplicates)."""
    first: dict[int, IngestItem] = {}
    for item in items:
        first.setdefault(item.seq, item)  # a seq repeated inside the batch is a duplicate too
    admitted = set(
        insert_rows(
            conn,
            t.received,
            LEDGER_KEYS,
            [ledger_row(node, epoch, item, now_ns) for item in first.values()],
            skip_conflicts=True,
            returning="seq",
        )
    )
    return [item for item in first.values() if item.seq in admitted]


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
_MARK_REJECTED = (
    update(t.received)
    .where(
        t.received.c.node == bindparam("w_node"),
        t.received.c.epoch == bindparam("w_epoch"),
        t.received.c.seq.in_(bindparam("w_seqs", expanding=True)),
    )
    .values(rejected=True)
)
_inc = t.incarnations.c
_INCARNATION: dict[str, Any] = {
    "insert": insert(t.incarnations).values(
        node=bindparam("i_node"),
        epoch=bindparam("i_epoch"),
        watermark=bindparam("i_watermark"),
        unknown_upto_seq=bindparam("i_unknown_upto_seq"),
        first_seen_ns=bindparam("i_last_seen_ns"),
        last_seen_ns=bindparam("i_last_seen_ns"),
        batches=1,
    ),
    "update": update(t.incarnations)
    .where(_inc.node == bindparam("i_node"), _inc.epoch == bindparam("i_epoch"))
    .values(
        watermark=bindparam("i_watermark"),
        last_seen_ns=bindparam("i_last_seen_ns"),
        batches=_inc.batches + 1,
    ),
}
"""The incarnation's row of a batch: inserted for an epoch never seen, else updated."""
_NODE_UPDATES: dict[tuple[tuple[str, ...], str | None], Any] = {}


def _update_node(keys: tuple[str, ...], incarnation: str | None) -> Any:
    """The ``UPDATE nodes`` setting ``keys`` (bound as ``v_<key>``; ``dups`` is added
    to the duplicates, batches grows by one), with the incarnation's statement of
    :data:`_INCARNATION` as a CTE (PostgreSQL) unless ``incarnation`` is None; built
    once per form."""
    stmt = _NODE_UPDATES.get((keys, incarnation))
    if stmt is None:
        c = t.nodes.c
        values: dict[str, Any] = {
            k: bindparam(f"v_{k}", type_=c[k].type) for k in keys if k != "dups"
        }
        values.update(batches=c.batches + 1, duplicates=c.duplicates + bindparam("v_dups"))
        stmt = update(t.nodes).where(c.id == bindparam("node_id")).values(**values)
        if incarnation is not None:
            stmt = stmt.add_cte(_INCARNATION[incarnation].cte(f"incarnation_{incarnation}"))
        _NODE_UPDATES[(keys, incarnation)] = stmt
    return stmt


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
    "check_batch",
    "commit_batch",
    "ledger_row",
    "prepare",
]

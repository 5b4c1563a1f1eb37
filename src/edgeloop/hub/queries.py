"""Read queries of the hub store: nodes, epochs, events, summaries and accounting.

Functions of a connection; ``HubStore`` opens it (and holds the lock an in-memory SQLite
database needs) and documents the public behaviour.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from sqlalchemy import Connection, Integer, Select, cast, func, select

from edgeloop.hub import schema as t
from edgeloop.hub.event_blocks import BlockKey, Blocks
from edgeloop.hub.records import (
    IncarnationInfo,
    NodeInfo,
    StoredDocument,
    StoredEvent,
    StoredSummary,
)

Q = TypeVar("Q", bound="Select[*tuple[Any, ...]]")


def _between(q: Q, col: Any, since_ns: int | None, until_ns: int | None) -> Q:
    """``q`` restricted to ``since_ns <= col < until_ns`` (either bound optional)."""
    if since_ns is not None:
        q = q.where(col >= since_ns)
    if until_ns is not None:
        q = q.where(col < until_ns)
    return q


TOTAL_KEYS = (
    "samples",
    "events",
    "entries",
    "rejected",
    "duplicates",
    "bytes",
    "batches",
    "dead_letters",
)
"""Counters of :func:`totals`, per node and overall."""

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


def nodes(conn: Connection, node_id: str | None = None) -> list[NodeInfo]:
    """Every node ordered by id, or only ``node_id``."""
    q = select(*_NODE_COLS).order_by(t.nodes.c.id)
    if node_id is not None:
        q = q.where(t.nodes.c.id == node_id)
    return [NodeInfo(*r) for r in conn.execute(q)]


def incarnations(conn: Connection, node_id: str) -> list[IncarnationInfo]:
    """Every outbox epoch of a node, in the order first seen."""
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
    return [IncarnationInfo(*r) for r in conn.execute(q)]


def events(
    conn: Connection,
    node: str | None,
    machine: str | None,
    since_ns: int | None,
    until_ns: int | None,
    limit: int,
) -> list[StoredEvent]:
    """Events with ``since_ns <= t_start_ns < until_ns``, oldest first."""
    c = t.events.c
    cols = [col for col in t.events.columns if col.name != "raw"]
    q = select(*cols, (c.raw.is_not(None)).label("has_raw"))
    if node is not None:
        q = q.where(c.node == node)
    if machine is not None:
        q = q.where(c.machine == machine)
    q = _between(q, c.t_start_ns, since_ns, until_ns)
    q = q.order_by(c.t_start_ns, c.id).limit(limit)
    found = [dict(r) for r in conn.execute(q).mappings()]
    # Events stored from an entry's columns (idx set) read their details from its block.
    blocks = Blocks(conn, [_block_key(d) for d in found if d["idx"] is not None])
    out = []
    for d in found:
        idx = d.pop("idx")
        if idx is None:
            d["has_raw"] = bool(d["has_raw"])
            d["features"] = d["features"] or {}
            d["raw_sensors"] = d["raw_sensors"] or []
        else:
            d.update(blocks.details(_block_key(d), idx))
        out.append(StoredEvent(**d))
    return out


def _block_key(row: dict[str, Any]) -> BlockKey:
    return (row["node"], row["epoch"], row["seq"])


def event_raw(conn: Connection, event_id: int) -> tuple[bytes, list[str]] | None:
    """The raw context of an event: (encoded frame, sensor names), or ``None``."""
    c = t.events.c
    q = select(c.raw, c.raw_sensors, c.node, c.epoch, c.seq, c.idx).where(c.id == event_id)
    row = conn.execute(q).first()
    if row is None:
        return None
    raw, raw_sensors, node, epoch, seq, idx = row
    if idx is None:
        return None if raw is None else (bytes(raw), list(raw_sensors or []))
    key = (node, epoch, seq)
    found = Blocks(conn, [key]).raw(key, idx)
    if found is None:
        return None
    from edgeloop.telemetry.codec import encode_frame  # lazily: the store needs no codec

    frame, names = found
    return encode_frame(frame, names), list(names)


def summaries(
    conn: Connection,
    node: str | None,
    sensor: str | None,
    since_ns: int | None,
    until_ns: int | None,
    limit: int,
) -> list[StoredSummary]:
    """Summary rows with ``since_ns <= t0_ns < until_ns``, oldest first (then by id)."""
    c = t.summaries.c
    q = select(*t.summaries.columns)
    if node is not None:
        q = q.where(c.node == node)
    if sensor is not None:
        q = q.where(c.sensor == sensor)
    q = _between(q, c.t0_ns, since_ns, until_ns)
    q = q.order_by(c.t0_ns, c.id).limit(limit)
    return [StoredSummary(*r) for r in conn.execute(q)]


def documents(
    conn: Connection,
    kind: str,
    node: str | None,
    since_ns: int | None,
    until_ns: int | None,
    limit: int,
) -> list[StoredDocument]:
    """Documents of ``kind`` with ``since_ns <= t_ns < until_ns``, oldest first."""
    c = t.node_documents.c
    q = select(c.node, c.epoch, c.seq, c.kind, c.t_ns, c.body).where(c.kind == kind)
    if node is not None:
        q = q.where(c.node == node)
    q = _between(q, c.t_ns, since_ns, until_ns)
    q = q.order_by(c.t_ns, c.node, c.epoch, c.seq).limit(limit)
    return [
        StoredDocument(r.node, r.epoch, r.seq, r.kind, r.t_ns, json.loads(r.body))
        for r in conn.execute(q)
    ]


def totals(conn: Connection) -> dict[str, Any]:
    """Accounting per node and overall (see ``HubStore.totals``)."""
    per: dict[str, dict[str, int]] = {}

    def put(node: str | None, key: str, value: Any) -> None:
        if node is not None:
            per.setdefault(node, dict.fromkeys(TOTAL_KEYS, 0))[key] = int(value or 0)

    r, s, e, n, d = t.received.c, t.summaries.c, t.events.c, t.nodes.c, t.dead_letters.c
    for node, batches, dups in conn.execute(select(n.id, n.batches, n.duplicates)):
        put(node, "batches", batches)
        put(node, "duplicates", dups)
    rejected = func.sum(cast(r.rejected, Integer))
    for node, entries, rej, nbytes in conn.execute(
        select(r.node, func.count(), rejected, func.sum(r.bytes)).group_by(r.node)
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
    overall = {k: sum(v[k] for v in per.values()) for k in TOTAL_KEYS}
    overall["dead_letters"] += orphan
    return {"nodes": dict(sorted(per.items())), "overall": overall}


def duplicate_summary_samples(conn: Connection) -> int:
    """``SUM(count)`` over the summary rows beyond the first of each
    ``(node, sensor, t0_ns)``."""
    s = t.summaries.c
    rn = func.row_number().over(partition_by=(s.node, s.sensor, s.t0_ns), order_by=s.id).label("rn")
    ranked = select(s.count, rn).subquery()
    q = select(func.coalesce(func.sum(ranked.c.count), 0)).where(ranked.c.rn > 1)
    return int(conn.scalar(q) or 0)


__all__ = [
    "TOTAL_KEYS",
    "duplicate_summary_samples",
    "event_raw",
    "events",
    "incarnations",
    "nodes",
    "summaries",
    "totals",
]

"""Dead letters: payloads the hub could not store, kept (truncated) with the reason.

Two sources: a whole batch that does not decode or is refused (``IngestService``
records it with :func:`insert`), and single entries of a stored batch whose payload is
unusable (the ingest transaction writes their rows with the batch, see
``edgeloop.hub.ingest``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from edgeloop.hub import schema as t
from edgeloop.hub.records import StoredDeadLetter
from edgeloop.hub.rows import text

DEAD_LETTER_PAYLOAD_CAP = 64 * 1024
"""Bytes of a dead-lettered payload kept for inspection; the original size is recorded."""


def row(
    node: str | None,
    seq: int | None,
    reason: str,
    field: str,
    detail: str,
    payload: bytes,
    now_ns: int,
) -> dict[str, Any]:
    """A ``dead_letters`` row; names and texts are cut to what the columns hold, the
    payload to :data:`DEAD_LETTER_PAYLOAD_CAP` (``payload_bytes`` keeps its size)."""
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


def insert_one(conn: Connection, values: dict[str, Any]) -> int:
    """Insert one dead letter (a :func:`row`); returns its id."""
    key = conn.execute(insert(t.dead_letters).values(**values)).inserted_primary_key
    assert key is not None
    return int(key[0])


def recent(conn: Connection, node: str | None, limit: int) -> list[StoredDeadLetter]:
    """Most recent dead letters first, optionally of one node, without payloads."""
    c = t.dead_letters.c
    q = select(c.id, c.node, c.seq, c.received_ns, c.reason, c.field, c.detail, c.payload_bytes)
    if node is not None:
        q = q.where(c.node == node)
    q = q.order_by(c.id.desc()).limit(limit)
    return [StoredDeadLetter(*r) for r in conn.execute(q)]


def payload(conn: Connection, dead_letter_id: int) -> bytes | None:
    """The (truncated) payload of a dead letter, or ``None`` if there is no such id."""
    value = conn.scalar(
        select(t.dead_letters.c.payload).where(t.dead_letters.c.id == dead_letter_id)
    )
    return None if value is None else bytes(value)


__all__ = ["DEAD_LETTER_PAYLOAD_CAP", "insert_one", "payload", "recent", "row"]

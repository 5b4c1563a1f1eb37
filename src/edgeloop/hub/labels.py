"""Operators' labels of events: true or false alarm, with who, when and a note.

Every label is a new row of ``event_labels`` (``edgeloop.hub.feedback_tables``): the
newest row of an event is its label, the older ones its history. Retraining reads the
current labels with the events' features (:meth:`LabelStore.labelled`) to check that a
new model stays quiet on false alarms and still alerts on true ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select

from edgeloop.errors import ConfigError
from edgeloop.hub import schema as t
from edgeloop.hub.desired_docs import NotFound
from edgeloop.hub.event_blocks import Blocks
from edgeloop.hub.feedback_tables import LABELS, event_labels
from edgeloop.hub.records import StoredEvent
from edgeloop.hub.store import HubStore

MAX_NOTE = 2000


@dataclass(frozen=True, slots=True)
class LabelRecord:
    """One label of an event."""

    id: int
    event_id: int
    label: str
    actor: str
    note: str
    at_ns: int


def check_label(label: str, actor: str, note: str) -> None:
    """Raise :class:`ConfigError` naming the field unless the label can be stored."""
    if label not in LABELS:
        raise ConfigError(f"label: {label!r:.50} is not one of {list(LABELS)}")
    if not actor or len(actor) > t.NAME:
        raise ConfigError(f"actor: must be 1..{t.NAME} characters")
    if len(note) > MAX_NOTE:
        raise ConfigError(f"note: {len(note)} characters > {MAX_NOTE}")


class LabelStore:
    """Labels in the hub store's database (see the module docstring)."""

    def __init__(self, store: HubStore) -> None:
        self.store = store

    def put(self, event_id: int, label: str, actor: str, note: str, now_ns: int) -> LabelRecord:
        """Label an event (a new row: the old label stays in its history).

        Raises:
            ConfigError: an invalid label, actor or note (the field is named).
            NotFound: no event ``event_id``.
        """
        check_label(label, actor, note)
        with self.store._write() as conn:
            if conn.scalar(select(t.events.c.id).where(t.events.c.id == event_id)) is None:
                raise NotFound(f"event: no event {event_id}")
            row = {
                "event_id": event_id,
                "label": label,
                "actor": actor,
                "note": note,
                "at_ns": now_ns,
            }
            new_id = conn.execute(insert(event_labels).values(**row)).inserted_primary_key
            assert new_id is not None
            return LabelRecord(int(new_id[0]), **row)  # type: ignore[arg-type]

    def labels(
        self,
        *,
        event_id: int | None = None,
        label: str | None = None,
        history: bool = False,
        limit: int = 1000,
    ) -> list[LabelRecord]:
        """Current labels (the newest per event), or every label with ``history``;
        oldest first. ``label`` filters on the (current) label."""
        if label is not None and label not in LABELS:
            raise ConfigError(f"label: {label!r:.50} is not one of {list(LABELS)}")
        c = event_labels.c
        q = select(c.id, c.event_id, c.label, c.actor, c.note, c.at_ns)
        if not history:
            newest = select(func.max(c.id)).group_by(c.event_id).scalar_subquery()
            q = q.where(c.id.in_(newest))
        if event_id is not None:
            q = q.where(c.event_id == event_id)
        if label is not None:
            q = q.where(c.label == label)
        q = q.order_by(c.id).limit(limit)
        with self.store._read() as conn:
            return [LabelRecord(*r) for r in conn.execute(q)]

    def labelled(self, limit: int = 100_000) -> list[tuple[LabelRecord, StoredEvent]]:
        """The current labels with their events (features included), oldest first."""
        current = self.labels(limit=limit)
        with self.store._read() as conn:
            events = _events_by_id(conn, [lab.event_id for lab in current])
        return [(lab, events[lab.event_id]) for lab in current if lab.event_id in events]


def _events_by_id(conn: Connection, ids: Sequence[int]) -> dict[int, StoredEvent]:
    """Stored events by id, with their details (features) read from their blocks."""
    if not ids:
        return {}
    c = t.events.c
    cols = [col for col in t.events.columns if col.name != "raw"]
    q = select(*cols, (c.raw.is_not(None)).label("has_raw")).where(c.id.in_(list(set(ids))))
    found = [dict(r) for r in conn.execute(q).mappings()]
    keys = [(d["node"], d["epoch"], d["seq"]) for d in found if d["idx"] is not None]
    blocks = Blocks(conn, keys)
    out: dict[int, StoredEvent] = {}
    for d in found:
        idx = d.pop("idx")
        if idx is None:
            d["has_raw"] = bool(d["has_raw"])
            d["features"] = d["features"] or {}
            d["raw_sensors"] = d["raw_sensors"] or []
        else:
            d.update(blocks.details((d["node"], d["epoch"], d["seq"]), idx))
        out[int(d["id"])] = StoredEvent(**d)
    return out


__all__ = ["LabelRecord", "LabelStore", "check_label"]

"""Tables of feedback and retraining: operators' labels of events, retraining runs.

::

    event_labels     every label an operator put on an event (true or false alarm), with
                     who, when and a note; never updated: the newest row of an event is
                     its label, the others its history
    retrain_runs     one row per retraining run: why and by whom it ran, its outcome
                     (running, rolled_out, registered, refused, failed), the version it
                     registered, the rollout it started, and its data set and metrics

The tables register on :data:`edgeloop.hub.schema.metadata` (migration 0007).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from edgeloop.hub.schema import NAME, Base, IdType

LABELS = ("true_alarm", "false_alarm")
"""The labels an event can carry."""


class EventLabel(Base):
    """One label put on an event (``events.id``); the newest of an event counts."""

    __tablename__ = "event_labels"
    __table_args__ = (Index("ix_event_labels_event", "event_id", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(BigInteger)
    label: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(NAME))
    note: Mapped[str] = mapped_column(Text, default="")
    at_ns: Mapped[int] = mapped_column(BigInteger)


class RetrainRun(Base):
    """A retraining run (``edgeloop.hub.retrain``)."""

    __tablename__ = "retrain_runs"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(NAME))
    outcome: Mapped[str] = mapped_column(String(16))
    version: Mapped[str | None] = mapped_column(String(128))
    parent: Mapped[str | None] = mapped_column(String(128))
    rollout_id: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_ns: Mapped[int] = mapped_column(BigInteger)
    finished_ns: Mapped[int | None] = mapped_column(BigInteger)


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


event_labels = _table(EventLabel)
retrain_runs = _table(RetrainRun)

__all__ = ["LABELS", "EventLabel", "RetrainRun", "event_labels", "retrain_runs"]

"""Tables of the hub's drift service (``edgeloop.hub.drift_service``), migration 0008.

::

    drift_state         one row: the streaks per model version (``drift.MonitorState``
                        as JSON) and the last period judged; replaced in the transaction
                        that adds a period's assessments, so a restart resumes exactly
    drift_assessments   per (model version, period, scope): the metric per feature,
                        rows per feature, the verdict, the drifted features, the streak
                        after the period (scope = a node id or ``*`` for the fleet)
    drift_triggers      every ``RetrainTrigger`` emitted; ``delivered_ns`` is set once
                        the callbacks ran (a trigger committed by a hub that died before
                        calling them is delivered by the next start)

The sketches themselves are the ``sketch`` rows of ``node_documents``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from edgeloop.hub.model_tables import VERSION
from edgeloop.hub.schema import NAME, Base, IdType


class DriftStateRow(Base):
    """The monitor's state (``name`` = ``monitor``)."""

    __tablename__ = "drift_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_period: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_ns: Mapped[int] = mapped_column(BigInteger)


class DriftAssessmentRow(Base):
    """One scope's judgement of one period against one model version's reference."""

    __tablename__ = "drift_assessments"
    __table_args__ = (
        UniqueConstraint("version", "period", "scope", name="uq_drift_assessments"),
        Index("ix_drift_assessments_period", "period"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(VERSION))
    period: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(String(NAME))
    verdict: Mapped[str] = mapped_column(String(16))  # drifted, calm, unjudged
    streak: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(8))
    values: Mapped[dict[str, Any]] = mapped_column(JSON)  # feature -> metric (None: no data)
    rows: Mapped[dict[str, Any]] = mapped_column(JSON)  # feature -> rows behind it
    drifted: Mapped[list[str]] = mapped_column(JSON)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON)  # psi/ks/w1, score summary
    judged_ns: Mapped[int] = mapped_column(BigInteger)


class DriftTriggerRow(Base):
    """A ``RetrainTrigger``: drift persisted for ``streak`` periods."""

    __tablename__ = "drift_triggers"
    __table_args__ = (UniqueConstraint("version", "period", "scope", name="uq_drift_triggers"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(VERSION))
    period: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(String(NAME))
    streak: Mapped[int] = mapped_column(Integer)
    features: Mapped[list[str]] = mapped_column(JSON)
    values: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    at_ns: Mapped[int] = mapped_column(BigInteger)
    delivered_ns: Mapped[int | None] = mapped_column(BigInteger)


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


drift_state = _table(DriftStateRow)
drift_assessments = _table(DriftAssessmentRow)
drift_triggers = _table(DriftTriggerRow)

__all__ = [
    "DriftAssessmentRow",
    "DriftStateRow",
    "DriftTriggerRow",
    "drift_assessments",
    "drift_state",
    "drift_triggers",
]

"""What the drift service shows: the latest judgement per scope, history, triggers.

Read-only queries over ``drift_state``, ``drift_assessments`` and ``drift_triggers``
(:mod:`edgeloop.hub.drift_tables`) for ``GET /v1/drift``, ``GET /v1/drift/history`` and
``edgeloop drift status``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from edgeloop.drift import FLEET
from edgeloop.hub import drift_tables as dt
from edgeloop.hub.model_store import reading

if TYPE_CHECKING:
    from edgeloop.hub.drift_service import DriftService

RECENT_PERIODS = 10
"""Model versions judged within this many periods of the last one are shown."""


def _assessment(row: Any, period_ns: int) -> dict[str, Any]:
    r = row._mapping
    return {
        "version": r["version"],
        "scope": r["scope"],
        "period": int(r["period"]),
        "period_start_ns": int(r["period"]) * period_ns,
        "period_end_ns": (int(r["period"]) + 1) * period_ns,
        "verdict": r["verdict"],
        "drifted": r["verdict"] == "drifted",
        "streak": int(r["streak"]),
        "metric": r["metric"],
        "values": dict(r["values"]),
        "rows": dict(r["rows"]),
        "drifted_features": list(r["drifted"]),
        "score_mean": r["extra"].get("score_mean"),
    }


def _trigger(row: Any) -> dict[str, Any]:
    r = row._mapping
    return {
        "id": int(r["id"]),
        "version": r["version"],
        "period": int(r["period"]),
        "scope": r["scope"],
        "streak": int(r["streak"]),
        "features": list(r["features"]),
        "values": dict(r["values"]),
        "reason": r["reason"],
        "at_ns": int(r["at_ns"]),
        "delivered_ns": None if r["delivered_ns"] is None else int(r["delivered_ns"]),
    }


def status(service: DriftService) -> dict[str, Any]:
    """``GET /v1/drift`` (see :meth:`DriftService.status`)."""
    a, tr, st = dt.drift_assessments.c, dt.drift_triggers.c, dt.drift_state.c
    with reading(service.store) as conn:
        row = conn.execute(select(st.last_period).where(st.name == "monitor")).first()
        last = None if row is None else int(row.last_period)
        latest = (
            select(a.version, func.max(a.period).label("period")).group_by(a.version).subquery()
        )
        rows = list(
            conn.execute(
                select(dt.drift_assessments).join(
                    latest, (a.version == latest.c.version) & (a.period == latest.c.period)
                )
            )
        )
        last_trigger = conn.execute(select(dt.drift_triggers).order_by(tr.id.desc())).first()
        n_triggers = int(
            conn.execute(select(func.count()).select_from(dt.drift_triggers)).scalar_one()
        )
    newest = max((int(r.period) for r in rows), default=None)
    scopes = [
        _assessment(r, service.period_ns)
        for r in rows
        if newest is not None and int(r.period) > newest - RECENT_PERIODS
    ]
    scopes.sort(key=lambda s: (s["version"], s["scope"] != FLEET, s["scope"]))
    return {
        "config": asdict(service.config),
        "period_s": service.period_ns / 1e9,
        "grace_s": service.grace_ns / 1e9,
        "last_period": last,
        "scopes": scopes,
        "fleet": [s for s in scopes if s["scope"] == FLEET],
        "nodes": [s for s in scopes if s["scope"] != FLEET],
        "triggers": n_triggers,
        "last_trigger": None if last_trigger is None else _trigger(last_trigger),
        "rejected": dict(service.rejected),
        "late": service.late,
    }


def history(
    service: DriftService, scope: str | None, version: str | None, limit: int
) -> list[dict[str, Any]]:
    """``GET /v1/drift/history``: judged periods, newest first."""
    a = dt.drift_assessments.c
    q = select(dt.drift_assessments)
    if scope is not None:
        q = q.where(a.scope == scope)
    if version is not None:
        q = q.where(a.version == version)
    q = q.order_by(a.period.desc(), a.version, a.scope).limit(limit)
    with reading(service.store) as conn:
        return [_assessment(r, service.period_ns) for r in conn.execute(q)]


def triggers(service: DriftService, limit: int = 100) -> list[dict[str, Any]]:
    """Triggers, newest first."""
    with reading(service.store) as conn:
        q = select(dt.drift_triggers).order_by(dt.drift_triggers.c.id.desc()).limit(limit)
        return [_trigger(r) for r in conn.execute(q)]


__all__ = ["RECENT_PERIODS", "history", "status", "triggers"]

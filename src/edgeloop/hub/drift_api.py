"""The drift API: what the drift service judged, and a way to judge now.

``GET /v1/drift`` (per model version, fleet-wide and per node: the last judged period's
metric per feature, verdict, drifted features, streak; the last retraining trigger),
``GET /v1/drift/history?scope=&version=&limit=`` (judged periods, newest first),
``GET /v1/drift/triggers`` and ``POST /v1/drift/judge`` (judge the due periods at the
hub's time and deliver pending triggers).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from edgeloop.hub.drift_service import DriftService


def drift_router(service: DriftService) -> APIRouter:
    r = APIRouter(tags=["drift"])

    @r.get("/v1/drift")
    def drift_status() -> Any:
        """The latest judgement per (model version, scope), the streaks, the last trigger,
        refused sketches by field."""
        return service.status()

    @r.get("/v1/drift/history")
    def drift_history(
        scope: Annotated[str | None, Query(max_length=256)] = None,
        version: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> Any:
        """Judged periods, newest first (``scope`` ``*`` is the fleet)."""
        return service.history(scope, version, limit)

    @r.get("/v1/drift/triggers")
    def drift_triggers(limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> Any:
        """Retraining triggers, newest first (``delivered_ns``: when callbacks got it)."""
        from edgeloop.hub.drift_status import triggers

        return triggers(service, limit)

    @r.post("/v1/drift/judge")
    def drift_judge() -> Any:
        """Judge the periods that are due now; deliver pending triggers."""
        judged = service.judge_due()
        return {
            "judged": [
                {
                    "version": j.version,
                    "period": j.assessment.period,
                    "verdicts": j.assessment.verdicts(),
                    "triggers": [t.reason for t in j.triggers],
                }
                for j in judged
            ],
            "last_period": service.status()["last_period"],
        }

    return r


__all__ = ["drift_router"]

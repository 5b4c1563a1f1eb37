"""The feedback and retraining API: labels of events, retraining runs.

* ``PUT /v1/events/{id}/label`` ``{label: "true_alarm"|"false_alarm", actor, note}``:
  a new label (the previous one stays in the history); 404 unknown event, 422 bad label.
* ``GET /v1/labels?event_id=&label=&history=``: current labels (the newest per event),
  or every label with ``history=true``.
* ``POST /v1/retrain`` ``{reason, actor, since_ns, wait}``: one run
  (``edgeloop.hub.retrain``); with ``wait`` (the default) the answer is the run's result
  (201), else the run is queued in the service's worker thread (202); 409 while a run
  is in progress.
* ``GET /v1/retrain/runs?limit=``: the newest runs, oldest first.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from edgeloop.hub.api_common import HANDLED, Actor, error, error_responses, from_exception
from edgeloop.hub.labels import LabelStore
from edgeloop.hub.retrain import RetrainBusy, RetrainService


class LabelIn(BaseModel):
    """An operator's verdict on an event."""

    label: str = Field(description='"true_alarm" or "false_alarm"')
    actor: Actor
    note: str = ""


class RetrainIn(BaseModel):
    """Start a retraining run."""

    reason: str = Field(default="by hand", max_length=2000)
    actor: Actor = "operator"
    since_ns: int | None = Field(default=None, ge=0)
    wait: bool = True


def feedback_router(labels: LabelStore, retrain: RetrainService) -> APIRouter:
    """Routes of labels and retraining."""
    r = APIRouter(tags=["feedback"], responses=error_responses())
    clock = retrain.clock

    @r.put("/v1/events/{event_id}/label")
    def put_label(event_id: int, body: LabelIn) -> Any:
        """Label an event as a true or a false alarm (kept with who, when and a note)."""
        try:
            rec = labels.put(event_id, body.label, body.actor, body.note, clock())
        except HANDLED as exc:
            return from_exception(exc)
        return rec

    @r.get("/v1/labels")
    def list_labels(
        event_id: int | None = None,
        label: str | None = None,
        history: bool = False,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> Any:
        """Current labels (newest per event), or every label with ``history``."""
        try:
            found = labels.labels(event_id=event_id, label=label, history=history, limit=limit)
        except HANDLED as exc:
            return from_exception(exc)
        return {"labels": found}

    @r.post("/v1/retrain", status_code=201)
    def start(body: RetrainIn) -> Any:
        """Run retraining: build a training set from the nodes' samples, train, evaluate,
        register and start a canary rollout (or say why not)."""
        if not body.wait:
            retrain.submit(body.reason, body.actor, since_ns=body.since_ns)
            return JSONResponse(status_code=202, content={"queued": True})
        try:
            result = retrain.retrain(body.reason, body.actor, since_ns=body.since_ns)
        except RetrainBusy as exc:
            return error(409, "retrain", "busy", str(exc))
        return result.to_dict()

    @r.get("/v1/retrain/runs")
    def runs(limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> Any:
        """The newest runs, oldest first: reason, actor, outcome, version, rollout,
        metrics and data set."""
        return {"runs": retrain.runs(limit)}

    return r


__all__ = ["feedback_router"]

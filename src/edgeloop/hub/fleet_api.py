"""The fleet's HTTP API: desired state per group and node, actual state, fleet status,
rollouts.

A node's loop against the hub: ``GET /v1/nodes/{node}/desired`` (its document, with
the generation; ``ETag`` = the generation), reconcile, ``PUT /v1/nodes/{node}/actual``
(what it runs now; a node not yet in the fleet is recorded, and joins the fleet when it
names its ``group`` or an operator assigns it).
Operators set ``PUT /v1/groups/{group}`` (models by version or alias, pipeline config)
and ``PUT /v1/fleet/nodes/{node}`` (group, pins); ``GET /v1/fleet/status`` shows the
version drift. Rollouts: ``POST /v1/rollouts`` starts one, ``POST
/v1/rollouts/measurements`` adds edge evidence and judges it, ``POST /v1/rollouts/tick``
judges it at the hub's time.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from edgeloop.desired import ModelSlot
from edgeloop.errors import ConfigError
from edgeloop.hub.api_common import HANDLED, Actor, Name, error, error_responses, from_exception
from edgeloop.hub.control import ControlPlane
from edgeloop.hub.fleet_store import ActualReport, GroupRecord, NodeRecord, RolloutRecord
from edgeloop.rollout import EdgeMeasurement, Evidence, Gates, RolloutPolicy

Ref = Field(min_length=1, max_length=128)


class GroupIn(BaseModel):
    """A group's desired state: models by version or alias, and the pipeline config."""

    act: str = Ref
    shadow: str | None = None
    pipeline: dict[str, Any] = Field(default_factory=dict)
    actor: Actor = "operator"


class NodeIn(BaseModel):
    """A node's group, and optional pins (version or alias) overriding group and rollout."""

    group: str = Field(min_length=1, max_length=256)
    pin_act: str | None = None
    pin_shadow: str | None = None


class SlotIn(BaseModel):
    """A model a node holds: version, artifact id, size, mode."""

    version: str
    artifact: str
    size: int = Field(ge=0)
    mode: Literal["act", "shadow"] = "act"


class ArtifactIn(BaseModel):
    """An artifact on the node's disk: bytes held, verified, failed verifications."""

    artifact: str
    size: int = Field(ge=0)
    held: int = Field(ge=0, default=0)
    verified: bool = False
    failures: int = Field(ge=0, default=0)
    last_error: str = ""


class ActualIn(BaseModel):
    """A node's actual state: the ``edgeloop.actual/1`` document of the node's reconcile
    adapter (``edgeloop.node.reconcile.Reconciler.actual_doc``; fields the hub does not
    keep are accepted and ignored). ``group``: a node not yet in the fleet joins it."""

    model_config = ConfigDict(extra="ignore")

    node: str | None = None
    group: str | None = Field(default=None, min_length=1, max_length=256)
    generation: int = Field(ge=0)
    status: Literal["converged", "converging", "failed", "stale"]
    detail: str = ""
    active: list[SlotIn] = Field(default_factory=list)
    previous: SlotIn | None = None
    pipeline_digest: str = ""
    artifacts: list[ArtifactIn] = Field(default_factory=list)


class PolicyIn(BaseModel):
    """A rollout policy (``edgeloop.rollout.RolloutPolicy``); omitted fields default."""

    canary_fraction: float = 0.1
    steps: list[float] = Field(default_factory=lambda: [0.5])
    shadow_fraction: float = 1.0
    evidence: dict[str, Any] = Field(default_factory=dict)
    gates: dict[str, Any] = Field(default_factory=dict)
    stage_timeout_s: float | None = None
    seed: int = 0

    def build(self) -> RolloutPolicy:
        try:
            return RolloutPolicy(
                canary_fraction=self.canary_fraction,
                steps=tuple(self.steps),
                shadow_fraction=self.shadow_fraction,
                evidence=Evidence(**self.evidence),
                gates=Gates(**self.gates),
                stage_timeout_s=self.stage_timeout_s,
                seed=self.seed,
            )
        except TypeError as exc:
            raise ConfigError(f"policy: {exc}") from exc


class RolloutIn(BaseModel):
    """Start rolling ``challenger`` out."""

    challenger: str = Ref
    actor: Actor
    policy: PolicyIn = Field(default_factory=PolicyIn)


class MeasurementIn(BaseModel):
    """One node's ``EdgeMeasurement`` of challenger against champion over a period."""

    node: str
    version: str
    period_start_ns: int
    period_end_ns: int
    windows: int
    challenger_alerts: int
    champion_alerts: int
    agreements: int
    score_shift: float = 0.0
    latency_p99_ms: float = 0.0
    errors: int = 0


def rollout_out(rec: RolloutRecord) -> dict[str, Any]:
    """A rollout for the API."""
    r = rec.rollout
    return {
        "id": rec.id,
        "champion": r.champion,
        "challenger": r.challenger,
        "outcome": r.outcome,
        "stage": r.current.name,
        "cohort": list(r.cohort),
        "acting": list(r.acting),
        "peak_acting": r.peak_acting,
        "fleet_size": r.fleet_size,
        "evidence": dict(r.tally.summary()),
        "decisions": [d.to_dict() for d in r.decisions],
        "started_ns": rec.started_ns,
        "updated_ns": rec.updated_ns,
    }


def group_out(g: GroupRecord) -> dict[str, Any]:
    """A group's desired state for the API."""
    return {
        "group": g.name,
        "revision": g.revision,
        "act": g.act,
        "shadow": g.shadow,
        "pipeline": dict(g.pipeline),
        "actor": g.actor,
        "updated_ns": g.updated_ns,
    }


def node_out(n: NodeRecord) -> dict[str, Any]:
    """A fleet node for the API."""
    return {
        "node": n.node,
        "group": n.group,
        "revision": n.revision,
        "pin_act": n.pin_act,
        "pin_shadow": n.pin_shadow,
        "updated_ns": n.updated_ns,
    }


def fleet_router(plane: ControlPlane) -> APIRouter:
    """Routes of the fleet API over ``plane``."""
    r = APIRouter(tags=["fleet"], responses=error_responses())

    def guarded(fn: Any) -> Any:
        try:
            return fn()
        except HANDLED as exc:
            return from_exception(exc)

    @r.get("/v1/groups")
    def groups() -> Any:
        """Every group's desired state as set (references unresolved)."""
        return {"groups": [group_out(g) for g in plane.groups().values()]}

    @r.put("/v1/groups/{group}")
    def set_group(group: Name, body: GroupIn) -> Any:
        """Set a group's desired state (its revision grows)."""
        return guarded(
            lambda: group_out(
                plane.set_group(group, body.act, body.shadow, body.pipeline, body.actor)
            )
        )

    @r.put("/v1/fleet/nodes/{node}")
    def assign(node: Name, body: NodeIn) -> Any:
        """Put a node in a group (and pin it, optionally)."""
        return guarded(
            lambda: node_out(plane.assign(node, body.group, body.pin_act, body.pin_shadow))
        )

    @r.get("/v1/fleet/nodes")
    def fleet_nodes() -> Any:
        """Every fleet node: group and pins."""
        return {"nodes": [node_out(n) for n in plane.nodes().values()]}

    @r.get("/v1/nodes/{node}/desired", responses={200: {"description": "edgeloop.desired/1"}})
    def get_desired(node: Name) -> Any:
        """The node's desired-state document (canonical JSON; ``ETag``: its generation)."""

        def run() -> Any:
            doc = plane.desired(node)
            return Response(
                doc.canonical_bytes(),
                media_type="application/json",
                headers={"ETag": f'"{doc.generation}"'},
            )

        return guarded(run)

    @r.put("/v1/nodes/{node}/actual", status_code=204, response_class=Response, response_model=None)
    def put_actual(node: Name, body: ActualIn) -> Any:
        """Record what the node runs (and its reconcile status)."""

        def run() -> Any:
            if body.node is not None and body.node != node:
                return error(422, "node", "invalid", f"the document is for {body.node!r}")
            report = ActualReport(
                node=node,
                generation=body.generation,
                status=body.status,
                detail=body.detail,
                active=tuple(_slot(s) for s in body.active),
                previous=None if body.previous is None else _slot(body.previous),
                pipeline_digest=body.pipeline_digest,
                artifacts=tuple(a.model_dump() for a in body.artifacts),
                reported_ns=plane.clock(),
            )
            plane.report_actual(report, body.group)
            return Response(status_code=204)

        return guarded(run)

    @r.get("/v1/fleet/status")
    def status() -> Any:
        """Per node: desired vs actual version and generation, in sync or not, status."""
        return guarded(plane.status)

    @r.get("/v1/rollouts")
    def rollouts() -> Any:
        """Every rollout, oldest first."""
        return {"rollouts": [rollout_out(x) for x in plane.rollouts()]}

    @r.post("/v1/rollouts", status_code=201)
    def start_rollout(body: RolloutIn) -> Any:
        """Start a rollout of ``challenger`` over the nodes acting on the champion."""

        def run() -> Any:
            rec = plane.start_rollout(body.challenger, body.policy.build(), body.actor)
            return rollout_out(rec)

        return guarded(run)

    @r.post("/v1/rollouts/measurements")
    def measurements(body: list[MeasurementIn]) -> Any:
        """Add edge measurements to the running rollout and judge it (404: none runs)."""

        def run() -> Any:
            ms = [EdgeMeasurement(**m.model_dump()) for m in body]
            rec = plane.observe(ms)
            if rec is None:
                return error(404, "rollout", "unknown", "no rollout is running")
            return rollout_out(rec)

        return guarded(run)

    @r.post("/v1/rollouts/tick")
    def tick() -> Any:
        """Judge the running rollout at the hub's time (timeouts, evidence complete)."""

        def run() -> Any:
            rec = plane.tick()
            if rec is None:
                return error(404, "rollout", "unknown", "no rollout is running")
            return rollout_out(rec)

        return guarded(run)

    return r


def _slot(s: SlotIn) -> ModelSlot:
    return ModelSlot(s.version, s.artifact, s.size, s.mode)


__all__ = ["ActualIn", "GroupIn", "NodeIn", "PolicyIn", "fleet_router", "rollout_out"]

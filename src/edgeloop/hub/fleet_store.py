"""Persistence of the fleet's desired and actual state and of rollouts (SQLite or
PostgreSQL).

Functions take a connection, so that :mod:`edgeloop.hub.control` can combine several in
one control-plane transaction (:func:`edgeloop.hub.model_store.control`); they hold no
logic beyond reading and writing rows.

The desired-state **generation** (stamped on every per-node document) is
:func:`generation`: the registry's last event seq plus the revisions of every group and
node row plus the decisions of every rollout. Each term only grows (rows are never
deleted), so the sum grows whenever any input of a document changes, without a counter
row every writer would contend for. It may also grow when no document changed (e.g. a
version registered); a node then records the new generation and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from edgeloop.desired import ActualState, LocalArtifact, ModelSlot
from edgeloop.hub.model_tables import (
    fleet_groups,
    fleet_nodes,
    model_events,
    node_actual,
    rollouts,
)
from edgeloop.rollout import Rollout, restore, snapshot


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """A group's desired state as stored: ``act``/``shadow`` are versions or aliases."""

    name: str
    revision: int
    act: str
    shadow: str | None
    pipeline: Mapping[str, Any]
    actor: str
    updated_ns: int


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A fleet node: its group and pins (versions or aliases, or ``None``)."""

    node: str
    group: str
    revision: int
    pin_act: str | None
    pin_shadow: str | None
    updated_ns: int


@dataclass(frozen=True, slots=True)
class ActualReport:
    """What a node reported it runs (``PUT /v1/nodes/{node}/actual``).

    Attributes:
        node: the node.
        generation: the desired-state generation it applied last (0: none).
        status: its reconcile status (``converged``, ``converging``, ``failed``,
            ``stale``).
        detail: the reconcile report's detail.
        active: the models it runs.
        previous: the acting model kept for rollback.
        pipeline_digest: digest of its pipeline config.
        artifacts: per artifact it holds: ``artifact``, ``size``, ``held`` (bytes),
            ``verified``, ``failures``, ``last_error``.
        reported_ns: hub time of the report.
    """

    node: str
    generation: int
    status: str
    detail: str = ""
    active: tuple[ModelSlot, ...] = ()
    previous: ModelSlot | None = None
    pipeline_digest: str = ""
    artifacts: tuple[Mapping[str, Any], ...] = ()
    reported_ns: int = 0

    def to_actual_state(self) -> ActualState:
        """As the pure :class:`~edgeloop.desired.ActualState` (for ``version_drift``)."""
        local = {
            a["artifact"]: LocalArtifact(
                a["artifact"],
                int(a.get("size", 0)),
                ((0, int(a.get("held", 0))),),
                bool(a.get("verified", False)),
                int(a.get("failures", 0)),
                str(a.get("last_error", "")),
            )
            for a in self.artifacts
        }
        return ActualState(
            self.node,
            self.generation,
            self.active,
            self.previous,
            self.pipeline_digest,
            MappingProxyType(local),
        )


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    """A stored rollout."""

    id: int
    rollout: Rollout
    started_ns: int
    updated_ns: int


def slot_dict(s: ModelSlot) -> dict[str, Any]:
    """JSON form of a model slot."""
    return {"version": s.version, "artifact": s.artifact, "size": s.size, "mode": s.mode}


def slot_of(d: Mapping[str, Any]) -> ModelSlot:
    """Inverse of :func:`slot_dict`."""
    return ModelSlot(d["version"], d["artifact"], int(d["size"]), d.get("mode", "act"))


# -- groups and nodes ------------------------------------------------------------------------
def groups(conn: Connection) -> dict[str, GroupRecord]:
    """Every group's desired state, by name."""
    rows = conn.execute(select(fleet_groups).order_by(fleet_groups.c.name)).mappings()
    return {
        r["name"]: GroupRecord(
            r["name"],
            r["revision"],
            r["act"],
            r["shadow"],
            MappingProxyType(dict(r["pipeline"] or {})),
            r["actor"],
            r["updated_ns"],
        )
        for r in rows
    }


def put_group(
    conn: Connection,
    name: str,
    act: str,
    shadow: str | None,
    pipeline: Mapping[str, Any],
    actor: str,
    now_ns: int,
) -> GroupRecord:
    """Create or change a group (revision + 1). Call inside a control transaction."""
    old = groups(conn).get(name)
    values = {
        "act": act,
        "shadow": shadow,
        "pipeline": dict(pipeline),
        "actor": actor,
        "updated_ns": now_ns,
    }
    revision = 1 if old is None else old.revision + 1
    if old is None:
        conn.execute(insert(fleet_groups), [{"name": name, "revision": revision, **values}])
    else:
        conn.execute(
            update(fleet_groups)
            .where(fleet_groups.c.name == name)
            .values(revision=revision, **values)
        )
    return groups(conn)[name]


def nodes(conn: Connection, only: str | None = None) -> dict[str, NodeRecord]:
    """Every fleet node (or just ``only``, if it is one), by id."""
    q = select(fleet_nodes).order_by(fleet_nodes.c.node)
    if only is not None:
        q = q.where(fleet_nodes.c.node == only)
    rows = conn.execute(q).mappings()
    return {
        r["node"]: NodeRecord(
            r["node"],
            r["group_name"],
            r["revision"],
            r["pin_act"],
            r["pin_shadow"],
            r["updated_ns"],
        )
        for r in rows
    }


def put_node(
    conn: Connection,
    node: str,
    group: str,
    pin_act: str | None,
    pin_shadow: str | None,
    now_ns: int,
) -> NodeRecord:
    """Assign a node to a group with pins (revision + 1). Inside a control transaction."""
    old = nodes(conn).get(node)
    values = {
        "group_name": group,
        "pin_act": pin_act,
        "pin_shadow": pin_shadow,
        "updated_ns": now_ns,
    }
    if old is None:
        conn.execute(insert(fleet_nodes), [{"node": node, "revision": 1, **values}])
    else:
        conn.execute(
            update(fleet_nodes)
            .where(fleet_nodes.c.node == node)
            .values(revision=old.revision + 1, **values)
        )
    return nodes(conn)[node]


# -- actual state ----------------------------------------------------------------------------
def put_actual(conn: Connection, r: ActualReport) -> None:
    """Replace the node's actual state (an upsert: reports are frequent and need no
    control-plane lock)."""
    row = {
        "node": r.node,
        "generation": r.generation,
        "status": r.status,
        "detail": r.detail,
        "active": [slot_dict(s) for s in r.active],
        "previous": None if r.previous is None else slot_dict(r.previous),
        "pipeline_digest": r.pipeline_digest,
        "artifacts": [dict(a) for a in r.artifacts],
        "reported_ns": r.reported_ns,
    }
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(node_actual).values(row)
    stmt = stmt.on_conflict_do_update(
        index_elements=[node_actual.c.node],
        set_={k: stmt.excluded[k] for k in row if k != "node"},
    )
    conn.execute(stmt)


def actuals(conn: Connection) -> dict[str, ActualReport]:
    """Every node's last report, by node."""
    rows = conn.execute(select(node_actual).order_by(node_actual.c.node)).mappings()
    return {
        r["node"]: ActualReport(
            r["node"],
            r["generation"],
            r["status"],
            r["detail"],
            tuple(slot_of(s) for s in r["active"] or ()),
            None if r["previous"] is None else slot_of(r["previous"]),
            r["pipeline_digest"],
            tuple(r["artifacts"] or ()),
            r["reported_ns"],
        )
        for r in rows
    }


# -- rollouts --------------------------------------------------------------------------------
def insert_rollout(conn: Connection, r: Rollout, now_ns: int) -> int:
    """Store a new rollout; return its id."""
    result = conn.execute(
        insert(rollouts).returning(rollouts.c.id),
        [
            {
                "champion": r.champion,
                "challenger": r.challenger,
                "outcome": r.outcome,
                "decisions": len(r.decisions),
                "snapshot": snapshot(r),
                "started_ns": now_ns,
                "updated_ns": now_ns,
            }
        ],
    )
    return int(result.scalar_one())


def update_rollout(conn: Connection, rollout_id: int, r: Rollout, now_ns: int) -> None:
    """Store a rollout's new state."""
    conn.execute(
        update(rollouts)
        .where(rollouts.c.id == rollout_id)
        .values(
            outcome=r.outcome,
            decisions=len(r.decisions),
            snapshot=snapshot(r),
            updated_ns=now_ns,
        )
    )


def list_rollouts(conn: Connection, running_only: bool = False) -> list[RolloutRecord]:
    """Rollouts, oldest first (``running_only``: those still running)."""
    q = select(rollouts).order_by(rollouts.c.id)
    if running_only:
        q = q.where(rollouts.c.outcome == "running")
    return [
        RolloutRecord(
            r["id"],
            restore(r["snapshot"], f"rollouts[{r['id']}]"),
            r["started_ns"],
            r["updated_ns"],
        )
        for r in conn.execute(q).mappings()
    ]


# -- generation ------------------------------------------------------------------------------
def generation(conn: Connection) -> int:
    """The desired-state generation (see the module docstring)."""
    parts: Sequence[Any] = (
        select(func.coalesce(func.max(model_events.c.seq), 0)),
        select(func.coalesce(func.sum(fleet_groups.c.revision), 0)),
        select(func.coalesce(func.sum(fleet_nodes.c.revision), 0)),
        select(func.coalesce(func.sum(rollouts.c.decisions), 0)),
    )
    return sum(int(conn.execute(q).scalar_one()) for q in parts)


__all__ = [
    "ActualReport",
    "GroupRecord",
    "NodeRecord",
    "RolloutRecord",
    "actuals",
    "generation",
    "groups",
    "insert_rollout",
    "list_rollouts",
    "nodes",
    "put_actual",
    "put_group",
    "put_node",
    "slot_dict",
    "slot_of",
    "update_rollout",
]

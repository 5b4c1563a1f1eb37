"""Tables of the hub's control plane: model registry, artifacts, desired and actual state.

::

    model_events                 the registry's append-only event log (seq from 1, no gaps);
                                 the registry *is* its replay (``ModelRegistry.replay``):
                                 versions, signed manifests, aliases, deployment history
    artifacts ──< artifact_chunks  content-addressed model bytes (id ``sha256:<hex>``), in
                                 fixed chunks so a range request reads only what it covers
    fleet_groups                 desired state per node group (acting / shadow model as a
                                 version *or alias*, pipeline config, revision)
    fleet_nodes                  node → group, optional per-node pins (revision)
    node_actual                  the last actual state each node reported
    rollouts                     rollout snapshots (``edgeloop.rollout.snapshot``)

Artifacts live in the database, not in a directory beside it: hub replicas on other
machines share them with the registry that names them, one backup holds both, and a
version is registered only once its artifact is committed in the same database. Models are
small (kilobytes to a few megabytes); chunks of :data:`CHUNK` bytes keep every read
bounded on SQLite and PostgreSQL alike.

The tables register on :data:`edgeloop.hub.schema.metadata`, so the migrations (revision
0004 and later) and the drift check of ``tests/hub/test_migrations.py`` see them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from edgeloop.hub.schema import NAME, Base, IdType

CHUNK = 256 * 1024
"""Artifact bytes per ``artifact_chunks`` row."""

VERSION = 128
"""Maximum length of a version or alias name (``registry.manifest.NAME_PATTERN``)."""


class ModelEvent(Base):
    """One :class:`~edgeloop.registry.DeploymentEvent`; never updated or deleted.

    ``seq`` is the primary key: two writers cannot both append event *n* (the second
    insert fails and its transaction rolls back). ``detail`` holds, for ``registered``,
    the canonical manifest text and the signature; for ``rollout``, the decision.
    """

    __tablename__ = "model_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at_ns: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(VERSION))
    actor: Mapped[str] = mapped_column(String(NAME))
    reason: Mapped[str] = mapped_column(Text, default="")
    alias: Mapped[str | None] = mapped_column(String(VERSION))
    previous: Mapped[str | None] = mapped_column(String(VERSION))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Artifact(Base):
    """A model artifact, addressed by its content (``sha256:<hex>``, 71 characters)."""

    __tablename__ = "artifacts"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    chunk_size: Mapped[int] = mapped_column(Integer)
    created_ns: Mapped[int] = mapped_column(BigInteger)


class ArtifactChunk(Base):
    """Bytes ``[idx * chunk_size, (idx + 1) * chunk_size)`` of an artifact."""

    __tablename__ = "artifact_chunks"
    __table_args__ = (ForeignKeyConstraint(["artifact"], ["artifacts.id"]),)

    artifact: Mapped[str] = mapped_column(String(80), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class FleetGroup(Base):
    """Desired state of a node group; ``act`` and ``shadow`` are versions or aliases
    (resolved when a document is served, so a group on ``champion`` follows promotions).
    ``revision`` grows with every change."""

    __tablename__ = "fleet_groups"

    name: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)
    act: Mapped[str] = mapped_column(String(VERSION))
    shadow: Mapped[str | None] = mapped_column(String(VERSION))
    pipeline: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[str] = mapped_column(String(NAME))
    updated_ns: Mapped[int] = mapped_column(BigInteger)


class FleetNode(Base):
    """A node of the fleet: its group and optional pins (a version or alias that
    overrides the group and any rollout for this node). ``revision`` grows with every
    change."""

    __tablename__ = "fleet_nodes"

    node: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    group_name: Mapped[str] = mapped_column(String(NAME))
    revision: Mapped[int] = mapped_column(BigInteger)
    pin_act: Mapped[str | None] = mapped_column(String(VERSION))
    pin_shadow: Mapped[str | None] = mapped_column(String(VERSION))
    updated_ns: Mapped[int] = mapped_column(BigInteger)


class NodeActual(Base):
    """The actual state a node reported last (``PUT /v1/nodes/{node}/actual``)."""

    __tablename__ = "node_actual"

    node: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    previous: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    pipeline_digest: Mapped[str] = mapped_column(String(64), default="")
    artifacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    reported_ns: Mapped[int] = mapped_column(BigInteger)


class RolloutRow(Base):
    """A rollout: its snapshot (``edgeloop.rollout.snapshot``) after every change.
    ``decisions`` counts its decisions (part of the desired-state generation)."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    champion: Mapped[str] = mapped_column(String(VERSION))
    challenger: Mapped[str] = mapped_column(String(VERSION))
    outcome: Mapped[str] = mapped_column(String(16))
    decisions: Mapped[int] = mapped_column(BigInteger)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_ns: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


model_events = _table(ModelEvent)
artifacts = _table(Artifact)
artifact_chunks = _table(ArtifactChunk)
fleet_groups = _table(FleetGroup)
fleet_nodes = _table(FleetNode)
node_actual = _table(NodeActual)
rollouts = _table(RolloutRow)

__all__ = [
    "CHUNK",
    "Artifact",
    "ArtifactChunk",
    "FleetGroup",
    "FleetNode",
    "ModelEvent",
    "NodeActual",
    "RolloutRow",
    "artifact_chunks",
    "artifacts",
    "fleet_groups",
    "fleet_nodes",
    "model_events",
    "node_actual",
    "rollouts",
]

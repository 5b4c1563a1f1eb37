"""Desired-state documents: what a node group (and each node) should run.

The operator (or the retraining service) sets a :class:`GroupState` per node group: the
model acting, optionally one in shadow, and the pipeline config, with a revision that
grows on every change. While a rollout runs, it overrides the models of the nodes it
covers (:func:`edgeloop.rollout.desired`). :func:`resolve` combines both into one
:class:`DesiredState` per node, stamped with the hub's ``generation`` (a counter that
grows whenever any node's document changes), which is what travels down and what the
node reconciles against (:mod:`edgeloop.desired.reconciler`). A node ignores a document
older than the generation it already applied, so late or duplicated deliveries are
harmless.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from edgeloop.errors import ConfigError
from edgeloop.registry.manifest import canonical_json
from edgeloop.rollout.cohort import Fleet
from edgeloop.rollout.machine import NodeModels
from edgeloop.rollout.policy import Mode

DESIRED_SCHEMA = "edgeloop.desired/1"


@dataclass(frozen=True, slots=True)
class ModelSlot:
    """A model a node should hold: version, artifact id and size, and its mode."""

    version: str
    artifact: str
    size: int
    mode: Mode = "act"

    def __post_init__(self) -> None:
        if self.mode not in ("act", "shadow"):
            raise ConfigError(
                f"models.{self.version}.mode: expected act or shadow, got {self.mode!r}"
            )
        if not self.artifact.startswith("sha256:") or self.size < 0:
            raise ConfigError(
                f"models.{self.version}: artifact must be a sha256 id and size >= 0, got "
                f"{self.artifact!r}, {self.size}"
            )


@dataclass(frozen=True, slots=True)
class GroupState:
    """The desired state of one node group, as an operator sets it.

    Attributes:
        group: the node group.
        revision: grows with every change of this group's state.
        models: the acting model and an optional shadow one (versions).
        pipeline: the pipeline config (JSON-able; e.g. a resolved spec).
    """

    group: str
    revision: int
    models: NodeModels
    pipeline: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class DesiredState:
    """What one node should run.

    Attributes:
        node: the node it is for.
        generation: the hub's desired-state generation (grows on every change).
        models: exactly one ``act`` slot and at most one ``shadow`` slot.
        pipeline: the pipeline config.
    """

    node: str
    generation: int
    models: tuple[ModelSlot, ...]
    pipeline: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        modes = [m.mode for m in self.models]
        if modes.count("act") != 1 or modes.count("shadow") > 1:
            raise ConfigError(
                f"desired[{self.node}].models: need one act slot and at most one shadow "
                f"slot, got {modes}"
            )
        versions = [m.version for m in self.models]
        if len(set(versions)) != len(versions):
            raise ConfigError(f"desired[{self.node}].models: a version appears twice: {versions}")
        if self.generation < 0:
            raise ConfigError(f"desired[{self.node}].generation: must be >= 0")
        object.__setattr__(self, "models", tuple(sorted(self.models, key=lambda m: m.mode)))
        object.__setattr__(self, "pipeline", MappingProxyType(dict(self.pipeline)))

    @property
    def acting(self) -> ModelSlot:
        """The slot whose decisions are acted on."""
        return next(m for m in self.models if m.mode == "act")

    @property
    def shadow(self) -> ModelSlot | None:
        """The shadow slot, if any."""
        return next((m for m in self.models if m.mode == "shadow"), None)

    @property
    def pipeline_digest(self) -> str:
        """sha256 of the pipeline config's canonical JSON."""
        return pipeline_digest(self.pipeline)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "schema": DESIRED_SCHEMA,
            "node": self.node,
            "generation": self.generation,
            "models": [
                {"version": m.version, "artifact": m.artifact, "size": m.size, "mode": m.mode}
                for m in self.models
            ],
            "pipeline": dict(self.pipeline),
        }

    def canonical_bytes(self) -> bytes:
        """Deterministic JSON bytes (what the hub sends, and could sign)."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "desired state") -> DesiredState:
        """Parse a document; raise :class:`ConfigError` naming the field."""
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{source}: not JSON ({exc})") from exc
        if not isinstance(obj, dict) or obj.get("schema") != DESIRED_SCHEMA:
            raise ConfigError(f"{source}: schema must be {DESIRED_SCHEMA!r}")
        try:
            slots = tuple(
                ModelSlot(m["version"], m["artifact"], int(m["size"]), m["mode"])
                for m in obj["models"]
            )
            return cls(obj["node"], int(obj["generation"]), slots, obj.get("pipeline") or {})
        except KeyError as exc:
            raise ConfigError(f"{source}: missing field {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: malformed ({exc})") from exc


def pipeline_digest(pipeline: Mapping[str, Any]) -> str:
    """sha256 (hex) of a pipeline config's canonical JSON."""
    return hashlib.sha256(canonical_json(dict(pipeline))).hexdigest()


ArtifactRef = tuple[str, int]
"""(artifact id, size) of a version."""


def resolve(
    groups: Mapping[str, GroupState],
    fleet: Fleet,
    artifacts: Mapping[str, ArtifactRef],
    generation: int,
    rollout: Mapping[str, NodeModels] | None = None,
) -> dict[str, DesiredState]:
    """Each fleet node's desired state.

    Args:
        groups: group name → its state; every node's group must have one.
        fleet: the nodes and their groups.
        artifacts: version → (artifact id, size), from the registry.
        generation: the generation to stamp.
        rollout: node → models of a running (or finished) rollout; overrides the group's
            models for the nodes it names.

    Raises:
        ConfigError: a node's group has no state, or a version has no artifact (both
            named).
    """
    out: dict[str, DesiredState] = {}
    for info in fleet.nodes:
        gs = groups.get(info.group)
        if gs is None:
            raise ConfigError(
                f"groups: node {info.node!r} is in group {info.group!r}, which has no desired "
                f"state (groups {sorted(groups)})"
            )
        models = (rollout or {}).get(info.node, gs.models)
        slots = []
        for version, mode in ((models.act, "act"), (models.shadow, "shadow")):
            if version is None:
                continue
            ref = artifacts.get(version)
            if ref is None:
                raise ConfigError(
                    f"artifacts: no artifact for version {version!r} (node {info.node})"
                )
            slots.append(ModelSlot(version, ref[0], ref[1], mode))  # type: ignore[arg-type]
        out[info.node] = DesiredState(info.node, generation, tuple(slots), gs.pipeline)
    return out

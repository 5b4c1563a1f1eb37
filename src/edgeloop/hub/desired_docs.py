"""Per-node desired-state documents from the registry, the groups, the pins and a
running rollout (pure).

A group (or a pin) names its models by version *or alias*; :func:`documents` resolves
them through the registry when a document is served, so groups on ``champion`` follow
promotions and rollbacks. Precedence per node: a pin, then a running rollout (for the
nodes it covers), then the group.
"""

from __future__ import annotations

from collections.abc import Mapping

from edgeloop.desired import DesiredState, GroupState, resolve
from edgeloop.hub.fleet_store import GroupRecord, NodeRecord
from edgeloop.registry import ModelRegistry, RegistryError
from edgeloop.rollout import Fleet, NodeInfo, NodeModels, Rollout, desired


class NotFound(RegistryError):
    """A version, alias, artifact, node or rollout does not exist (HTTP 404)."""


def exists(reg: ModelRegistry, ref: str) -> bool:
    """Whether ``ref`` names a version or an alias."""
    return ref in reg.versions or ref in reg.aliases


def version_of(reg: ModelRegistry, ref: str, what: str = "version") -> str:
    """The version ``ref`` names; :class:`NotFound` naming ``what`` if none."""
    if not exists(reg, ref):
        raise NotFound(
            f"{what}: no version or alias {ref!r} (versions {sorted(reg.versions)}, "
            f"aliases {dict(sorted(reg.aliases.items()))})"
        )
    return reg.resolve(ref).version


def documents(
    reg: ModelRegistry,
    groups: Mapping[str, GroupRecord],
    nodes: Mapping[str, NodeRecord],
    running: Rollout | None,
    generation: int,
) -> dict[str, DesiredState]:
    """The desired state of every fleet node whose group has one (pure).

    Group and pin references resolve through the registry's aliases. A shadow reference
    that names nothing (e.g. ``challenger`` after a promotion cleared it), or the acting
    version itself, means no shadow. Nodes of a group without desired state get no
    document (:func:`missing_group` says why), and do not hold up the others'.

    Raises:
        NotFound: a node's acting reference names no version (the group or node named).
    """

    def models(act: str, shadow: str | None, where: str) -> NodeModels:
        a = version_of(reg, act, f"{where}.act")
        s = reg.resolve(shadow).version if shadow is not None and exists(reg, shadow) else None
        return NodeModels(a, None if s == a else s)

    states = {
        g.name: GroupState(
            g.name, g.revision, models(g.act, g.shadow, f"groups[{g.name}]"), g.pipeline
        )
        for g in groups.values()
    }
    fleet = Fleet(tuple(NodeInfo(n.node, n.group) for n in nodes.values() if n.group in states))
    overrides: dict[str, NodeModels] = {}
    if running is not None and running.outcome == "running":
        covered = Fleet(tuple(i for i in fleet.nodes if i.node in set(running.order)))
        overrides.update(desired(running, covered))
    for n in nodes.values():
        if n.pin_act is not None and n.group in states:
            overrides[n.node] = models(n.pin_act, n.pin_shadow, f"nodes[{n.node}].pin")
    artifacts = {v: (m.manifest.artifact, m.manifest.size) for v, m in reg.versions.items()}
    return resolve(states, fleet, artifacts, generation, overrides)


def missing_group(node: NodeRecord, groups: Mapping[str, GroupRecord]) -> NotFound:
    """The error for a node whose group has no desired state (what to do included)."""
    return NotFound(
        f"groups: node {node.node!r} is in group {node.group!r}, which has no desired state "
        f"yet (groups {sorted(groups)}); set it with PUT /v1/groups/{node.group}"
    )


__all__ = ["NotFound", "documents", "exists", "missing_group", "version_of"]

"""The fleet as a rollout sees it, and the seeded order in which nodes join a rollout.

:func:`rollout_order` is a permutation of the fleet that depends only on the seed, the
node ids and their groups (not on the order the fleet was listed in): nodes are ranked by
``sha256(seed, node)`` within their group and the groups are interleaved round-robin, so
every cohort prefix spreads over the groups (a canary of 3 nodes on 3 production lines
puts one on each). Each stage of a rollout takes the first nodes of this order that are
online, keeping those already in: cohorts only grow.

>>> fleet = Fleet.of([("a1", "line-a"), ("a2", "line-a"), ("b1", "line-b"), ("b2", "line-b")])
>>> order = rollout_order(fleet, seed=1)
>>> sorted(fleet.group_of(n) for n in order[:2])
['line-a', 'line-b']
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from edgeloop.errors import ConfigError


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node: its id, its group (e.g. a production line) and whether it is connected."""

    node: str
    group: str = ""
    online: bool = True


@dataclass(frozen=True, slots=True)
class Fleet:
    """The nodes a rollout covers, sorted by id; ids are unique."""

    nodes: tuple[NodeInfo, ...]

    def __post_init__(self) -> None:
        nodes = tuple(sorted(self.nodes, key=lambda n: n.node))
        ids = [n.node for n in nodes]
        dup = sorted(i for i, k in Counter(ids).items() if k > 1)  # O(n): fleets are large
        if dup:
            raise ConfigError(f"fleet: duplicate node ids {dup}")
        bad = [i for i in ids if not isinstance(i, str) or not i]
        if bad:
            raise ConfigError(f"fleet: node ids must be non-empty strings, got {bad!r}")
        object.__setattr__(self, "nodes", nodes)

    @classmethod
    def of(cls, nodes: Iterable[str | tuple[str, str] | tuple[str, str, bool]]) -> Fleet:
        """From ids, ``(id, group)`` or ``(id, group, online)`` tuples."""
        out = []
        for n in nodes:
            out.append(NodeInfo(n) if isinstance(n, str) else NodeInfo(*n))
        return cls(tuple(out))

    @property
    def ids(self) -> tuple[str, ...]:
        """Node ids, sorted."""
        return tuple(n.node for n in self.nodes)

    @property
    def online(self) -> frozenset[str]:
        """Ids of the connected nodes."""
        return frozenset(n.node for n in self.nodes if n.online)

    def group_of(self, node: str) -> str:
        """The group of ``node``."""
        for n in self.nodes:
            if n.node == node:
                return n.group
        raise ConfigError(f"node: {node!r} is not in the fleet")

    def with_online(self, online: Iterable[str]) -> Fleet:
        """The same nodes with exactly ``online`` connected."""
        on = set(online)
        return Fleet(tuple(NodeInfo(n.node, n.group, n.node in on) for n in self.nodes))

    def __len__(self) -> int:
        return len(self.nodes)


def _rank(seed: int, node: str) -> str:
    return hashlib.sha256(f"{seed}\0{node}".encode()).hexdigest()


def rollout_order(fleet: Fleet, seed: int) -> tuple[str, ...]:
    """The fleet's nodes in the order they join a rollout (see the module docstring)."""
    groups: dict[str, list[str]] = {}
    for n in fleet.nodes:
        groups.setdefault(n.group, []).append(n.node)
    lanes = [sorted(ids, key=lambda i: _rank(seed, i)) for ids in groups.values()]
    lanes.sort(key=lambda lane: _rank(seed, lane[0]))
    order: list[str] = []
    for i in range(max((len(lane) for lane in lanes), default=0)):
        order.extend(lane[i] for lane in lanes if i < len(lane))
    return tuple(order)


def cohort_size(fraction: float, fleet_size: int) -> int:
    """Nodes a stage of ``fraction`` may hold: ``floor(fraction * fleet_size)``.

    Rounding down is what keeps "at most the canary fraction" true on small fleets.
    """
    # round(): 0.3 * 10 is 2.9999999999999996 in floating point, not 3 nodes fewer.
    return math.floor(round(fraction * fleet_size, 9))


def grow_cohort(
    current: Iterable[str], order: Iterable[str], online: frozenset[str], size: int
) -> tuple[str, ...]:
    """``current`` plus the first online nodes of ``order`` until it holds ``size`` nodes.

    Returns the cohort in rollout order; it never shrinks (a member that went offline
    stays in and follows the rollout when it reconnects).
    """
    members = list(dict.fromkeys(current))
    have = set(members)
    for node in order:
        if len(members) >= size:
            break
        if node in online and node not in have:
            members.append(node)
            have.add(node)
    return tuple(members)

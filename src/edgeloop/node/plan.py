"""A node's plan: its validated config with everything resolved, as plain data.

A launcher (``edgeloop node run``, ``python -m edgeloop.node --config``, the demo, the
hub's desired-state service) validates a node config and its pipeline spec with
pydantic, resolves the pipeline preset and the simulated floor, and hands the node the
result as JSON (:func:`plan_to_json`). The node rebuilds it with :func:`plan_from_json`
from frozen dataclasses only, so a running gateway imports neither pydantic nor yaml
(``tests/node/test_node_footprint.py``).

A plan is trusted: it is what validation produced. Nothing in it is looked up again
(no preset by name, no ``generate:`` floor), so the node runs exactly what was checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edgeloop._plain import from_plain, to_plain
from edgeloop.errors import ConfigError
from edgeloop.node.config import NodeConfig, SimSourceConfig
from edgeloop.pipeline.plan import PipelinePlan
from edgeloop.sim.config import FactoryConfig

__all__ = ["PLAN_FORMAT", "NodePlan", "make_plan", "plan_from_json", "plan_to_json"]

PLAN_FORMAT = "edgeloop.node-plan/1"


@dataclass(frozen=True, kw_only=True)
class NodePlan:
    """What a node runs.

    Attributes:
        config: the validated node config (``config.pipeline`` says where the spec
            came from; ``pipeline`` is what it resolved to).
        pipeline: the validated pipeline spec.
        floor: the floor of the config's simulator source, if it has one.
    """

    config: NodeConfig
    pipeline: PipelinePlan
    floor: FactoryConfig | None = None

    @property
    def sim(self) -> SimSourceConfig | None:
        """The simulator source of the config, if any (at most one per node)."""
        return next((s for s in self.config.sources if isinstance(s, SimSourceConfig)), None)


def make_plan(config: NodeConfig) -> NodePlan:
    """Resolve and validate what ``config`` refers to (a launcher's step: uses pydantic).

    Raises:
        ConfigError: the pipeline spec, the simulated floor or a fault is invalid; the
            message names the field.
    """
    from edgeloop.node.build import resolve_spec
    from edgeloop.pipeline.plan import plan_of
    from edgeloop.sim.build import build_sim, resolve_floor

    pipeline = plan_of(resolve_spec(config.pipeline))
    floor = None
    for i, src in enumerate(config.sources):
        if isinstance(src, SimSourceConfig):
            floor = resolve_floor(src.factory, where=f"sources.{i}.factory")
            build_sim(floor, src.faults, seed=src.seed, start_ns=0)  # checks the faults
    return NodePlan(config=config, pipeline=pipeline, floor=floor)


def plan_to_json(plan: NodePlan) -> str:
    """The plan as JSON text (what a launcher writes for a node process)."""
    return json.dumps({"format": PLAN_FORMAT, **to_plain(plan)})


def plan_from_json(text: str, where: str = "plan") -> NodePlan:
    """Rebuild a plan written by :func:`plan_to_json` (standard library only)."""
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{where}: not a node plan (format {got!r}, expected {PLAN_FORMAT!r})")
    del data["format"]
    try:
        plan: NodePlan = from_plain(NodePlan, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: malformed node plan ({exc!r})") from None
    return plan

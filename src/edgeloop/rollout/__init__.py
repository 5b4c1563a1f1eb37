"""Progressive rollout of a challenger model: shadow, canary, steps, promote or roll back.

Pure and deterministic (:mod:`edgeloop.rollout.machine`): the hub feeds it the fleet,
the per-node edge measurements and the time; it returns each node's desired models and
the decisions with their reasons. Safe to import anywhere (no I/O, no heavy imports).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeloop._lazy import lazy_exports

if TYPE_CHECKING:
    from edgeloop.rollout.cohort import Fleet, NodeInfo, cohort_size, rollout_order
    from edgeloop.rollout.comparison import ks_distance, measure
    from edgeloop.rollout.machine import (
        Decision,
        NodeModels,
        Rollout,
        RolloutError,
        desired,
        observe,
        start,
        tick,
    )
    from edgeloop.rollout.policy import (
        EdgeMeasurement,
        Evidence,
        GateResult,
        Gates,
        RolloutPolicy,
        Stage,
        Tally,
        evaluate,
    )
    from edgeloop.rollout.serialise import restore, snapshot

_WHERE = {
    "Fleet": "cohort",
    "NodeInfo": "cohort",
    "cohort_size": "cohort",
    "rollout_order": "cohort",
    "ks_distance": "comparison",
    "measure": "comparison",
    "Decision": "machine",
    "NodeModels": "machine",
    "Rollout": "machine",
    "RolloutError": "machine",
    "desired": "machine",
    "observe": "machine",
    "start": "machine",
    "tick": "machine",
    "EdgeMeasurement": "policy",
    "Evidence": "policy",
    "GateResult": "policy",
    "Gates": "policy",
    "RolloutPolicy": "policy",
    "Stage": "policy",
    "Tally": "policy",
    "evaluate": "policy",
    "restore": "serialise",
    "snapshot": "serialise",
}

__all__ = [
    "Decision",
    "EdgeMeasurement",
    "Evidence",
    "Fleet",
    "GateResult",
    "Gates",
    "NodeInfo",
    "NodeModels",
    "Rollout",
    "RolloutError",
    "RolloutPolicy",
    "Stage",
    "Tally",
    "cohort_size",
    "desired",
    "evaluate",
    "ks_distance",
    "measure",
    "observe",
    "restore",
    "rollout_order",
    "snapshot",
    "start",
    "tick",
]

__getattr__, __dir__ = lazy_exports("edgeloop.rollout", _WHERE, globals())

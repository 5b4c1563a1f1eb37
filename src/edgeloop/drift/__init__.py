"""Drift: compact mergeable sketches from the edge, compared with the training data.

Gateways summarise features and scores per period in fixed-edge histogram sketches
(:class:`Sketch`, edges from the training data's quantiles, carried in the manifest);
the hub merges them per node and fleet-wide, measures PSI, KS and Wasserstein-1 against
the reference (:func:`compare_many`), and triggers retraining when drift persists
(:func:`assess`, :func:`update`). Pure numpy: safe to import on a gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeloop._lazy import lazy_exports

if TYPE_CHECKING:
    from edgeloop.drift.monitor import (
        FLEET,
        DriftAssessment,
        DriftConfig,
        MonitorState,
        RetrainTrigger,
        assess,
        update,
    )
    from edgeloop.drift.sketch import Sketch, SketchError, merge_all, quantile_edges
    from edgeloop.drift.stats import DriftStats, compare, compare_many

_WHERE = {
    "FLEET": "monitor",
    "DriftAssessment": "monitor",
    "DriftConfig": "monitor",
    "MonitorState": "monitor",
    "RetrainTrigger": "monitor",
    "assess": "monitor",
    "update": "monitor",
    "Sketch": "sketch",
    "SketchError": "sketch",
    "merge_all": "sketch",
    "quantile_edges": "sketch",
    "DriftStats": "stats",
    "compare": "stats",
    "compare_many": "stats",
}

__all__ = [
    "FLEET",
    "DriftAssessment",
    "DriftConfig",
    "DriftStats",
    "MonitorState",
    "RetrainTrigger",
    "Sketch",
    "SketchError",
    "assess",
    "compare",
    "compare_many",
    "merge_all",
    "quantile_edges",
    "update",
]

__getattr__, __dir__ = lazy_exports("edgeloop.drift", _WHERE, globals())

"""Judge drift per feature, per node and fleet-wide, and trigger retraining when it persists.

Two pure steps, run by the hub once per period:

1. :func:`assess` compares each node's sketch of the period, and their merge (the fleet),
   with the model's reference sketch (:mod:`edgeloop.drift.stats`). A (scope, feature) is
   *judged* when it has at least ``min_samples`` rows and *drifted* when the configured
   metric is above its threshold. A scope (a node, or the fleet) drifts when at least
   ``min_features`` of its features drift; it is judged when any of its features is.
2. :func:`update` carries a streak per scope across periods: a drifted period adds one,
   a judged calm period resets it, a period without enough data leaves it as it is (a
   quiet night neither confirms nor refutes drift). When the streak of a triggering scope
   reaches ``persistence`` a :class:`RetrainTrigger` is emitted, the streak restarts, and
   no new trigger follows for ``cooldown`` periods. A period at or before the last one
   seen is ignored, so replaying the same assessments is harmless.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

import numpy as np
import numpy.typing as npt

from edgeloop.drift.sketch import Sketch, merge_all
from edgeloop.drift.stats import METRICS, DriftStats, compare, compare_many
from edgeloop.errors import ConfigError

FLEET = "*"
"""Scope name of the fleet-wide judgement."""

Metric = Literal["psi", "ks", "w1"]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """Thresholds and persistence of drift detection.

    Attributes:
        metric: ``"psi"``, ``"ks"`` or ``"w1"`` (see :mod:`edgeloop.drift.stats`).
        threshold: a feature drifts when its metric is above this.
        min_samples: rows a (scope, feature) needs in a period to be judged at all.
        min_features: drifted features that make a scope drift.
        persistence: consecutive drifted periods before retraining is triggered.
        cooldown: periods after a trigger during which no other trigger is emitted.
        trigger_on: ``"fleet"`` (the merged fleet must drift) or ``"node"`` (any node).
    """

    metric: Metric = "psi"
    threshold: float = 0.25
    min_samples: int = 200
    min_features: int = 1
    persistence: int = 3
    cooldown: int = 0
    trigger_on: Literal["fleet", "node"] = "fleet"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"drift.metric: unknown {self.metric!r}; expected one of {METRICS}")
        if not (np.isfinite(self.threshold) and self.threshold > 0):
            raise ConfigError(f"drift.threshold: must be a positive number, got {self.threshold}")
        for name in ("min_samples", "min_features", "persistence"):
            if getattr(self, name) < 1:
                raise ConfigError(f"drift.{name}: must be >= 1, got {getattr(self, name)}")
        if self.cooldown < 0:
            raise ConfigError(f"drift.cooldown: must be >= 0, got {self.cooldown}")
        if self.trigger_on not in ("fleet", "node"):
            raise ConfigError(
                f"drift.trigger_on: expected 'fleet' or 'node', got {self.trigger_on!r}"
            )


@dataclass(frozen=True, slots=True, eq=False)
class DriftAssessment:
    """One period's drift, per (node, feature) and fleet-wide.

    Attributes:
        period: period index (e.g. ``start_ns // period_ns``).
        nodes: node ids, the rows of the per-node arrays (sorted).
        nodes_stats: ``(m, k)`` statistics per node.
        fleet_stats: ``(k,)`` statistics of the merged sketches.
        node_judged, node_drifted: ``(m, k)`` masks.
        fleet_judged, fleet_drifted: ``(k,)`` masks.
        config: the configuration used.
    """

    period: int
    nodes: tuple[str, ...]
    node_stats: DriftStats
    fleet_stats: DriftStats
    node_judged: BoolArray
    node_drifted: BoolArray
    fleet_judged: BoolArray
    fleet_drifted: BoolArray
    config: DriftConfig

    @property
    def names(self) -> tuple[str, ...]:
        """Feature names, the columns of every array."""
        return self.fleet_stats.names

    def verdicts(self) -> dict[str, bool | None]:
        """Per scope (each node, and :data:`FLEET`): drifted, calm, or None (not judged)."""
        cfg = self.config
        out: dict[str, bool | None] = {}
        for i, node in enumerate(self.nodes):
            out[node] = _verdict(self.node_judged[i], self.node_drifted[i], cfg.min_features)
        out[FLEET] = _verdict(self.fleet_judged, self.fleet_drifted, cfg.min_features)
        return out

    def drifted_features(self, scope: str = FLEET) -> tuple[str, ...]:
        """Names of the features that drifted in ``scope`` (a node id or :data:`FLEET`)."""
        if scope == FLEET:
            mask = self.fleet_drifted
        elif scope in self.nodes:
            mask = self.node_drifted[self.nodes.index(scope)]
        else:
            raise ConfigError(f"scope: unknown {scope!r}; nodes are {list(self.nodes)}")
        return tuple(n for n, d in zip(self.names, mask, strict=True) if d)

    def values(self, scope: str = FLEET) -> dict[str, float]:
        """The configured metric per feature for ``scope`` (NaN where there was no data)."""
        if scope == FLEET:
            row = self.fleet_stats.metric(self.config.metric)
        else:
            row = self.node_stats.metric(self.config.metric)[self.nodes.index(scope)]
        return {n: float(v) for n, v in zip(self.names, row, strict=True)}


def _verdict(judged: BoolArray, drifted: BoolArray, min_features: int) -> bool | None:
    if not judged.any():
        return None
    return int(np.count_nonzero(drifted)) >= min_features


def assess(
    reference: Sketch, sketches: Mapping[str, Sketch], period: int, config: DriftConfig
) -> DriftAssessment:
    """Judge one period of per-node sketches against ``reference``.

    Args:
        reference: the training data's sketch (from the model's manifest).
        sketches: node id → that node's sketch of the period (already merged if it sent
            several); nodes that sent nothing are simply absent.
        period: the period index.
        config: thresholds.

    Raises:
        SketchError: a sketch's names or edges differ from the reference's.
    """
    nodes = tuple(sorted(sketches))
    for node in nodes:
        reference.compatible(sketches[node], f"sketches[{node!r}]")
    per_node = compare_many(reference, [sketches[n] for n in nodes])
    fleet = (
        compare(reference, merge_all(sketches[n] for n in nodes))
        if nodes
        else compare(reference, Sketch.empty(reference.names, reference.edges))
    )

    def judge(stats: DriftStats) -> tuple[BoolArray, BoolArray]:
        value = stats.metric(config.metric)
        judged = (stats.n >= config.min_samples) & np.isfinite(value)
        with np.errstate(invalid="ignore"):
            return judged, judged & (value > config.threshold)

    nj, nd = judge(per_node)
    fj, fd = judge(fleet)
    return DriftAssessment(period, nodes, per_node, fleet, nj, nd, fj, fd, config)


@dataclass(frozen=True, slots=True)
class RetrainTrigger:
    """Drift persisted long enough: retrain.

    Attributes:
        period: the period that completed the streak.
        scope: :data:`FLEET` or the node id whose drift persisted.
        streak: consecutive drifted periods.
        features: the features that drifted in that last period.
        values: the metric per drifted feature in that period.
        reason: a sentence for the log and the deployment record.
    """

    period: int
    scope: str
    streak: int
    features: tuple[str, ...]
    values: Mapping[str, float]
    reason: str


@dataclass(frozen=True, slots=True)
class MonitorState:
    """Streaks between periods (see :func:`update`).

    Attributes:
        streaks: scope → consecutive drifted periods.
        last_period: the last period taken into account.
        quiet_until: no trigger is emitted for periods up to this one (cooldown).
        triggers: every trigger emitted so far, oldest first.
    """

    streaks: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    last_period: int | None = None
    quiet_until: int | None = None
    triggers: tuple[RetrainTrigger, ...] = ()


def update(
    state: MonitorState, assessment: DriftAssessment
) -> tuple[MonitorState, tuple[RetrainTrigger, ...]]:
    """Advance the streaks by one assessed period; return the new state and any trigger."""
    cfg = assessment.config
    p = assessment.period
    if state.last_period is not None and p <= state.last_period:
        return state, ()
    streaks = dict(state.streaks)
    for scope, verdict in assessment.verdicts().items():
        if verdict is True:
            streaks[scope] = streaks.get(scope, 0) + 1
        elif verdict is False:
            streaks[scope] = 0
    quiet = state.quiet_until is not None and p <= state.quiet_until
    candidates = [FLEET] if cfg.trigger_on == "fleet" else sorted(s for s in streaks if s != FLEET)
    fired: list[RetrainTrigger] = []
    if not quiet:
        for scope in candidates:
            streak = streaks.get(scope, 0)
            if streak < cfg.persistence:
                continue
            feats = assessment.drifted_features(scope)
            values = {f: assessment.values(scope)[f] for f in feats}
            where = "fleet-wide" if scope == FLEET else f"on node {scope}"
            fired.append(
                RetrainTrigger(
                    period=p,
                    scope=scope,
                    streak=streak,
                    features=feats,
                    values=MappingProxyType(values),
                    reason=(
                        f"{cfg.metric} above {cfg.threshold} {where} for {streak} periods "
                        f"(features {list(feats)})"
                    ),
                )
            )
            if cfg.trigger_on == "fleet":
                break
    for t in fired:
        streaks[t.scope] = 0
    new = replace(
        state,
        streaks=MappingProxyType(streaks),
        last_period=p,
        quiet_until=(p + cfg.cooldown) if fired else state.quiet_until,
        triggers=state.triggers + tuple(fired),
    )
    return new, tuple(fired)

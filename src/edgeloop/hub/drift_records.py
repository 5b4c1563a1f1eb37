"""Records of the drift service: Prometheus instruments, ``drift_assessments`` rows,
the streaks as JSON (``drift_state``) and triggers read back (``drift_triggers``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as PromCounter

from edgeloop.drift import (
    FLEET,
    DriftAssessment,
    DriftStats,
    MonitorState,
    RetrainTrigger,
    Sketch,
    merge_all,
)


class DriftMetrics:
    """Prometheus instruments of the drift service (registered on ``registry``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.value = Gauge(
            "edgeloop_hub_drift",
            "Fleet-wide drift of each feature in the last judged period (configured metric).",
            ["version", "feature"],
            registry=registry,
        )
        self.drifted = Gauge(
            "edgeloop_hub_drift_drifted_features",
            "Features that drifted in the last judged period, per scope (node or *).",
            ["version", "scope"],
            registry=registry,
        )
        self.streak = Gauge(
            "edgeloop_hub_drift_streak",
            "Consecutive drifted periods, per scope (node or *).",
            ["version", "scope"],
            registry=registry,
        )
        self.sketches = PromCounter(
            "edgeloop_hub_drift_sketches",
            "Sketches judged (accepted), refused (by field) or arrived after their period.",
            ["outcome"],
            registry=registry,
        )
        self.triggers = PromCounter(
            "edgeloop_hub_drift_triggers", "Retraining triggers emitted.", registry=registry
        )


def assessment_rows(
    version: str,
    a: DriftAssessment,
    state: MonitorState,
    scores: Mapping[str, Sketch],
    now: int,
) -> list[dict[str, Any]]:
    """The ``drift_assessments`` rows of one judged (period, version): one per node and
    one for the fleet, with the streak after the period and a summary of the scores."""
    cfg = a.config
    verdicts = a.verdicts()
    rows = []
    for scope in (*a.nodes, FLEET):
        if scope == FLEET:
            stats, judged = a.fleet_stats, a.fleet_judged
            sc = merge_all(scores.values()) if scores else None
        else:
            i = a.nodes.index(scope)
            stats = _row(a.node_stats, i)
            judged = a.node_judged[i]
            sc = scores.get(scope)
        verdict = verdicts[scope]
        extra: dict[str, Any] = {m: _plain(stats.metric(m), a.names) for m in ("psi", "ks", "w1")}
        extra["judged"] = [n for n, j in zip(a.names, judged, strict=True) if j]
        if sc is not None and int(sc.total[0]):
            mean, _ = sc.mean_std()
            extra["score_mean"] = float(mean[0])
            extra["score_rows"] = int(sc.total[0])
        rows.append(
            {
                "version": version,
                "period": a.period,
                "scope": scope,
                "verdict": "unjudged" if verdict is None else "drifted" if verdict else "calm",
                "streak": int(state.streaks.get(scope, 0)),
                "metric": cfg.metric,
                "values": _plain(stats.metric(cfg.metric), a.names),
                "rows": {n: int(v) for n, v in zip(a.names, stats.n, strict=True)},
                "drifted": list(a.drifted_features(scope)),
                "extra": extra,
                "judged_ns": now,
            }
        )
    return rows


def trigger_of(r: Mapping[Any, Any]) -> RetrainTrigger:
    """A ``drift_triggers`` row as the :class:`RetrainTrigger` callbacks get."""
    return RetrainTrigger(
        period=int(r["period"]),
        scope=str(r["scope"]),
        streak=int(r["streak"]),
        features=tuple(r["features"]),
        values=MappingProxyType(dict(r["values"])),
        reason=str(r["reason"]),
    )


def _row(stats: DriftStats, i: int) -> DriftStats:
    return DriftStats(stats.names, stats.psi[i], stats.ks[i], stats.w1[i], stats.n[i])


def _plain(values: np.ndarray, names: Sequence[str]) -> dict[str, float | None]:
    return {n: (float(v) if np.isfinite(v) else None) for n, v in zip(names, values, strict=True)}


def state_to_json(s: MonitorState) -> dict[str, Any]:
    """A version's streaks as JSON (the last 20 triggers kept)."""
    return {
        "streaks": dict(s.streaks),
        "last_period": s.last_period,
        "quiet_until": s.quiet_until,
        "triggers": [
            {
                "period": t.period,
                "scope": t.scope,
                "streak": t.streak,
                "features": list(t.features),
                "values": dict(t.values),
                "reason": t.reason,
            }
            for t in s.triggers[-20:]
        ],
    }


def states_from_json(raw: Mapping[str, Any]) -> dict[str, MonitorState]:
    """The streaks of every model version from ``drift_state.state``."""
    out = {}
    for version, s in dict(raw.get("versions", {})).items():
        out[str(version)] = MonitorState(
            streaks=MappingProxyType({str(k): int(v) for k, v in s["streaks"].items()}),
            last_period=s["last_period"],
            quiet_until=s["quiet_until"],
            triggers=tuple(
                RetrainTrigger(
                    period=t["period"],
                    scope=t["scope"],
                    streak=t["streak"],
                    features=tuple(t["features"]),
                    values=MappingProxyType(dict(t["values"])),
                    reason=t["reason"],
                )
                for t in s["triggers"]
            ),
        )
    return out


__all__ = [
    "DriftMetrics",
    "assessment_rows",
    "state_to_json",
    "states_from_json",
    "trigger_of",
]

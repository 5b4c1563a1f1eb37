"""A rollout as plain JSON values, so that a hub store can keep it across restarts.

``restore(json.loads(json.dumps(snapshot(r)))) == r`` for every rollout (tested as a
property), so a hub that restarts mid-rollout resumes the same stage with the same
evidence and the same cohort.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from edgeloop.errors import ConfigError
from edgeloop.rollout.machine import Decision, Rollout
from edgeloop.rollout.policy import Evidence, GateResult, Gates, RolloutPolicy, Tally

SNAPSHOT_SCHEMA = "edgeloop.rollout/1"


def snapshot(r: Rollout) -> dict[str, Any]:
    """JSON-able form of ``r``."""
    p = r.policy
    t = r.tally
    return {
        "schema": SNAPSHOT_SCHEMA,
        "champion": r.champion,
        "challenger": r.challenger,
        "policy": {
            "canary_fraction": p.canary_fraction,
            "steps": list(p.steps),
            "shadow_fraction": p.shadow_fraction,
            "evidence": asdict(p.evidence),
            "gates": asdict(p.gates),
            "stage_timeout_s": p.stage_timeout_s,
            "seed": p.seed,
        },
        "order": list(r.order),
        "stage": r.stage,
        "cohort": list(r.cohort),
        "stage_started_ns": r.stage_started_ns,
        "tally": {
            "windows": t.windows,
            "challenger_alerts": t.challenger_alerts,
            "champion_alerts": t.champion_alerts,
            "agreements": t.agreements,
            "errors": t.errors,
            "shift_sum": t.shift_sum,
            "latency_p99_ms": t.latency_p99_ms,
            "nodes": sorted(t.nodes),
        },
        "seen": sorted([node, ns] for node, ns in r.seen),
        "outcome": r.outcome,
        "decisions": [d.to_dict() for d in r.decisions],
        "ignored": r.ignored,
        "peak_acting": r.peak_acting,
        "fleet_size": r.fleet_size,
    }


def restore(data: Mapping[str, Any], source: str = "rollout") -> Rollout:
    """Inverse of :func:`snapshot`; raise :class:`ConfigError` naming what is wrong."""
    if data.get("schema") != SNAPSHOT_SCHEMA:
        raise ConfigError(
            f"{source}: schema must be {SNAPSHOT_SCHEMA!r}, got {data.get('schema')!r}"
        )
    try:
        p = data["policy"]
        policy = RolloutPolicy(
            canary_fraction=p["canary_fraction"],
            steps=tuple(p["steps"]),
            shadow_fraction=p["shadow_fraction"],
            evidence=Evidence(**p["evidence"]),
            gates=Gates(**p["gates"]),
            stage_timeout_s=p["stage_timeout_s"],
            seed=p["seed"],
        )
        t = data["tally"]
        tally = Tally(**{**t, "nodes": frozenset(t["nodes"])})
        outcome = data["outcome"]
        if outcome not in ("running", "promoted", "rolled_back"):
            raise ConfigError(f"outcome: unknown {outcome!r}")
        stage = int(data["stage"])
        if not 0 <= stage < len(policy.stages()):
            raise ConfigError(f"stage: {stage} is not a stage of the policy")
        return Rollout(
            champion=data["champion"],
            challenger=data["challenger"],
            policy=policy,
            order=tuple(data["order"]),
            stage=stage,
            cohort=tuple(data["cohort"]),
            stage_started_ns=int(data["stage_started_ns"]),
            tally=tally,
            seen=frozenset((str(n), int(ns)) for n, ns in data["seen"]),
            outcome=outcome,
            decisions=tuple(_decision(d) for d in data["decisions"]),
            ignored=int(data["ignored"]),
            peak_acting=int(data["peak_acting"]),
            fleet_size=int(data["fleet_size"]),
        )
    except KeyError as exc:
        raise ConfigError(f"{source}: missing field {exc}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: malformed ({exc})") from exc


def _decision(d: Mapping[str, Any]) -> Decision:
    kind = d["decision"]
    if kind not in ("start", "step", "promote", "rollback"):
        raise ConfigError(f"decisions: unknown decision {kind!r}")
    return Decision(
        kind=kind,
        at_ns=int(d["at_ns"]),
        stage=d["stage"],
        fraction=float(d["fraction"]),
        nodes=tuple(d["nodes"]),
        reason=d["reason"],
        gates=tuple(GateResult(**g) for g in d["gates"]),
        evidence=dict(d["evidence"]) or None,
    )

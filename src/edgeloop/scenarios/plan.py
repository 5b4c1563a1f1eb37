"""Plan a simulated factory floor: gateways, machines, faults and uplink partitions.

A plan is pure data, made before anything starts; gateways receive their part of it in
their node config. Times are seconds from the run's start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeloop.sim.build import fault_to_config
from edgeloop.sim.factory import FactoryConfig
from edgeloop.sim.faults import FaultKind, schedule_faults

SENSORS_PER_MACHINE = 6
ALL_KINDS: tuple[str, ...] = tuple(k.value for k in FaultKind)


@dataclass(frozen=True, slots=True)
class GatewayPlan:
    name: str
    index: int
    machines: tuple[str, ...]
    faults: tuple[dict[str, Any], ...]
    seed: int


@dataclass(frozen=True, slots=True)
class FloorPlan:
    gateways: tuple[GatewayPlan, ...]
    duration_s: float
    partitions: tuple[tuple[float, float], ...]
    machines_per_gateway: int
    seed: int
    window_s: float = 1.0

    @property
    def sensors(self) -> int:
        return len(self.gateways) * self.machines_per_gateway * SENSORS_PER_MACHINE

    @property
    def faults(self) -> list[dict[str, Any]]:
        return [f for g in self.gateways for f in g.faults]


def plan_floor(
    gateways: int,
    machines_per_gateway: int,
    duration_s: float,
    n_faults: int,
    seed: int,
    partition: tuple[float, float] | None = (0.4, 0.6),
    kinds: tuple[str, ...] = ALL_KINDS,
    warmup_s: float | None = None,
) -> FloorPlan:
    """Lay out the floor and draw the fault schedule over all its machines.

    Args:
        partition: uplink cut as fractions of the run (same for every gateway).
        warmup_s: no fault before this (detectors learn their baseline); default
            ``max(12, duration_s / 4)`` capped so faults fit.
    """
    names = [f"gw{i + 1}" for i in range(gateways)]
    machines = {
        gw: FactoryConfig.generate(machines_per_gateway, gateway=gw, seed=seed + i).machines
        for i, gw in enumerate(names)
    }
    all_machines = [m.name for gw in names for m in machines[gw]]
    warm = warmup_s if warmup_s is not None else min(max(12.0, duration_s / 4), duration_s / 2)
    specs = schedule_faults(
        all_machines,
        0,
        duration_s,
        n_faults,
        kinds=kinds,
        seed=seed,
        min_gap_s=3.0,
        fault_s=(3.0, 5.0),
        warmup_s=warm,
    )
    plans = []
    for i, gw in enumerate(names):
        own = tuple(fault_to_config(f, 0) for f in specs if f.machine.startswith(gw + "."))
        plans.append(
            GatewayPlan(gw, i, tuple(m.name for m in machines[gw]), own, seed=seed * 100 + i)
        )
    parts: tuple[tuple[float, float], ...] = ()
    if partition is not None:
        parts = ((partition[0] * duration_s, partition[1] * duration_s),)
    return FloorPlan(tuple(plans), duration_s, parts, machines_per_gateway, seed)


def gateway_config(
    gw: GatewayPlan,
    plan: FloorPlan,
    spec_path: Path,
    hub_url: str,
    workdir: Path,
    tick_s: float,
    ack_loss: float,
    corrupt_samples: float = 0.0,
) -> dict[str, Any]:
    """The node config (as YAML-ready data) of one gateway of the plan."""
    return {
        "node_id": gw.name,
        "tier": "gateway",
        "pipeline": str(spec_path),
        "summary_every_s": 2.0,
        "decide": {
            "rules": [
                {
                    "name": "stop-on-alarm",
                    "min_score": 0.9,
                    "severity": "alarm",
                    "actions": ["relay", "log"],
                },
                {"name": "anomaly", "actions": ["relay"]},
            ],
        },
        "outbox": {
            "url": f"sqlite:///{workdir / (gw.name + '-outbox.db')}",
            "budget_bytes": 64 * 1024 * 1024,
        },
        "uplink": {"kind": "http", "url": hub_url, "timeout_s": 5.0},
        "sources": [
            {
                "type": "sim",
                "seed": gw.seed,
                "tick_s": tick_s,
                # Stagger the gateways' sensor buffers: on one demo machine they would
                # otherwise all wake on the same instant and queue for the same cores.
                "phase_s": round(gw.index * tick_s / len(plan.gateways), 4),
                "factory": {
                    "generate": {
                        "n_machines": plan.machines_per_gateway,
                        "gateway": gw.name,
                        "seed": plan.seed + gw.index,
                    }
                },
                "faults": list(gw.faults),
            }
        ],
        "chaos": {
            "partitions": [list(p) for p in plan.partitions],
            "ack_loss": ack_loss,
            "corrupt_samples": corrupt_samples,
            "seed": gw.seed,
        },
        "status_file": str(workdir / f"{gw.name}.status.json"),
    }


def describe_moment(plan: FloorPlan, t_s: float) -> str:
    """One line on what the plan has going on at ``t_s`` (for the live view)."""
    if t_s < 0:
        return f"starting in {-t_s:.1f} s"
    parts = [
        f"[red]uplink cut ({a:.0f}-{b:.0f} s)[/red]" for a, b in plan.partitions if a <= t_s < b
    ]
    active = [
        f"{f['kind']} on {f['machine']}" for f in plan.faults if f["start_s"] <= t_s < f["end_s"]
    ]
    if active:
        parts.append("faults now: " + ", ".join(active))
    return "   ".join(parts) if parts else "normal operation"

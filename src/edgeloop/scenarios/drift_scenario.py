"""``edgeloop demo --scenario drift`` (being built): the plant changes its load regime,
drift is detected, a model is retrained, canaried, shadowed and promoted automatically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPORT_KEYS = (
    "false_alarms_per_hour_before",
    "false_alarms_per_hour_peak",
    "false_alarms_per_hour_after",
    "recall_after",
    "offline_node_converged_s",
    "steps",
)


@dataclass(slots=True)
class DriftOptions:
    gateways: int = 4
    machines_per_gateway: int = 3
    duration_s: float = 60.0
    seed: int = 7
    workdir: Path | None = None
    live: bool = True


def run_drift(opts: DriftOptions, console: Any = None) -> dict[str, Any]:
    """Not built yet: the report says so (``missing``) instead of inventing figures."""
    return {k: None for k in REPORT_KEYS} | {
        "steps": [],
        "missing": ["the drift scenario harness is not built yet"],
    }


def check(report: dict[str, Any]) -> list[str]:
    """What the report fails to show."""
    return [f"missing: {m}" for m in report.get("missing") or []]

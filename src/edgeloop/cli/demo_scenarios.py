"""``edgeloop demo --scenario bad-model|drift``: run a learning-loop scenario, show its
summary table, write its report, and exit non-zero when it did not show what it must."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def run_scenario(
    name: str, given: dict[str, Any], report: Path | None, workdir: Path | None, live: bool
) -> None:
    from rich.console import Console

    console = Console()
    if name == "bad-model":
        from edgeloop.scenarios.bad_model import BadModelOptions, check, run_bad_model

        result = run_bad_model(BadModelOptions(workdir=workdir, live=live, **given), console)
        shown: tuple[str, ...] = (
            "rolled_back",
            "canary_fraction",
            "canary_nodes",
            "max_fraction_acting_on_bad_model",
            "max_nodes_acting_on_bad_model_by_logs",
            "nodes_acting_on_bad_model_by_logs",
            "nodes_acting_on_bad_model_by_documents",
            "nodes_with_bad_model_events",
            "rollout_peak_acting",
            "rollback_reason",
            "bad_model_windows",
            "bad_model_alerts",
            "events_by_bad_model",
            "gateways",
            "wall_s",
        )
    else:
        from edgeloop.scenarios.drift_scenario import DriftOptions, check, run_drift

        result = run_drift(DriftOptions(workdir=workdir, live=live, **given), console)
        shown = (
            "false_alarms_per_hour_before",
            "false_alarms_per_hour_peak",
            "false_alarms_per_hour_after",
            "recall_after",
            "false_alarms_per_hour_by_source",
            "offline_node_converged_s",
            "retrained_version",
            "promoted",
            "missing",
            "gateways",
            "wall_s",
        )
    _summary(console, f"edgeloop demo --scenario {name}: summary", result, shown)
    problems = check(result)
    if report is not None:
        report.write_text(json.dumps(result, indent=2, default=str) + "\n")
        console.print(f"report written to {report}")
    if result.get("gateway_errors"):
        console.print(f"[red]gateway errors:[/red] {result['gateway_errors']}")
    for p in problems:
        console.print(f"[red]not shown:[/red] {p}")
    if problems:
        raise typer.Exit(1)


def _summary(console: Any, title: str, result: dict[str, Any], keys: tuple[str, ...]) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in keys:
        v = result.get(key)
        table.add_row(key, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
    console.print(table)
    steps = result.get("steps") or []
    if steps:
        t = Table(title="steps")
        t.add_column("step")
        t.add_column("at_s", justify="right")
        for s in steps:
            t.add_row(str(s["step"]), f"{s['at_s']}")
        console.print(t)

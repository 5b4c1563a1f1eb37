"""``edgeloop demo``: the embedded factory floor, hub and gateways on one machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

HELP = (
    "Run a hub and several gateway processes over a simulated factory floor with faults "
    "and an uplink partition; show a live view and a summary; optionally write a JSON report. "
    "--scenario bad-model: a model that alerts on everything is canaried and rolled back; "
    "--scenario drift: the plant changes regime, the model is retrained and rolled out."
)
SCENARIOS = ("factory", "bad-model", "drift")


def demo(
    duration: Annotated[float, typer.Option(help="Seconds of plant operation.")] = 30.0,
    gateways: Annotated[int, typer.Option(min=1, help="Gateway processes.")] = 3,
    machines: Annotated[
        int, typer.Option(min=1, help="Machines per gateway (6 sensors each).")
    ] = 6,
    faults: Annotated[int, typer.Option(min=0, help="Faults to inject.")] = 12,
    seed: Annotated[int, typer.Option(help="Seed of the plan and the simulator.")] = 7,
    pipeline: Annotated[
        str,
        typer.Option(
            help="Gateway pipeline: a bundled preset (factory, nab, skab) or a YAML path; "
            "the hub adds its trained models for the groups it knows."
        ),
    ] = "factory",
    partition: Annotated[
        str, typer.Option(help="Uplink cut as fractions of the run, 'START,END' or 'none'.")
    ] = "0.4,0.6",
    ack_loss: Annotated[
        float, typer.Option(help="Share of acks the chaos layer drops (forces resends).")
    ] = 0.05,
    bad_input: Annotated[
        float, typer.Option(help="Share of samples corrupted before the gateways see them.")
    ] = 2e-5,
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="Keep configs, logs and databases here.")
    ] = None,
    live: Annotated[bool, typer.Option(help="Show the live view.")] = True,
    scenario: Annotated[
        str,
        typer.Option(
            help="factory (the default demo), bad-model (a canaried model that alerts on "
            "everything is rolled back) or drift (regime change, retraining, rollout). The "
            "learning-loop scenarios use --duration, --gateways, --machines, --seed, "
            "--report, --workdir and --live and their own defaults for the rest."
        ),
    ] = "factory",
) -> None:
    """Run the demo scenario."""
    from rich.console import Console
    from rich.table import Table

    if scenario not in SCENARIOS:
        raise typer.BadParameter(f"--scenario: expected one of {', '.join(SCENARIOS)}")
    if scenario != "factory":
        from edgeloop.cli.demo_scenarios import run_scenario

        given = {
            k: v
            for k, v, default in (
                ("duration_s", duration, 30.0),
                ("gateways", gateways, 3),
                ("machines_per_gateway", machines, 6),
                ("seed", seed, 7),
            )
            if v != default
        }
        run_scenario(scenario, given, report, workdir, live)
        return
    from edgeloop.scenarios.factory_demo import DemoOptions, run_demo
    from edgeloop.scenarios.report import REPORT_KEYS

    part: tuple[float, float] | None = None
    if partition != "none":
        try:
            a, b = (float(x) for x in partition.split(","))
        except ValueError:
            raise typer.BadParameter("expected START,END fractions, e.g. 0.4,0.6") from None
        if not 0 <= a < b <= 1:
            raise typer.BadParameter("need 0 <= START < END <= 1")
        part = (a, b)
    console = Console()
    opts = DemoOptions(
        duration_s=duration,
        gateways=gateways,
        machines_per_gateway=machines,
        faults=faults,
        seed=seed,
        pipeline=pipeline,
        partition=part,
        ack_loss=ack_loss,
        corrupt_samples=bad_input,
        workdir=workdir,
        live=live,
    )
    result = run_demo(opts, console)
    table = Table(title="edgeloop demo: summary")
    table.add_column("figure")
    table.add_column("value", justify="right")
    shown = (
        *REPORT_KEYS,
        "gateway_private_mb_max",
        "hub_duplicates_skipped",
        "samples_corrupted_by_chaos",
        "samples_rejected_total",
        "events_stored",
    )
    for key in shown:
        v = result.get(key)
        table.add_row(key, f"{v:,}" if isinstance(v, int) else str(v))
    console.print(table)
    if result.get("missed_faults"):
        console.print(f"missed faults: {result['missed_faults']}")
    if result.get("gateway_errors"):
        console.print(f"[red]gateway errors:[/red] {result['gateway_errors']}")
    if report is not None:
        report.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"report written to {report}")
    if result.get("gateway_errors") or result.get("lost"):
        raise typer.Exit(1)

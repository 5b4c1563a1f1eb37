"""``edgeloop chaos``: the fault matrix against real services and processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

HELP = (
    "Run the chaos matrix against real Mosquitto, PostgreSQL, gateway and hub processes "
    "(partitions, a slow and lossy link, kill -9 of a gateway and of a hub, a broker "
    "restart, an exhausted outbox budget, bad input, a slow hub) and account for every "
    "sample: produced, delivered, evicted by class, lost, duplicates, order violations, "
    "time to drain."
)


def chaos(
    scenario: Annotated[
        list[str] | None,
        typer.Option("--scenario", help="Run only this scenario (repeatable)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seeds the simulators and the link faults.")] = 0,
    quick: Annotated[
        bool, typer.Option(help="Short runs (10 s of data per scenario instead of 40 s).")
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write one object per scenario to this file.")
    ] = None,
    parallel: Annotated[
        int,
        typer.Option(
            min=1, help="Scenarios run at once (each has its own broker, schema, processes)."
        ),
    ] = 1,
    broker: Annotated[
        str | None,
        typer.Option(
            help="Use the MQTT broker at HOST:PORT for every scenario (default: a private "
            "Mosquitto per scenario, or 127.0.0.1:1883 without the binary; the scenarios "
            "that restart or reconfigure the broker are then skipped)."
        ),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(help="Keep logs, plans and outboxes here (default: a temporary dir)."),
    ] = None,
) -> None:
    """Run the scenarios and print one row each; exit 1 if any row is not clean."""
    from rich.console import Console

    from edgeloop.chaos.runner import RunOptions, run_matrix
    from edgeloop.chaos.scenarios import select

    console = Console()
    try:
        chosen = select(scenario)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scenario") from None
    address = None
    if broker is not None:
        host, _, port = broker.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise typer.BadParameter(f"expected HOST:PORT, got {broker!r}", param_hint="--broker")
        address = (host, int(port))
    opts = RunOptions(seed=seed, quick=quick, workdir=workdir, parallel=parallel, broker=address)
    try:
        results = run_matrix(chosen, opts, progress=lambda m: console.print(m, highlight=False))
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    console.print(table(results))
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2) + "\n")
        console.print(f"wrote {json_out}")
    if not all(r.get("ok", True) for r in results):
        raise typer.Exit(1)


def table(results: list[dict[str, Any]]) -> Any:
    """The results as a Rich table, one row per scenario."""
    from rich.table import Table

    t = Table(title="edgeloop chaos")
    for col in (
        "scenario",
        "produced",
        "delivered",
        "evicted s/e/a",
        "rejected",
        "lost",
        "dup",
        "order",
        "drain s",
        "ok",
    ):
        t.add_column(col, justify="left" if col == "scenario" else "right")
    for r in results:
        if "skipped" in r or "error" in r:
            why = f"skipped: {r['skipped']}" if "skipped" in r else "[red]error[/red]"
            t.add_row(r["scenario"], *[""] * 8, why)
            continue
        ev = r["evicted"]
        t.add_row(
            r["scenario"],
            f"{r['produced']:,}",
            f"{r['delivered']:,}",
            f"{ev['summary']:,} / {ev['event']:,} / {ev['alarm']:,}",
            f"{r['rejected']:,}",
            _mark(r["lost"]),
            _mark(r["duplicates"]),
            _mark(r["order_violations"]),
            "-" if r["drain_s"] is None else f"{r['drain_s']:.2f}",
            "[green]yes[/green]" if r["ok"] else "[red]NO[/red]",
        )
    return t


def _mark(n: int) -> str:
    return f"{n:,}" if n == 0 else f"[red]{n:,}[/red]"

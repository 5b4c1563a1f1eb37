"""``edgeloop node``: run a node (device, gateway or regional edge) from a config file."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Run and inspect nodes.", no_args_is_help=True)


@app.command("run")
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Node config (YAML).")],
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: run forever).")
    ] = None,
    stats_out: Annotated[
        Path | None, typer.Option(help="Write the node's final counters here as JSON.")
    ] = None,
) -> None:
    """Run a node: sources → pipeline → detect → decide → outbox → uplink.

    The node runs as ``python -m edgeloop.node`` in place of this command, so it does
    not carry the CLI's libraries (a gateway's memory budget is tight).
    """
    argv = [sys.executable, "-m", "edgeloop.node", "--config", str(config)]
    if duration is not None:
        argv += ["--duration", str(duration)]
    if stats_out is not None:
        argv += ["--stats-out", str(stats_out)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


@app.command("check")
def check(
    config: Annotated[Path, typer.Option("--config", "-c", help="Node config (YAML).")],
) -> None:
    """Validate a node config, its pipeline spec and its simulated floor; print what is
    wrong, field by field."""
    from edgeloop.errors import ConfigError
    from edgeloop.node.config import load_node_config
    from edgeloop.node.plan import make_plan

    try:
        plan = make_plan(load_node_config(config))
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    cfg = plan.config
    typer.echo(f"{config}: ok (node {cfg.node_id}, tier {cfg.tier}, pipeline {plan.pipeline.name})")

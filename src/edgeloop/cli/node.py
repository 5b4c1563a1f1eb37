"""``edgeloop node``: run a node (device, gateway or regional edge) from a config file."""

from __future__ import annotations

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
    """Run a node: sources → pipeline → detect → decide → outbox → uplink."""
    from edgeloop.node.main import main

    raise typer.Exit(main(config, duration, stats_out))


@app.command("check")
def check(
    config: Annotated[Path, typer.Option("--config", "-c", help="Node config (YAML).")],
) -> None:
    """Validate a node config and its pipeline spec; print what is wrong, field by field."""
    from edgeloop.errors import ConfigError
    from edgeloop.node.build import resolve_spec
    from edgeloop.node.config import load_node_config

    try:
        cfg = load_node_config(config)
        spec = resolve_spec(cfg.pipeline)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{config}: ok (node {cfg.node_id}, tier {cfg.tier}, pipeline {spec.name})")

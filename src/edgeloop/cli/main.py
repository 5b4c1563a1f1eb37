"""The ``edgeloop`` command line. One module per command group; imports stay lazy."""

from __future__ import annotations

import typer

from edgeloop import __version__
from edgeloop.cli import (
    bench,
    chaos,
    demo,
    drift,
    evaluate,
    events,
    fleet,
    hub,
    models,
    node,
    sim,
)

app = typer.Typer(
    name="edgeloop",
    help="Sense, learn and respond across tiers: edge nodes, gateways and a hub.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("demo", help=demo.HELP)(demo.demo)
app.command("bench", help=bench.HELP)(bench.bench)
app.command("chaos", help=chaos.HELP)(chaos.chaos)
app.add_typer(node.app, name="node")
app.add_typer(hub.app, name="hub")
app.add_typer(evaluate.app, name="eval")
app.add_typer(models.app, name="models")
app.add_typer(fleet.app, name="fleet")
app.add_typer(events.app, name="events")
app.add_typer(sim.app, name="sim")
app.add_typer(drift.app, name="drift")


@app.command("version")
def version() -> None:
    """Print the edgeloop version."""
    typer.echo(__version__)


if __name__ == "__main__":  # pragma: no cover
    app()

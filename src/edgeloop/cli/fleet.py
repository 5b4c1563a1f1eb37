"""``edgeloop fleet``: desired vs actual state of the nodes (version drift)."""

from __future__ import annotations

from typing import Any

import typer

from edgeloop.cli.models import DEFAULT_HUB, AsJson, Hub, _print, emit, hub_client, when

app = typer.Typer(help="The fleet as the hub sees it.", no_args_is_help=True)


@app.command("status")
def status(hub: Hub = DEFAULT_HUB, as_json: AsJson = False) -> None:
    """Per node: group, desired and actual model version and generation, in sync or
    drifting, reconcile status and last report. Exits 0 either way (use --json to act
    on it)."""
    with hub_client(hub) as c:
        data = c.get("/v1/fleet/status")

    def render(d: dict[str, Any]) -> None:
        from rich.table import Table

        t = Table(
            title=f"fleet at generation {d['generation']}: {d['in_sync']} in sync, "
            f"{d['drifting']} drifting"
        )
        for col in ("node", "group", "desired", "actual", "generation", "sync", "status", "seen"):
            t.add_column(col)
        for n in d["nodes"]:
            sync = "[green]in sync[/]" if n["in_sync"] else "[yellow]drifting[/]"
            seen = when(n["reported_ns"]) + ("" if n["online"] else " (offline)")
            t.add_row(
                n["node"],
                n["group"] or "-",
                n["desired_version"] or "-",
                n["actual_version"] or "-",
                f"{n['actual_generation'] if n['actual_generation'] is not None else '-'}"
                f" / {n['desired_generation'] if n['desired_generation'] is not None else '-'}",
                sync,
                (n["status"] or "-") + (f": {n['detail']}" if n["detail"] else ""),
                seen,
            )
        _print(t)

    emit(data, as_json, render)

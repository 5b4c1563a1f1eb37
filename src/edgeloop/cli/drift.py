"""``edgeloop drift status|history|triggers``: drift of the fleet's features against the
models' training data, as the hub judged it (``GET /v1/drift...``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from edgeloop.cli.models import DEFAULT_HUB, AsJson, Hub, _print, emit, hub_client, when

app = typer.Typer(help="Drift of features per node and fleet-wide.", no_args_is_help=True)

TOP = 6
"""Features shown per row in the table (the largest values first; --json has all)."""


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


@app.command("status")
def status(
    hub: Hub = DEFAULT_HUB,
    as_json: AsJson = False,
    judge: Annotated[
        bool, typer.Option("--judge", help="Judge the periods that are due first.")
    ] = False,
) -> None:
    """Per model version, fleet-wide and per node: the last judged period's metric per
    feature (largest first), the drifted features, the streak of drifted periods, and the
    last retraining trigger. Exits 0 either way (use --json to act on it)."""
    with hub_client(hub) as c:
        if judge:
            c.post("/v1/drift/judge", {})
        data = c.get("/v1/drift")

    def render(d: dict[str, Any]) -> None:
        from rich.table import Table

        cfg = d["config"]
        t = Table(
            title=f"drift ({cfg['metric']} > {cfg['threshold']}, {cfg['persistence']} periods "
            f"of {d['period_s']:g} s to retrain; last period {d['last_period']})"
        )
        for col in ("model", "scope", "period", "verdict", "streak", "drifted", "largest"):
            t.add_column(col)
        for s in d["scopes"]:
            colour = {"drifted": "red", "calm": "green"}.get(s["verdict"], "yellow")
            largest = sorted(
                ((v, k) for k, v in s["values"].items() if v is not None), reverse=True
            )[:TOP]
            t.add_row(
                s["version"],
                "fleet" if s["scope"] == "*" else s["scope"],
                str(s["period"]),
                f"[{colour}]{s['verdict']}[/]",
                str(s["streak"]),
                ", ".join(s["drifted_features"]) or "-",
                ", ".join(f"{k} {_fmt(v)}" for v, k in largest) or "-",
            )
        _print(t)
        last = d["last_trigger"]
        if last is not None:
            _print(
                f"{d['triggers']} retraining trigger(s); last {when(last['at_ns'])}: "
                f"{last['reason']}"
            )
        else:
            _print("no retraining trigger yet")
        if d["rejected"]:
            _print(f"refused sketches: {d['rejected']}")

    emit(data, as_json, render)


@app.command("history")
def history(
    hub: Hub = DEFAULT_HUB,
    as_json: AsJson = False,
    scope: Annotated[
        str | None, typer.Option(help="A node id, or * for the fleet (default: every scope).")
    ] = None,
    version: Annotated[str | None, typer.Option(help="One model version only.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Periods shown, newest first.")] = 50,
) -> None:
    """Judged periods, newest first: verdict, streak and drifted features per scope."""
    with hub_client(hub) as c:
        data = c.get("/v1/drift/history", scope=scope, version=version, limit=limit)

    def render(rows: list[dict[str, Any]]) -> None:
        from rich.table import Table

        t = Table(title=f"drift history ({len(rows)} rows)")
        for col in ("period end", "model", "scope", "verdict", "streak", "drifted"):
            t.add_column(col)
        for s in rows:
            colour = {"drifted": "red", "calm": "green"}.get(s["verdict"], "yellow")
            t.add_row(
                when(s["period_end_ns"]),
                s["version"],
                "fleet" if s["scope"] == "*" else s["scope"],
                f"[{colour}]{s['verdict']}[/]",
                str(s["streak"]),
                ", ".join(s["drifted_features"]) or "-",
            )
        _print(t)

    emit(data, as_json, render)


@app.command("triggers")
def triggers(
    hub: Hub = DEFAULT_HUB,
    as_json: AsJson = False,
    limit: Annotated[int, typer.Option(min=1, help="Triggers shown, newest first.")] = 20,
) -> None:
    """Retraining triggers, newest first, and whether their callbacks got them."""
    with hub_client(hub) as c:
        data = c.get("/v1/drift/triggers", limit=limit)

    def render(rows: list[dict[str, Any]]) -> None:
        from rich.table import Table

        t = Table(title=f"drift triggers ({len(rows)})")
        for col in ("at", "model", "scope", "streak", "features", "delivered"):
            t.add_column(col)
        for r in rows:
            t.add_row(
                when(r["at_ns"]),
                r["version"],
                "fleet" if r["scope"] == "*" else r["scope"],
                str(r["streak"]),
                ", ".join(r["features"]),
                when(r["delivered_ns"]) if r["delivered_ns"] is not None else "[yellow]pending[/]",
            )
        _print(t)

    emit(data, as_json, render)

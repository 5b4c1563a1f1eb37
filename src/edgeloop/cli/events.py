"""``edgeloop events``: the events nodes sent, and operators' labels of them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from edgeloop.cli.models import DEFAULT_HUB, AsJson, Hub, _print, emit, hub_client, when

app = typer.Typer(help="Events and their labels (true or false alarm).", no_args_is_help=True)


@app.command("list")
def list_events(
    node: Annotated[str | None, typer.Option(help="Only this node's events.")] = None,
    machine: Annotated[str | None, typer.Option(help="Only this machine's events.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 100,
    hub: Hub = DEFAULT_HUB,
    as_json: AsJson = False,
) -> None:
    """Events (oldest first) with their current label, if any."""
    with hub_client(hub) as c:
        events = c.get("/v1/events", node=node, machine=machine, limit=limit)
        labels = c.get("/v1/labels", limit=100_000)["labels"]
    by_event = {lab["event_id"]: lab for lab in labels}
    data = [{**e, "label": by_event.get(e["id"])} for e in events]

    def render(rows: list[dict[str, Any]]) -> None:
        from rich.table import Table

        t = Table(title=f"events ({len(rows)})")
        for col in ("id", "time", "node", "machine", "sensor", "score", "reason", "label"):
            t.add_column(col)
        for e in rows:
            lab = e["label"]
            t.add_row(
                str(e["id"]),
                when(e["t_start_ns"]),
                e["node"],
                e["machine"],
                e["sensor"],
                "-" if e["score"] is None else f"{e['score']:.2f}",
                e["reason"],
                f"{lab['label']} ({lab['actor']})" if lab else "-",
            )
        _print(t)

    emit(data, as_json, render)


@app.command("label")
def label(
    event_id: Annotated[int, typer.Argument(help="The event's id (edgeloop events list).")],
    true_alarm: Annotated[
        bool | None,
        typer.Option("--true/--false", help="A true alarm (--true) or a false alarm (--false)."),
    ] = None,
    note: Annotated[str, typer.Option(help="Why (kept with the label).")] = "",
    actor: Annotated[str, typer.Option(help="Who labels it.")] = "operator",
    hub: Hub = DEFAULT_HUB,
    as_json: AsJson = False,
) -> None:
    """Label an event as a true or a false alarm; the previous label stays in its history."""
    if true_alarm is None:
        raise typer.BadParameter("say --true or --false", param_hint="--true/--false")
    body = {
        "label": "true_alarm" if true_alarm else "false_alarm",
        "actor": actor,
        "note": note,
    }
    with hub_client(hub) as c:
        data = c.put(f"/v1/events/{event_id}/label", body)
    emit(
        data,
        as_json,
        lambda d: typer.echo(f"event {d['event_id']}: {d['label']} by {d['actor']}"),
    )

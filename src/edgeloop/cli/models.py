"""``edgeloop models``: the hub's model registry (list, show, promote, rollback, diff) and
retraining (retrain, runs)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from edgeloop.hub.client import HubClient

app = typer.Typer(help="Model versions in the hub's registry.", no_args_is_help=True)

Hub = Annotated[
    str,
    typer.Option("--hub", envvar="EDGELOOP_HUB", help="URL of the hub API (env EDGELOOP_HUB)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the hub's JSON answer.")]
Actor = Annotated[str, typer.Option(help="Who does it (recorded in the deployment event).")]
Reason = Annotated[str, typer.Option(help="Why (recorded in the deployment event).")]
DEFAULT_HUB = "http://127.0.0.1:8000"


@contextmanager
def hub_client(url: str) -> Iterator[HubClient]:
    """A client of the hub at ``url``; a hub error ends the command with its message."""
    from edgeloop.hub.client import HubClient, HubError

    client = HubClient(url)
    try:
        yield client
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2 if exc.status == 0 else 1) from None
    finally:
        client.close()


def emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    """Print ``data`` as JSON, or with ``render`` (Rich)."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        render(data)


def when(ns: int | None) -> str:
    """A ns timestamp as UTC ISO time (seconds)."""
    if not ns:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _print(*items: Any) -> None:
    from rich.console import Console

    Console().print(*items)


@app.command("list")
def list_models(hub: Hub = DEFAULT_HUB, as_json: AsJson = False) -> None:
    """Every version with its aliases, kind, parent, creator and metrics."""
    with hub_client(hub) as c:
        data = c.get("/v1/models")

    def render(d: dict[str, Any]) -> None:
        from rich.table import Table

        t = Table(title=f"models ({len(d['versions'])} versions)")
        for col in ("version", "aliases", "kind", "parent", "creator", "created", "metrics"):
            t.add_column(col)
        for v in d["versions"]:
            metrics = ", ".join(f"{k}={val:g}" for k, val in sorted(v["metrics"].items()))
            t.add_row(
                v["version"],
                ", ".join(v["aliases"]),
                v["kind"],
                v["parent"] or "-",
                v["creator"] or "-",
                when(v["created_ns"]),
                metrics,
            )
        _print(t)

    emit(data, as_json, render)


@app.command("show")
def show(
    version: Annotated[str, typer.Argument(help="A version or an alias (e.g. champion).")],
    hub: Hub = DEFAULT_HUB,
    as_json: AsJson = False,
) -> None:
    """One version: manifest, signature, lineage and deployment history."""
    with hub_client(hub) as c:
        data = c.get(f"/v1/models/{version}")

    def render(d: dict[str, Any]) -> None:
        from rich.table import Table

        m = d["manifest"]
        t = Table(title=f"model {d['version']}", show_header=False)
        t.add_column("field")
        t.add_column("value")
        rows = [
            ("aliases", ", ".join(d["aliases"]) or "-"),
            ("artifact", f"{d['artifact']} ({d['size']} bytes)"),
            ("kind", d["kind"]),
            (
                "input",
                f"{m['input_schema']['preset']}: {', '.join(m['input_schema']['feature_names'])}",
            ),
            (
                "training data",
                f"sha256 {m['training_data']['sha256'][:16]}..., "
                f"{m['training_data']['n_rows']} rows from {', '.join(m['training_data']['source_nodes'])}",
            ),
            ("metrics", ", ".join(f"{k}={v:g}" for k, v in sorted(d["metrics"].items())) or "-"),
            ("lineage", " <- ".join(d["lineage"])),
            ("creator", f"{d['creator'] or '-'} at {when(d['created_ns'])}"),
            ("signature", f"{d['signature']['algorithm']} {d['signature']['key_id']}"),
        ]
        for k, v in rows:
            t.add_row(k, v)
        _print(t, events_table(d["history"], "history"))

    emit(data, as_json, render)


def events_table(events: list[dict[str, Any]], title: str) -> Any:
    """Deployment events as a Rich table."""
    from rich.table import Table

    t = Table(title=title)
    for col in ("seq", "time", "kind", "version", "alias", "previous", "actor", "reason"):
        t.add_column(col)
    for e in events:
        t.add_row(
            str(e["seq"]),
            when(e["at_ns"]),
            e["kind"],
            e["version"],
            e["alias"] or "",
            e["previous"] or "",
            e["actor"],
            e["reason"],
        )
    return t


@app.command("promote")
def promote(
    version: Annotated[str, typer.Argument(help="The version (or alias) to make champion.")],
    actor: Actor = "operator",
    reason: Reason = "",
    hub: Hub = DEFAULT_HUB,
    as_json: AsJson = False,
) -> None:
    """Make a version the champion (recorded as a deployment event)."""
    with hub_client(hub) as c:
        data = c.post(f"/v1/models/{version}/promote", {"actor": actor, "reason": reason})
    emit(data, as_json, lambda d: _print(events_table(d["events"], "promoted")))


@app.command("rollback")
def rollback(
    actor: Actor = "operator",
    reason: Reason = "",
    hub: Hub = DEFAULT_HUB,
    as_json: AsJson = False,
) -> None:
    """Return the champion to the previous champion (recorded as a deployment event)."""
    with hub_client(hub) as c:
        data = c.post("/v1/rollback", {"actor": actor, "reason": reason})
    emit(data, as_json, lambda d: _print(events_table(d["events"], "rolled back")))


@app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="From this version or alias.")],
    b: Annotated[str, typer.Argument(help="To this version or alias.")],
    hub: Hub = DEFAULT_HUB,
    as_json: AsJson = False,
) -> None:
    """Manifest differences between two versions, field by field."""
    with hub_client(hub) as c:
        data = c.get("/v1/models/diff", a=a, b=b)

    def render(d: dict[str, Any]) -> None:
        from rich.table import Table

        t = Table(title=f"{d['a']} -> {d['b']} ({len(d['changes'])} changes)")
        for col in ("field", d["a"], d["b"]):
            t.add_column(col)
        for ch in d["changes"]:
            t.add_row(ch["path"], _short(ch["before"]), _short(ch["after"]))
        _print(t)

    emit(data, as_json, render)


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 3] + "..."


@app.command("retrain")
def retrain(
    reason: Reason = "by hand",
    actor: Actor = "operator",
    since_ns: Annotated[
        int | None, typer.Option(help="Train on samples from this time (ns) on.")
    ] = None,
    hub: Hub = DEFAULT_HUB,
    as_json: AsJson = False,
) -> None:
    """Retrain from the nodes' curated samples: evaluate, register, start a canary (or
    say why not). Exits 1 when the run registered nothing."""
    with hub_client(hub) as c:
        data = c.post("/v1/retrain", {"reason": reason, "actor": actor, "since_ns": since_ns})

    def render(d: dict[str, Any]) -> None:
        metrics = ", ".join(f"{k}={v:g}" for k, v in sorted(d["metrics"].items()))
        typer.echo(f"run {d['run']}: {d['outcome']}" + (f" ({d['why']})" if d["why"] else ""))
        if d["version"]:
            typer.echo(f"version {d['version']} (parent {d['parent']}), rollout {d['rollout_id']}")
        if metrics:
            typer.echo(f"metrics: {metrics}")

    emit(data, as_json, render)
    if data["version"] is None:
        raise typer.Exit(1)


@app.command("runs")
def runs(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    hub: Hub = DEFAULT_HUB,
    as_json: AsJson = False,
) -> None:
    """Retraining runs: reason, actor, outcome, version, rollout."""
    with hub_client(hub) as c:
        data = c.get("/v1/retrain/runs", limit=limit)

    def render(d: dict[str, Any]) -> None:
        from rich.table import Table

        t = Table(title=f"retraining runs ({len(d['runs'])})")
        for col in ("run", "started", "actor", "reason", "outcome", "version", "rollout", "why"):
            t.add_column(col)
        for r in d["runs"]:
            t.add_row(
                str(r["id"]),
                when(r["started_ns"]),
                r["actor"],
                r["reason"],
                r["outcome"],
                r["version"] or "-",
                str(r["rollout_id"] or "-"),
                r["detail"].get("why", ""),
            )
        _print(t)

    emit(data, as_json, render)

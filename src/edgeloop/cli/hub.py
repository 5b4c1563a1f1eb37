"""``edgeloop hub``: serve the hub's API; migrate its database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from edgeloop.hub.store import HubStore

app = typer.Typer(help="Run the hub.", no_args_is_help=True)

DB_HELP = (
    "SQLAlchemy URL of the hub store: sqlite:///PATH.db or postgresql+psycopg://USER@HOST:PORT/DB."
)


@app.command("serve")
def serve(
    db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///edgeloop-hub.db",
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Serve the hub API (ingest, queries, OpenAPI at /docs) until interrupted.

    The database schema is upgraded to this release's revision first.
    """
    import uvicorn

    from edgeloop.hub.app import create_app

    store = _open(db)
    uvicorn.run(create_app(store), host=host, port=port, log_level="warning")


@app.command("migrate")
def migrate(
    db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///edgeloop-hub.db",
) -> None:
    """Upgrade the hub database's schema to this release's revision (creating the tables
    of an empty database; adopting one made before migrations when it matches the
    baseline). `hub serve` does the same on start; this does it explicitly."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from edgeloop.hub import migrate as m

    shown = _shown(db)
    try:
        up = m.upgrade_url(db)
    except (ValueError, ArgumentError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    except m.SchemaError as exc:
        typer.echo(f"error: {shown}: {exc}", err=True)
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        typer.echo(
            f"error: {shown}: the database failed: {exc.__class__.__name__}: {exc}", err=True
        )
        raise typer.Exit(1) from None
    if up.before == up.after:
        typer.echo(f"{shown}: already at {up.after}")
        return
    how = " (stamped as the baseline: made before migrations)" if up.stamped else ""
    typer.echo(f"{shown}: {up.before or 'none'} -> {up.after}{how}")


def _open(db: str) -> HubStore:
    from sqlalchemy.exc import ArgumentError

    from edgeloop.hub.migrate import SchemaError
    from edgeloop.hub.store import HubStore

    try:
        return HubStore.open(db)
    except (ValueError, ArgumentError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    except SchemaError as exc:
        typer.echo(f"error: {_shown(db)}: {exc}", err=True)
        raise typer.Exit(1) from None


def _shown(db: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(db).render_as_string(hide_password=True)
    except ArgumentError:
        return db

"""``edgeloop hub``: serve the hub's API."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Run the hub.", no_args_is_help=True)


@app.command("serve")
def serve(
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the hub store.")] = (
        "sqlite:///edgeloop-hub.db"
    ),
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Serve the hub API (ingest, queries, OpenAPI at /docs) until interrupted."""
    import uvicorn

    from edgeloop.hub.app import create_app
    from edgeloop.hub.store import HubStore

    store = HubStore(db)
    store.create_all()
    uvicorn.run(create_app(store), host=host, port=port, log_level="warning")

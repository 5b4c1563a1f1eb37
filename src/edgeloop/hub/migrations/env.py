"""Alembic environment of the hub: runs migrations on the connection it is given.

:mod:`edgeloop.hub.migrate` opens the connection (and its transaction, with a lock
that keeps two hub processes from migrating at once) and passes it in
``config.attributes["connection"]``; this file only configures the context. Without a
connection (the plain ``alembic`` command with ``sqlalchemy.url`` set), it opens one.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from edgeloop.hub.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: later revisions rebuild tables in batches.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        _run(given)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url: use edgeloop hub migrate --db URL")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported for the hub schema")
run_migrations_online()

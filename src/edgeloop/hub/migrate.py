"""Schema migrations of the hub store (Alembic, configured in code: no ``alembic.ini``).

:func:`upgrade` brings a database to the newest revision in one transaction:

* an empty database gets every revision from the baseline on;
* a database at an older revision gets the revisions after it;
* a database created before migrations existed (hub tables, no ``alembic_version``) is
  compared with the baseline revision: if its tables, columns, keys and indexes are the
  baseline's, it is stamped with the baseline and upgraded from there; otherwise
  :class:`SchemaError` says what differs and what to do;
* a database at a revision this release does not know (written by a newer release) is
  refused with :class:`SchemaError`.

Two hub processes starting at once do not migrate twice: the transaction first takes a
lock (``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), and the
second one finds the database at head.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from edgeloop.hub.engine import HubEngine, open_engine

MIGRATIONS = Path(__file__).with_name("migrations")
"""Alembic's script location inside the package."""

BASELINE = "0001"
"""The revision that equals the schema of hub databases created before migrations."""

BASELINE_TABLES = frozenset(
    ("nodes", "incarnations", "received", "events", "summaries", "raw_frames", "dead_letters")
)

_LOCK_KEY = 0x6564_6765_6C6F_6F70 >> 1  # "edgeloop", as a positive bigint


class SchemaError(RuntimeError):
    """The database's schema cannot be brought to this release's head automatically."""


class Upgrade(NamedTuple):
    """What :func:`upgrade` did: revision before (``None``: none recorded) and after."""

    before: str | None
    after: str
    stamped: bool = False


@functools.cache
def scripts() -> ScriptDirectory:
    """The package's revisions (read once per process)."""
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision of this release."""
    rev = scripts().get_current_head()
    assert rev is not None
    return rev


def current(conn: Connection) -> str | None:
    """The revision recorded in the database (``None``: no ``alembic_version`` row)."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade_url(url: str) -> Upgrade:
    """Open ``url``, :func:`upgrade` it, close it."""
    hub = open_engine(url)
    try:
        return upgrade(hub)
    finally:
        hub.engine.dispose()


def upgrade(hub: HubEngine, revision: str = "head") -> Upgrade:
    """Bring the database to ``revision`` (default: this release's head), in one
    transaction under a migration lock (see the module docstring).

    Raises:
        SchemaError: the database has hub tables that are not the baseline's and no
            revision, or a revision this release does not know.
        sqlalchemy.exc.SQLAlchemyError: the database failed (nothing was changed).
    """
    with hub.lock, hub.engine.connect() as conn:
        conn.execution_options(edgeloop_write=True)
        with conn.begin():
            if hub.backend == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            before = current(conn)
            target = head() if revision == "head" else revision
            if before == target:
                return Upgrade(before, target)
            if before is not None and _unknown(before):
                raise SchemaError(
                    f"the hub database is at schema revision {before!r}, which this release "
                    f"of edgeloop does not know (its newest is {head()!r}): it was migrated "
                    "by a newer release; run that release, or restore a backup"
                )
            cfg = _config(conn)
            stamped = False
            if before is None and BASELINE_TABLES & set(inspect(conn).get_table_names()):
                problems = baseline_mismatch(conn)
                if problems:
                    raise SchemaError(
                        "the hub database has hub tables but no schema revision "
                        "(alembic_version), and they differ from the baseline revision "
                        f"{BASELINE}: {'; '.join(problems)}. Move its data to a new "
                        "database (edgeloop hub migrate --db NEW_URL creates one), or fix "
                        f"the tables by hand and run `edgeloop hub migrate` again"
                    )
                command.stamp(cfg, BASELINE)
                stamped = True
            command.upgrade(cfg, revision)
            return Upgrade(before, current(conn) or target, stamped)


def baseline_mismatch(conn: Connection) -> list[str]:
    """How the hub tables of ``conn`` differ from the baseline revision's (empty: they
    match). Compared per table: column names and nullability, primary key, foreign keys
    (columns and referred table) and index names and columns; types are not compared
    (they differ by backend)."""
    reference = _baseline_shape()
    actual = _shape(conn, BASELINE_TABLES)
    problems: list[str] = []
    for table in sorted(BASELINE_TABLES):
        want, have = reference.get(table), actual.get(table)
        if have is None:
            problems.append(f"table {table} is missing")
            continue
        assert want is not None
        for part, w in want.items():
            h = have[part]
            if w != h:
                missing, extra = sorted(w - h), sorted(h - w)
                problems.append(
                    f"{table} {part}: missing {missing or 'nothing'}, extra {extra or 'nothing'}"
                )
    return problems


@functools.cache
def _baseline_shape() -> dict[str, dict[str, frozenset[str]]]:
    """The shape of a scratch in-memory SQLite database migrated to the baseline."""
    hub = open_engine("sqlite://")
    try:
        upgrade(hub, BASELINE)
        with hub.engine.connect() as conn:
            return _shape(conn, BASELINE_TABLES)
    finally:
        hub.engine.dispose()


def _shape(conn: Connection, tables: frozenset[str]) -> dict[str, dict[str, frozenset[str]]]:
    insp = inspect(conn)
    out: dict[str, dict[str, frozenset[str]]] = {}
    for table in set(insp.get_table_names()) & tables:
        pk = insp.get_pk_constraint(table)
        out[table] = {
            "columns": frozenset(
                f"{c['name']}{'' if c['nullable'] else ' not null'}"
                for c in insp.get_columns(table)
            ),
            "primary key": frozenset([f"({', '.join(pk['constrained_columns'])})"]),
            "foreign keys": frozenset(
                f"({', '.join(fk['constrained_columns'])}) -> {fk['referred_table']}"
                for fk in insp.get_foreign_keys(table)
            ),
            "indexes": frozenset(
                f"{ix['name']}({', '.join(str(c) for c in ix['column_names'])})"
                for ix in insp.get_indexes(table)
            ),
        }
    return out


def _unknown(revision: str) -> bool:
    return all(s.revision != revision for s in scripts().walk_revisions())


def _config(conn: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


__all__ = [
    "BASELINE",
    "BASELINE_TABLES",
    "MIGRATIONS",
    "SchemaError",
    "Upgrade",
    "baseline_mismatch",
    "current",
    "head",
    "scripts",
    "upgrade",
    "upgrade_url",
]

"""Schema migrations (Alembic) on SQLite and PostgreSQL: fresh databases, databases made
before migrations existed, unknown revisions, concurrent starts, the CLI."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from edgeloop.cli.main import app as cli
from edgeloop.hub import migrate
from edgeloop.hub import schema as t
from edgeloop.hub.engine import open_engine
from edgeloop.hub.migrate import BASELINE, SchemaError
from edgeloop.hub.store import HubStore

from .conftest import summaries_item, summary_batch

HEAD = migrate.head()


def _diff(store: HubStore) -> list[object]:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, t.metadata))


def _revision(store: HubStore) -> str | None:
    with store.engine.connect() as conn:
        return migrate.current(conn)


def _pre_migration_db(url: str) -> None:
    """A hub database as ``create_all`` made it before migrations: the baseline tables,
    no ``alembic_version``."""
    hub = open_engine(url)
    try:
        migrate.upgrade(hub, BASELINE)
        with hub.engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
    finally:
        hub.engine.dispose()


def test_there_is_one_head_after_the_baseline() -> None:
    oldest_first = [r.revision for r in reversed(list(migrate.scripts().walk_revisions()))]
    assert oldest_first[0] == BASELINE
    assert len(migrate.scripts().get_heads()) == 1 and HEAD != BASELINE


def test_fresh_database_is_migrated_to_head_and_matches_the_models(db_url: str) -> None:
    store = HubStore(db_url)
    up = store.upgrade()
    assert (up.before, up.after, up.stamped) == (None, HEAD, False)
    assert _revision(store) == HEAD
    assert _diff(store) == []
    # Idempotent: a second start changes nothing.
    assert store.upgrade() == migrate.Upgrade(HEAD, HEAD)
    store.close()


def test_every_revision_downgrades_and_upgrades_again(db_url: str) -> None:
    store = HubStore.open(db_url)
    with store.engine.connect() as conn, conn.begin():
        cfg = migrate._config(conn)
        command.downgrade(cfg, "base")
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        command.upgrade(cfg, "head")
    assert _revision(store) == HEAD and _diff(store) == []
    store.close()


def test_database_made_before_migrations_is_stamped_and_upgraded(db_url: str) -> None:
    _pre_migration_db(db_url)
    store = HubStore(db_url)
    up = store.upgrade()
    assert (up.before, up.after, up.stamped) == (None, HEAD, True)
    assert _diff(store) == []
    # Its data survived the upgrade (SQLite rebuilds tables in batch mode) and ingest works.
    store.ingest("gw1", 0, [summaries_item(1, summary_batch(["a"], [0], [5]))], {}, now_ns=1)
    store.close()


def test_data_survives_the_upgrade_from_the_baseline(db_url: str) -> None:
    hub = open_engine(db_url)
    migrate.upgrade(hub, BASELINE)
    hub.engine.dispose()
    # Ingest at the baseline schema: the store's statements work on every revision.
    old = HubStore(db_url)
    old.ingest("gw1", 0, [summaries_item(1, summary_batch(["a", "b"], [0, 0], [5, 6]))], {}, 1)
    old.close()
    store = HubStore.open(db_url)
    assert [s.count for s in store.summaries()] == [5, 6]
    assert (
        store.ingest(
            "gw1", 0, [summaries_item(1, summary_batch(["a"], [0], [5]))], {}, 2
        ).duplicates
        == 1
    )
    store.close()


def test_pre_migration_database_that_differs_is_refused_with_what_to_do(db_url: str) -> None:
    _pre_migration_db(db_url)
    hub = open_engine(db_url)
    with hub.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_events_t"))
        conn.execute(text("ALTER TABLE summaries ADD COLUMN extra INTEGER"))
    hub.engine.dispose()
    with pytest.raises(SchemaError) as info:
        HubStore.open(db_url)
    message = str(info.value)
    assert "no schema revision" in message and f"baseline revision {BASELINE}" in message
    assert "events indexes: missing ['ix_events_t(t_start_ns)']" in message
    assert "summaries columns: missing nothing, extra ['extra']" in message
    assert "edgeloop hub migrate" in message
    # Nothing was changed: still no revision.
    store = HubStore(db_url)
    assert _revision(store) is None
    store.close()


def test_database_of_a_newer_release_is_refused(db_url: str) -> None:
    store = HubStore.open(db_url)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaError, match=r"revision '9999'.*newer release"):
        store.upgrade()
    store.close()


def test_unrelated_tables_do_not_make_a_database_pre_migration(db_url: str) -> None:
    store = HubStore(db_url)
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE someone_elses (id INTEGER PRIMARY KEY)"))
    assert store.upgrade().stamped is False
    assert [(op, tb.name) for op, tb in _diff(store)] == [("remove_table", "someone_elses")]
    store.close()


def test_concurrent_starts_migrate_once(db_url: str) -> None:
    # Two hub processes starting on one new database: the migration lock makes the second
    # one wait and find the database at head.
    stores = [HubStore(db_url), HubStore(db_url)]
    barrier = threading.Barrier(2)
    results: list[migrate.Upgrade] = []
    errors: list[BaseException] = []

    def run(s: HubStore) -> None:
        barrier.wait()
        try:
            results.append(s.upgrade())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert sorted(r.before or "" for r in results) == ["", HEAD]
    assert _diff(stores[0]) == []
    for s in stores:
        s.close()


def test_cli_migrate_upgrades_and_reports(db_url: str) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["hub", "migrate", "--db", db_url])
    assert first.exit_code == 0, first.output
    assert f"none -> {HEAD}" in first.output
    again = runner.invoke(cli, ["hub", "migrate", "--db", db_url])
    assert again.exit_code == 0 and f"already at {HEAD}" in again.output


def test_cli_migrate_refusal_is_one_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _pre_migration_db(url)
    hub = open_engine(url)
    with hub.engine.begin() as conn:
        conn.execute(text("DROP TABLE dead_letters"))
    hub.engine.dispose()
    result = CliRunner().invoke(cli, ["hub", "migrate", "--db", url])
    assert result.exit_code == 1
    assert "table dead_letters is missing" in result.output
    assert "Traceback" not in result.output


def test_cli_migrate_names_an_unsupported_backend() -> None:
    result = CliRunner().invoke(cli, ["hub", "migrate", "--db", "mysql://x@localhost/db"])
    assert result.exit_code == 2 and "not supported" in result.output


def test_cli_serve_refuses_a_database_it_cannot_migrate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _pre_migration_db(url)
    hub = open_engine(url)
    with hub.engine.begin() as conn:
        conn.execute(text("ALTER TABLE nodes ADD COLUMN colour TEXT"))
    hub.engine.dispose()
    args = ["hub", "serve", "--db", url, "--port", "1", "--data-dir", str(tmp_path / "data")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "nodes columns: missing nothing, extra ['colour']" in result.output


def test_0003_keeps_events_across_downgrade_and_upgrade(db_url: str) -> None:
    # Events stored from blocks survive a downgrade to 0002 (without their features and
    # raw context, which 0002 has nowhere to keep) and an upgrade again.
    import json

    from edgeloop.hub.app import IngestService
    from edgeloop.outbox.base import Entry, Priority
    from edgeloop.telemetry import codec
    from edgeloop.transport.base import Batch

    from .conftest import event

    store = HubStore.open(db_url)
    payload = codec.encode_events([event(), event("m02")])
    batch = Batch("gw1", 0, (Entry(1, Priority.EVENT, "events", payload),), {}, 1)
    IngestService(store).ingest(codec.encode_batch(batch))
    assert [e.features for e in store.events()] == [{"rms": 2.5, "kurtosis": 4.0}] * 2
    with store.engine.connect() as conn, conn.begin():
        cfg = migrate._config(conn)
        command.downgrade(cfg, "0002")
        rows = conn.execute(text("SELECT machine, features FROM events ORDER BY id")).all()
        features = [f if isinstance(f, dict) else json.loads(f) for _, f in rows]
        assert ([m for m, _ in rows], features) == (["m01", "m02"], [{}, {}])
        command.upgrade(cfg, "head")
    assert [(e.machine, e.features) for e in store.events()] == [("m01", {}), ("m02", {})]
    assert _diff(store) == []
    store.close()

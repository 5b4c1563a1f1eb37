"""Fixtures and builders of the hub tests: real stores on SQLite and on PostgreSQL.

``store``, ``file_store`` and ``db_url`` are parametrised over the backends: on SQLite an
in-memory database (``store``) or a file in the test's tmp dir; on PostgreSQL a schema of
its own in a database created for the test session (``tests/pg_service.py`` finds or
starts the server, or fails with a one-line instruction).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from edgeloop.hub.store import HubStore, IngestItem
from edgeloop.telemetry.records import Event, Severity, SummaryBatch
from pg_service import fresh_database, pg_server, schema_url

SEC = 1_000_000_000


def summary_batch(
    sensors: Sequence[str], t0s: Sequence[int], counts: Sequence[int], period_ns: int = SEC
) -> SummaryBatch:
    """One row per (sensor, t0) pair given; mean = row number (so rows are told apart)."""
    names = tuple(dict.fromkeys(sensors))
    idx = np.array([names.index(s) for s in sensors], dtype=np.uint32)
    n = len(sensors)
    mean = np.arange(n, dtype=np.float32)
    return SummaryBatch(
        sensor=idx,
        t0_ns=np.asarray(t0s, dtype=np.int64),
        t1_ns=np.asarray(t0s, dtype=np.int64) + period_ns,
        count=np.asarray(counts, dtype=np.int64),
        mean=mean,
        std=np.full(n, 0.5, np.float32),
        min=mean - 1,
        max=mean + 1,
        sensor_names=names,
    )


def event(
    machine: str = "m01", t_start_ns: int = 10 * SEC, node: str = "gw1", **kw: object
) -> Event:
    args: dict[str, object] = {
        "node": node,
        "machine": machine,
        "sensor": f"{machine}.vib_x",
        "severity": Severity.ANOMALY,
        "t_start_ns": t_start_ns,
        "t_end_ns": t_start_ns + SEC // 2,
        "detected_ns": t_start_ns + SEC,
        "score": 0.9,
        "threshold": 0.7,
        "detector": "iforest",
        "reason": "rms up",
        "features": {"rms": 2.5, "kurtosis": 4.0},
    }
    args.update(kw)
    return Event(**args)  # type: ignore[arg-type]


def summaries_item(seq: int, batch: SummaryBatch) -> IngestItem:
    return IngestItem(seq, 1, "summaries", batch.samples, 100 + len(batch), decoded=batch)


def events_item(seq: int, events: list[Event]) -> IngestItem:
    return IngestItem(seq, 2, "events", 0, 50 * len(events), decoded=events)


BACKENDS = ("sqlite", "postgresql")


@contextlib.contextmanager
def failing_inserts(store: HubStore, table: str, message: str) -> Iterator[None]:
    """Inside the block every insert into ``table`` fails with ``message`` (a trigger,
    as a full disk or a lost server would make it fail)."""
    if store.backend == "sqlite":
        create = [
            f"CREATE TRIGGER fail BEFORE INSERT ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        ]
        drop = ["DROP TRIGGER fail"]
    else:
        create = [
            "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$",
            f"CREATE TRIGGER fail BEFORE INSERT ON {table} EXECUTE FUNCTION fail()",
        ]
        drop = [f"DROP TRIGGER fail ON {table}", "DROP FUNCTION fail()"]
    with store.engine.begin() as conn:
        for sql in create:
            conn.exec_driver_sql(sql)
    try:
        yield
    finally:
        with store.engine.begin() as conn:
            for sql in drop:
                conn.exec_driver_sql(sql)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """URL of a database created for this test session (dropped at its end)."""
    try:
        server = pg_server()
        admin = server.__enter__()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        with fresh_database(admin) as url:
            yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL URL whose ``search_path`` is a fresh schema of this test."""
    with schema_url(request.getfixturevalue("pg_database")) as url:
        yield url


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database of this test: a SQLite file, or a PostgreSQL schema of its own."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest) -> Iterator[HubStore]:
    """An upgraded store: in-memory SQLite, or a PostgreSQL schema of its own."""
    url = "sqlite://" if backend == "sqlite" else str(request.getfixturevalue("pg_url"))
    s = HubStore.open(url)
    yield s
    s.close()


@pytest.fixture
def file_store(db_url: str) -> Iterator[HubStore]:
    s = HubStore.open(db_url)
    yield s
    s.close()

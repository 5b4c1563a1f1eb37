"""Engines for the hub store: SQLite (memory or a WAL file) or PostgreSQL via psycopg 3.

Every write transaction of the store is opened with the execution option
``edgeloop_write=True``; on SQLite it then starts ``BEGIN IMMEDIATE`` (the write lock is
taken before the first read, so two writers serialize instead of deadlocking on a lock
upgrade). On PostgreSQL the store locks rows itself (``SELECT ... FOR UPDATE``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import StaticPool

BACKENDS = ("sqlite", "postgresql")
"""Database backends the hub store supports."""


@dataclass(frozen=True, slots=True)
class HubEngine:
    """An engine plus what the store needs to know about it.

    Attributes:
        engine: the SQLAlchemy engine.
        backend: ``"sqlite"`` or ``"postgresql"``.
        lock: held around every use of a connection; a real lock only for an in-memory
            SQLite database, whose single connection all threads share.
    """

    engine: Engine
    backend: str
    lock: contextlib.AbstractContextManager[Any]


def open_engine(url: str, *, echo: bool = False) -> HubEngine:
    """An engine for ``url`` (``sqlite://``, ``sqlite:///path.db`` or
    ``postgresql+psycopg://user@host:port/db``).

    Raises:
        ValueError: the URL names another backend (the message names it).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in BACKENDS:
        raise ValueError(
            f"hub database URL {parsed.render_as_string(hide_password=True)!r}: backend "
            f"{backend!r} is not supported; use one of {BACKENDS}"
        )
    if backend == "postgresql":
        engine = create_engine(url, echo=echo)
        _ping_when_idle(engine)
        return HubEngine(engine, backend, contextlib.nullcontext())
    if parsed.database in (None, "", ":memory:"):
        # One connection shared by every thread; the lock serializes its use.
        engine = create_engine(
            url,
            echo=echo,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
        )
        _sqlite_pragmas(engine, wal=False)
        return HubEngine(engine, backend, threading.RLock())
    engine = create_engine(
        url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30.0}
    )
    _sqlite_pragmas(engine, wal=True)
    return HubEngine(engine, backend, contextlib.nullcontext())


IDLE_PING_S = 1.0
"""A pooled PostgreSQL connection idle for longer is pinged before it is used again."""


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout only when it sat idle for over
    :data:`IDLE_PING_S` (a server restart or an idle timeout may have closed it): a
    connection in steady use, as ingest keeps one, costs no round trip per batch. One
    that dies while in use fails its transaction and is invalidated; the store retries
    that batch on a new connection (``HubStore.ingest_report``)."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["edgeloop_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("edgeloop_idle_since")
        if since is None or time.monotonic() - since <= IDLE_PING_S:
            return
        try:
            with dbapi_conn.cursor() as cur:
                cur.execute("SELECT 1")
            dbapi_conn.rollback()
        except Exception as exc:
            # The pool discards this connection and checks out a new one.
            raise DisconnectionError(f"pooled connection is gone: {exc}") from exc


def _sqlite_pragmas(engine: Engine, *, wal: bool) -> None:
    """WAL and foreign keys on every connection; SQLAlchemy emits BEGIN itself, so that a
    write transaction can start ``IMMEDIATE`` (take the write lock before reading)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver must not emit BEGIN on its own
        cur = dbapi_conn.cursor()
        try:
            if wal:
                _wal(cur)
                # FULL: the hub acknowledges a batch only after its commit, and the node
                # then drops it, so a commit must survive a power loss, not only a crash.
                cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("edgeloop_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _wal(cur: Any, attempts: int = 50) -> None:
    """Switch the database file to WAL once; it stays WAL for every later connection.

    Switching takes an exclusive lock without waiting on the busy timeout, so hubs that
    open a new database at the same moment retry briefly instead of failing.
    """
    for i in range(attempts):
        if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or i == attempts - 1:
                raise
            time.sleep(0.02 * (i + 1))


__all__ = ["BACKENDS", "IDLE_PING_S", "HubEngine", "open_engine"]

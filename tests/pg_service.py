"""PostgreSQL for the tests: the server on 127.0.0.1:5432, or a private one.

Order of preference:

1. ``EDGELOOP_TEST_PG`` (a SQLAlchemy URL of a maintenance database, e.g.
   ``postgresql+psycopg://postgres@db:5432/postgres``), if set;
2. the server on 127.0.0.1:5432 (trust auth, user ``postgres``), if it answers (and
   ``EDGELOOP_TEST_PG_PRIVATE`` is not set);
3. a private server: ``initdb`` + ``pg_ctl`` of the installed PostgreSQL in a temporary
   directory, on a free port (as root through ``runuser -u postgres``);
4. otherwise :class:`RuntimeError` with a one-line instruction (:data:`INSTALL_HINT`).

On that server, :func:`fresh_database` creates ``edgeloop_test_<random>`` for a test
session and drops it at the end; :func:`schema_url` gives each test its own schema in it
(``search_path``), so tests never see each other's tables.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

INSTALL_HINT = (
    "PostgreSQL is needed: start one on 127.0.0.1:5432 with trust auth for user postgres, "
    "set EDGELOOP_TEST_PG=postgresql+psycopg://USER@HOST:PORT/postgres, or install the "
    "server binaries (apt-get install postgresql)"
)
LOCAL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def pg_server() -> Iterator[str]:
    """The URL of a maintenance database on a server the tests may use (see the module
    docstring); a private server is stopped on exit."""
    given = os.environ.get("EDGELOOP_TEST_PG")
    if given:
        yield given
        return
    if not os.environ.get("EDGELOOP_TEST_PG_PRIVATE") and _answers(LOCAL):
        yield LOCAL
        return
    initdb = _binary("initdb")
    if initdb is None:
        raise RuntimeError(INSTALL_HINT)
    with _private_server(initdb) as url:
        yield url


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """Create ``edgeloop_test_<random>`` on the server of ``admin_url``; drop it on exit."""
    name = f"edgeloop_test_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextlib.contextmanager
def schema_url(database_url: str) -> Iterator[str]:
    """A fresh schema ``t_<random>`` in the database, as the URL's ``search_path``;
    dropped (with everything in it) on exit."""
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


def _answers(url: str) -> bool:
    u = make_url(url)
    try:
        psycopg.connect(
            host=u.host, port=u.port, user=u.username, dbname=u.database, connect_timeout=3
        ).close()
    except psycopg.Error:
        return False
    return True


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@contextlib.contextmanager
def _private_server(initdb: str) -> Iterator[str]:
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    # Not under pytest's tmp dirs: their parents are private to root, and the server
    # runs as postgres when we are root.
    data = Path(tempfile.mkdtemp(prefix="edgeloop-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    log = data / "server.log"
    try:
        subprocess.run(
            [*as_user, initdb, "-D", str(data / "db"), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
        )
        opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data / "db"), "-o", opts, "-l", str(log), "-w", "start"],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(data, ignore_errors=True)
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
        raise RuntimeError(f"private PostgreSQL did not start ({detail}); {INSTALL_HINT}") from exc
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data / "db"), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

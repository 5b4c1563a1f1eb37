"""Real services for the chaos suite and the integration tests: Mosquitto and PostgreSQL.

:class:`Mosquitto` starts ``/usr/sbin/mosquitto`` (or ``mosquitto`` on PATH) on a free
loopback port with its own configuration and persistence directory, and can stop and
restart it on the same port (broker restarts). Without the binary, callers use a broker
already listening on 127.0.0.1:1883 (:func:`broker_endpoint`); without either they fail
with a one-line instruction (``make test`` installs the package when it runs as root).

PostgreSQL, in order of preference (:func:`pg_server`):

1. ``EDGELOOP_TEST_PG`` (a SQLAlchemy URL of a maintenance database, e.g.
   ``postgresql+psycopg://postgres@db:5432/postgres``), if set;
2. the server on 127.0.0.1:5432 (trust auth, user ``postgres``), if it answers (and
   ``EDGELOOP_TEST_PG_PRIVATE`` is not set);
3. a private server: ``initdb`` + ``pg_ctl`` of the installed PostgreSQL in a temporary
   directory, on a free port (as root through ``runuser -u postgres``);
4. otherwise :class:`RuntimeError` with a one-line instruction (:data:`PG_INSTALL_HINT`).

On that server, :func:`fresh_database` creates ``edgeloop_test_<random>`` for a run and
drops it at the end; :func:`schema_url` gives a test its own schema in it
(``search_path``), so tests never see each other's tables.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
INSTALL_HINT = (
    "no MQTT broker: install Mosquitto (`apt-get install mosquitto`, or run `make test` "
    "as root) or start one on 127.0.0.1:1883"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def mosquitto_binary() -> str | None:
    for path in MOSQUITTO_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("mosquitto")


class Mosquitto:
    """A private Mosquitto on 127.0.0.1 (random free port), persistence in ``workdir``.

    ``extra`` lines are appended to the configuration (e.g. ``max_queued_messages 10``).
    """

    def __init__(self, binary: str, workdir: Path, extra: tuple[str, ...] = ()) -> None:
        self.binary = binary
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "set_tcp_nodelay true",
            # Started as root, Mosquitto switches to its own user, which cannot write a
            # private directory of ours (no log, no persistence file): stay who we are.
            *(["user root"] if os.geteuid() == 0 else []),
            *self.extra,
        ]
        self.config.write_text("\n".join(lines) + "\n")

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        self._write_config()
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while not port_open(self.host, self.port, 0.2):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): {err[-500:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not listen on {self.port} in {timeout_s} s")
            time.sleep(0.02)
        return self

    def stop(self, kill: bool = False) -> None:
        """Stop the broker (SIGTERM saves the persistence file; ``kill`` is SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()

    def restart(self, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()


@contextlib.contextmanager
def broker_endpoint(workdir: Path) -> Iterator[tuple[str, int, Mosquitto | None]]:
    """Yield ``(host, port, Mosquitto | None)`` of a usable broker or raise with
    :data:`INSTALL_HINT`."""
    binary = mosquitto_binary()
    if binary is not None:
        broker = Mosquitto(binary, workdir).start()
        try:
            yield broker.host, broker.port, broker
        finally:
            broker.stop()
    elif port_open("127.0.0.1", 1883):
        yield "127.0.0.1", 1883, None
    else:
        raise RuntimeError(INSTALL_HINT)


PG_INSTALL_HINT = (
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
        raise RuntimeError(PG_INSTALL_HINT)
    with _private_server(initdb) as url:
        yield url


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """Create ``edgeloop_test_<random>`` on the server of ``admin_url``; drop it on exit."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

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
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

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
    import psycopg
    from sqlalchemy.engine import make_url

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
    port = free_port()
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
        raise RuntimeError(
            f"private PostgreSQL did not start ({detail}); {PG_INSTALL_HINT}"
        ) from exc
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data / "db"), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)

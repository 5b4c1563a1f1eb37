"""Real services for integration tests: a private Mosquitto broker.

:class:`Mosquitto` starts ``/usr/sbin/mosquitto`` (or ``mosquitto`` on PATH) on a free
loopback port with its own configuration and persistence directory, and can stop and
restart it on the same port (broker-restart tests). Without the binary, tests use a
broker already listening on 127.0.0.1:1883; without either they fail with a one-line
instruction (``make test`` installs the package when it runs as root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class MqttProbe:
    """A plain paho client for tests: records what arrives on ``topic`` (retained
    messages too) and publishes raw bytes with MQTT v5 properties."""

    def __init__(self, host: str, port: int, topic: str | None = None) -> None:
        from edgeloop.transport.mqtt_session import new_client

        self.messages: list[tuple[bytes, dict[str, str], bytes | None]] = []
        self._cond = threading.Condition()
        self.client = new_client(f"probe-{uuid.uuid4().hex[:12]}")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        if topic is not None:
            self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.connect(host, port)
        self.client.loop_start()
        if topic is not None and not subscribed.wait(10):
            raise RuntimeError(f"probe: not subscribed to {topic!r}")

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        from edgeloop.transport.mqtt_session import correlation_of, user_properties

        with self._cond:
            item = (
                bytes(msg.payload),
                user_properties(msg.properties),
                correlation_of(msg.properties),
            )
            self.messages.append(item)
            self._cond.notify_all()

    @property
    def payloads(self) -> list[bytes]:
        with self._cond:
            return [m[0] for m in self.messages]

    def wait_last(self, payload: bytes, timeout_s: float = 15.0) -> None:
        """Wait until the last message received is ``payload``."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: bool(self.messages) and self.messages[-1][0] == payload, timeout_s
            )
        assert ok, f"expected {payload!r} last, got {self.payloads}"

    def wait_count(
        self, n: int, timeout_s: float = 15.0
    ) -> list[tuple[bytes, dict[str, str], bytes | None]]:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.messages) >= n, timeout_s)
            assert ok, f"expected {n} messages, got {len(self.messages)}"
            return list(self.messages)

    def publish(self, topic: str, payload: bytes, properties: Any = None) -> None:
        info = self.client.publish(topic, payload, qos=1, properties=properties)
        info.wait_for_publish(15.0)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

"""Suite-wide settings and fixtures of real services (an MQTT broker)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from services import INSTALL_HINT, Mosquitto, broker_endpoint, mosquitto_binary

# CI and developer machines here are small and shared: generation speed and example
# duration vary with load, which says nothing about the code under test.
settings.register_profile(
    "edgeloop",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("edgeloop")


# -- real services -------------------------------------------------------------------------
@dataclass(frozen=True)
class Broker:
    """An MQTT broker for the tests: ``host:port``; ``proc`` when it is our own."""

    host: str
    port: int
    proc: Mosquitto | None


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker for the session (tests isolate themselves by tenant)."""
    cm = broker_endpoint(tmp_path_factory.mktemp("mosquitto"))
    try:
        host, port, proc = cm.__enter__()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield Broker(host, port, proc)
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Start private brokers that a test may stop, kill and restart."""
    binary = mosquitto_binary()
    if binary is None:
        pytest.fail(INSTALL_HINT + " (this test restarts the broker: it needs the binary)")
    started: list[Mosquitto] = []

    def start(*extra: str) -> Mosquitto:
        b = Mosquitto(binary, tmp_path / f"mosquitto{len(started)}", extra).start()
        started.append(b)
        return b

    yield start
    for b in started:
        with contextlib.suppress(Exception):
            b.stop()

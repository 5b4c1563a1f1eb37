"""Real services for integration tests: re-exported from :mod:`edgeloop.chaos.services`
(one copy, shared with ``edgeloop chaos``), plus :class:`MqttProbe`, a test client."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from edgeloop.chaos.services import (
    INSTALL_HINT,
    MOSQUITTO_CANDIDATES,
    Mosquitto,
    broker_endpoint,
    free_port,
    mosquitto_binary,
    port_open,
)

__all__ = [
    "INSTALL_HINT",
    "MOSQUITTO_CANDIDATES",
    "Mosquitto",
    "MqttProbe",
    "broker_endpoint",
    "free_port",
    "mosquitto_binary",
    "port_open",
]


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

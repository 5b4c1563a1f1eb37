"""Sensors of the factory simulator publishing over MQTT, as real devices would.

:class:`SimPublisher` steps a seeded :class:`~edgeloop.sim.factory.FactorySim` in real
time and publishes, every tick, each sensor's new samples on
``<prefix>/<sensor name>`` (default prefix ``edgeloop/<tenant>/<node>/sensors``, which a
node's ``type: mqtt`` source subscribes to by default): as sensor blocks (one per
regularly spaced run of samples, :mod:`edgeloop.node.sensor_payload`) or as JSON records
(``[{"ts", "value"}, ...]``; the node takes the sensor from the topic).

Publishes are QoS 1 by default; at most ``max_inflight`` wait for their PUBACK (paho
refuses more than 65,535). ``edgeloop sim publish`` is the command line of this module.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import paho.mqtt.client as mqtt

from edgeloop.errors import EdgeloopError
from edgeloop.node.sensor_payload import encode_block, regular_runs
from edgeloop.sim.factory import FactorySim
from edgeloop.telemetry.frame import Frame
from edgeloop.transport.mqtt_session import new_client

__all__ = ["PublishStats", "SimPublisher", "aligned_start", "parse_broker"]

Format = Literal["block", "json"]


def parse_broker(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``HOST``, port 1883) as ``(host, port)``.

    >>> parse_broker("127.0.0.1:1884"), parse_broker("broker.local")
    (('127.0.0.1', 1884), ('broker.local', 1883))
    """
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, 1883
    if not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"--broker: expected HOST:PORT, got {text!r}")
    return host, int(port)


def aligned_start(tick_s: float, clock: Callable[[], int] = time.time_ns) -> int:
    """The next multiple of ``tick_s`` on ``clock``: a simulator started there cuts its
    messages on tick boundaries, so with a tick that divides a second no message spans
    two summary periods (a node's ``ack: covered`` then never counts one twice after a
    crash, docs/sources.md).

    >>> aligned_start(0.1, lambda: 1_234_567_890)
    1300000000
    """
    tick_ns = int(tick_s * 1e9)
    return (clock() // tick_ns + 1) * tick_ns


@dataclass
class PublishStats:
    """What a publisher sent: ``samples`` per sensor name, messages and bytes."""

    messages: int = 0
    payload_bytes: int = 0
    samples: dict[str, int] = field(default_factory=dict)

    @property
    def total_samples(self) -> int:
        return sum(self.samples.values())


class SimPublisher:
    """Publish a simulator's streams to a broker.

    Args:
        sim: the simulated floor (its clock is the samples' time).
        host, port: the broker.
        prefix: topic prefix; each sensor publishes on ``<prefix>/<name>``.
        fmt: ``block`` (float32 sensor blocks) or ``json``.
        qos: publish QoS.
        max_inflight: QoS 1 publishes awaiting a PUBACK, at most.
        client_id: MQTT client id (default: random).
    """

    def __init__(
        self,
        sim: FactorySim,
        host: str,
        port: int,
        prefix: str,
        *,
        fmt: Format = "block",
        qos: int = 1,
        max_inflight: int = 1000,
        client_id: str = "",
    ) -> None:
        if fmt not in ("block", "json"):
            raise ValueError(f"format: 'block' or 'json' (got {fmt!r})")
        self.sim = sim
        self.prefix = prefix.rstrip("/")
        self.fmt = fmt
        self.qos = qos
        self.stats = PublishStats()
        self._names = sim.catalog.names()
        self._periods = [round(1e9 / s.rate_hz) for s in sim.catalog.specs]
        self._max_inflight = max_inflight
        self._inflight: deque[mqtt.MQTTMessageInfo] = deque()
        self._connected = threading.Event()
        client = new_client(client_id)
        client.max_inflight_messages_set(max_inflight)
        client.max_queued_messages_set(0)  # unbounded in paho; bounded by max_inflight here
        client.on_connect = lambda *_: self._connected.set()
        client.on_disconnect = lambda *_: self._connected.clear()
        self.client = client
        self.host, self.port = host, port

    def connect(self, timeout_s: float = 10.0) -> SimPublisher:
        self.client.connect_async(self.host, self.port, keepalive=15)
        self.client.loop_start()
        if not self._connected.wait(timeout_s):
            self.close()
            raise EdgeloopError(f"mqtt://{self.host}:{self.port}: not connected in {timeout_s} s")
        return self

    def close(self, timeout_s: float = 30.0) -> None:
        """Wait for the PUBACKs of what was published, then disconnect."""
        self.flush(timeout_s)
        self.client.disconnect()
        self.client.loop_stop()

    def flush(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._inflight:
            self._inflight.popleft().wait_for_publish(max(0.0, deadline - time.monotonic()))

    def publish_frame(self, frame: Frame) -> None:
        """Publish ``frame`` (samples of the simulator), one message per sensor run."""
        if not len(frame):
            return
        frame = frame if frame.is_sorted() else frame.sorted()
        bounds = np.flatnonzero(np.diff(frame.sensor.astype(np.int64))) + 1
        for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(frame)], strict=True):
            idx = int(frame.sensor[lo])
            name, ts, values = self._names[idx], frame.ts[lo:hi], frame.value[lo:hi]
            topic = f"{self.prefix}/{name}"
            if self.fmt == "block":
                for a, b in regular_runs(ts, self._periods[idx]):
                    self._publish(
                        topic, encode_block("", int(ts[a]), self._periods[idx], values[a:b])
                    )
            else:
                recs = [{"ts": int(t), "value": float(v)} for t, v in zip(ts, values, strict=True)]
                self._publish(topic, json.dumps(recs).encode())
            self.stats.samples[name] = self.stats.samples.get(name, 0) + (hi - lo)

    def _publish(self, topic: str, payload: bytes) -> None:
        while len(self._inflight) >= self._max_inflight:
            self._inflight.popleft().wait_for_publish(30.0)
        info = self.client.publish(topic, payload, qos=self.qos)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise EdgeloopError(f"publish on {topic!r} failed: {mqtt.error_string(info.rc)}")
        if self.qos > 0:
            self._inflight.append(info)
        self.stats.messages += 1
        self.stats.payload_bytes += len(payload)

    def run(
        self,
        duration_s: float | None,
        tick_s: float = 0.1,
        clock: Callable[[], int] = time.time_ns,
        stop: threading.Event | None = None,
    ) -> PublishStats:
        """Publish in real time: each tick's samples once the clock has passed them."""
        tick_ns = int(tick_s * 1e9)
        until = self.sim.now_ns + int(duration_s * 1e9) if duration_s is not None else 2**62
        while self.sim.now_ns < until and not (stop is not None and stop.is_set()):
            step = min(tick_ns, until - self.sim.now_ns)
            wait = (self.sim.now_ns + step - clock()) / 1e9
            if wait > 0:
                time.sleep(wait)
            self.publish_frame(self.sim.step(step))
        self.flush()
        return self.stats

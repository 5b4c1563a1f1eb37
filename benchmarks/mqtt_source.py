"""MQTT source drain rate: samples/s a node's ``MqttSource`` takes from a broker, beside
a plain paho-mqtt subscriber draining the same queue (the peer).

Workload: ``--messages`` sensor blocks of ``--values`` float32 values (one 2 kHz sensor,
consecutive blocks) are published at QoS 1 while the subscriber's persistent session is
offline, so the broker (a private Mosquitto, ``max_queued_messages 0``: unbounded) holds
them all; then the subscriber connects and the clock runs until the last sample is in.

* ``paho``: a paho client (QoS 1, automatic PUBACK on receipt, the same Receive
  Maximum) that turns each payload into a numpy array (``np.frombuffer``) and counts it.
* ``edgeloop``: :class:`~edgeloop.node.mqtt_source.MqttSource` (manual PUBACK after the
  hand-over, full decode and validation of each block into frames, merging), iterated by
  a consumer that only counts.

Runs alternate between the two; medians over ``--runs``. The load average is printed:
this machine is shared.

    .venv/bin/python benchmarks/mqtt_source.py --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.chaos.services import Mosquitto, mosquitto_binary
from edgeloop.node.mqtt_source import MqttSource
from edgeloop.node.sensor_payload import BLOCK_HEADER_SIZE, encode_block
from edgeloop.telemetry.frame import SensorCatalog, SensorSpec
from edgeloop.transport.mqtt_session import connect_properties, new_client

CAT = SensorCatalog.of([SensorSpec("m1.vib", "m1")])
TOPIC = "edgeloop/bench/gw1/sensors/m1.vib"


def _session(host: str, port: int, client_id: str, receive_max: int) -> None:
    """Create the subscriber's persistent session, then leave it offline."""
    done = threading.Event()
    c = new_client(client_id)
    c.on_connect = lambda cl, *_: cl.subscribe(TOPIC, qos=1)
    c.on_subscribe = lambda *_: done.set()
    c.connect(host, port, clean_start=False, properties=connect_properties(3600, receive_max))
    c.loop_start()
    assert done.wait(10)
    c.disconnect()
    c.loop_stop()


def _publish(host: str, port: int, messages: int, values: int) -> None:
    c = new_client(f"pub-{uuid.uuid4().hex[:8]}")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect(host, port)
    c.loop_start()
    vals = np.random.default_rng(1).normal(size=values).astype(np.float32)
    infos = []
    for i in range(messages):
        infos.append(c.publish(TOPIC, encode_block("", i * values * 500_000, 500_000, vals), 1))
        if len(infos) >= 1000:
            for info in infos:
                info.wait_for_publish(30)
            infos.clear()
    for info in infos:
        info.wait_for_publish(30)
    c.disconnect()
    c.loop_stop()


def run_paho(host: str, port: int, client_id: str, total: int, receive_max: int) -> float:
    got = [0]
    done = threading.Event()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        arr = np.frombuffer(msg.payload, np.float32, offset=BLOCK_HEADER_SIZE)
        got[0] += len(arr)
        if got[0] >= total:
            done.set()

    c = new_client(client_id)
    c.on_message = on_message
    t0 = time.perf_counter()
    c.connect(host, port, clean_start=False, properties=connect_properties(3600, receive_max))
    c.loop_start()
    assert done.wait(300), f"paho: {got[0]} of {total}"
    dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return total / dt


def run_edgeloop(host: str, port: int, client_id: str, total: int, receive_max: int) -> float:
    async def go() -> float:
        src = MqttSource(CAT, host, port, TOPIC, client_id, receive_maximum=receive_max)
        got = 0
        t0 = time.perf_counter()
        async for frame in src:
            got += len(frame)
            if got >= total:
                break
        dt = time.perf_counter() - t0
        await src.close()
        return total / dt

    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--values", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--receive-maximum", type=int, default=256)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    binary = mosquitto_binary()
    if binary is None:
        raise SystemExit("needs the mosquitto binary (apt-get install mosquitto)")
    total = a.messages * a.values
    runs: dict[str, list[float]] = {"paho": [], "edgeloop": []}
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(binary, Path(tmp), ("max_queued_messages 0",)).start()
        try:
            for r in range(a.runs):
                order = ["paho", "edgeloop"] if r % 2 == 0 else ["edgeloop", "paho"]
                for name in order:
                    cid = f"bench-{name}-{uuid.uuid4().hex[:8]}"
                    _session(broker.host, broker.port, cid, a.receive_maximum)
                    _publish(broker.host, broker.port, a.messages, a.values)
                    fn = run_paho if name == "paho" else run_edgeloop
                    rate = fn(broker.host, broker.port, cid, total, a.receive_maximum)
                    runs[name].append(rate)
                    print(f"run {r} {name:9s} {rate / 1e6:6.2f} M samples/s", flush=True)
        finally:
            broker.stop()
    med = {k: statistics.median(v) for k, v in runs.items()}
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"median of {a.runs}: edgeloop {med['edgeloop'] / 1e6:.2f} M samples/s, "
        f"paho {med['paho'] / 1e6:.2f} M samples/s, ratio {med['edgeloop'] / med['paho']:.2f}; "
        f"load {' '.join(load)}"
    )
    if a.json is not None:
        a.json.write_text(json.dumps({"runs": runs, "medians": med, "load": load}))


if __name__ == "__main__":
    main()

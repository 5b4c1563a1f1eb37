"""A real gateway process fed over MQTT (real Mosquitto) delivers to a hub: nothing lost
or doubled across a kill -9 and a restart, bad payloads rejected and counted, the memory
bound kept."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from _gateway_probe import RSS_BOUND_MB, run_gateway
from test_node_footprint import FORBIDDEN, PRIVATE_BOUND_MB

from conftest import Broker
from edgeloop.cli.sim import sensor_entries
from edgeloop.hub.app import create_app
from edgeloop.hub.server import BackgroundServer
from edgeloop.hub.store import HubStore
from edgeloop.node.mqtt_source import MqttSource
from edgeloop.node.sensor_payload import encode_block
from edgeloop.sim.factory import FactoryConfig, FactorySim
from edgeloop.sim.publish import SimPublisher, aligned_start
from edgeloop.telemetry.frame import SensorCatalog
from services import MqttProbe


def _provision_session(host: str, port: int, topic: str, client_id: str) -> None:
    """Create the gateway's persistent session once (as an installer would), so the
    broker queues what sensors publish from now on even before the node first runs."""

    async def go() -> None:
        src = MqttSource(SensorCatalog(), host, port, topic, client_id)
        assert await src.wait_subscribed(10)
        await src.close()

    asyncio.run(go())


def test_gateway_fed_over_mqtt_loses_nothing_across_kill_9_and_a_restart(
    mqtt_broker: Broker, tmp_path: Path
) -> None:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    prefix = f"edgeloop/{tenant}/gw1/sensors"
    floor = FactoryConfig.generate(n_machines=1, gateway="gw1", seed=3)
    sim = FactorySim(floor, 3, aligned_start(0.1))
    _provision_session(
        mqtt_broker.host, mqtt_broker.port, f"{prefix}/#", f"edgeloop-src-{tenant}-gw1"
    )
    pub = SimPublisher(sim, mqtt_broker.host, mqtt_broker.port, prefix).connect()
    store = HubStore(f"sqlite:///{tmp_path / 'hub.db'}")
    store.create_all()
    cfg: dict[str, Any] = {
        "node_id": "gw1",
        "tenant": tenant,
        "summary_every_s": 0.5,
        "outbox": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
        "uplink": {"kind": "http", "url": "HUB"},
        "sensors": sensor_entries(sim),
        "sources": [
            {"type": "mqtt", "host": mqtt_broker.host, "port": mqtt_broker.port, "keepalive_s": 2}
        ],
    }
    bad = MqttProbe(mqtt_broker.host, mqtt_broker.port)
    downs: list[int] = []

    def down_for(seconds: float) -> None:
        """The gateway is down: sensors keep publishing; the broker queues it."""
        before = pub.stats.total_samples
        pub.run(seconds)
        downs.append(pub.stats.total_samples - before)

    try:
        with BackgroundServer(create_app(store)) as hub:
            cfg["uplink"]["url"] = hub.url
            (tmp_path / "gw1.yaml").write_text(yaml.safe_dump(cfg))

            def run(duration_s: float, out: dict[str, Any]) -> None:
                out["res"], out["stats"] = run_gateway(cfg, tmp_path, duration_s)

            # 1. The gateway runs while sensors publish, and is killed (-9) mid-stream:
            # what it had not covered with committed summaries was not acknowledged.
            gw1 = subprocess.Popen(
                [sys.executable, "-m", "edgeloop.node", "--config", str(tmp_path / "gw1.yaml")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            pub.run(3.0)
            gw1.kill()
            gw1.wait(10)
            down_for(1.0)
            # 2. Back on its session (same client id): the unacknowledged and the queued
            # messages arrive, and what follows, bad payloads among them; a clean stop.
            second: dict[str, Any] = {}
            gw = threading.Thread(target=run, args=(5.0, second))
            gw.start()
            pub.run(1.0)
            bad.publish(f"{prefix}/gw1.m01.temp", b"{not json")
            bad.publish(f"{prefix}/gw1.m01.temp", b'[{"ts": 1, "value": "hot"}]')
            bad.publish(f"{prefix}/gw1.m09.vib_x", encode_block("", 1, 500_000, np.zeros(10)))
            gw.join(120)
            down_for(0.5)
            # 3. Back again after the clean stop.
            third: dict[str, Any] = {}
            run(2.5, third)
            totals = httpx.get(f"{hub.url}/v1/stats").json()
            upstream = httpx.get(f"{hub.url}/v1/nodes/gw1").json()["status"]
        rows = store.summaries("gw1", limit=100_000)
    finally:
        pub.close()
        bad.close()
        store.close()

    published = pub.stats.total_samples
    s2, s3 = second["stats"], third["stats"]
    # What each run saw, shown with any failure below.
    seen = {
        k: {x: s.get(x) for x in ("samples_accepted", "samples_rejected", "sources")}
        for k, s in (("second", s2), ("third", s3))
    }
    assert gw1.returncode == -9 and all(d > 0 for d in downs), (gw1.returncode, downs)
    # Every sample published reached the hub, once (summaries cover each sample).
    assert totals["overall"]["samples"] == published, (published, totals, seen)
    # Per sensor too, and no (sensor, period) holds more than a period's worth: a period
    # open at a restart is split over two rows (one per run), never doubled.
    by_sensor: dict[str, int] = {}
    by_period: dict[tuple[str, int], int] = {}
    for r in rows:
        by_sensor[r.sensor] = by_sensor.get(r.sensor, 0) + r.count
        by_period[r.sensor, r.t0_ns] = by_period.get((r.sensor, r.t0_ns), 0) + r.count
    assert by_sensor == pub.stats.samples, (pub.stats.samples, seen)
    rate = {s.name: s.rate_hz for s in sim.catalog.specs}
    period_s = (rows[0].t1_ns - rows[0].t0_ns) / 1e9
    full = {k: n for k, n in by_period.items() if n > rate[k[0]] * period_s}
    assert not full, (full, seen)
    assert s2["samples_accepted"] >= downs[0] and s3["samples_accepted"] >= downs[1], seen
    # Bad payloads: rejected with reasons, counted in the node's (upstream) status.
    assert s2["samples_rejected"] == {"malformed": 1, "wrong_type": 1, "unknown_sensor": 10}, seen
    src2 = next(iter(s2["sources"].values()))
    assert src2["rejected_messages"] == 3 and src2["connected"] is False, seen  # closed
    assert src2["session_resumed"] == 1 and src2["redelivered_samples"] == 0, seen
    src3 = next(iter(s3["sources"].values()))
    assert src3["session_resumed"] == 1 and src3["unacked"] == 0, seen
    # Each sensor's blocks followed on from the last one: the broker dropped nothing.
    assert src2["block_gaps"] == src3["block_gaps"] == 0, seen
    # The source's connection state travels upstream with the node's status.
    up = next(iter(upstream["sources"].values()))
    assert up["session_resumed"] == 1 and up["messages"] > 0, up
    # The gateway fed over MQTT stays a gateway: no validation stack, within its bound.
    # (paho-mqtt imports urllib.request, hence http.client and email: the price of the
    # MQTT client, ~1 MB; the HTTP-only gateway of test_node_footprint does without.)
    loaded = set(second["res"]["modules"])
    forbidden = set(FORBIDDEN) - {"email"}
    assert not loaded & forbidden, sorted(loaded & forbidden)
    assert "paho" in loaded
    assert second["res"]["rss"] < RSS_BOUND_MB, second["res"]
    assert second["res"]["private"] < PRIVATE_BOUND_MB, second["res"]

"""kill -9 of a gateway fed over MQTT: samples published against samples at the hub.

A private Mosquitto (``max_queued_messages 0``), a hub (SQLite) in this process and a
gateway process (``python -m edgeloop.node``) whose ``type: mqtt`` source reads one
simulated machine (6,030 samples/s) that ``SimPublisher`` publishes in real time. The
gateway is killed with SIGKILL after ``--kill-after`` seconds while publishing goes on,
restarted for 4 s, then once more for 3 s after publishing stopped (to drain the tail).
Prints one JSON line: ``published``, ``hub`` (the hub's ``samples``) and ``lost``
(negative: counted twice).

    .venv/bin/python benchmarks/mqtt_source_kill.py --ack covered --summary-every 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

from edgeloop.chaos.services import Mosquitto, mosquitto_binary
from edgeloop.cli.sim import sensor_entries
from edgeloop.hub.app import create_app
from edgeloop.hub.server import BackgroundServer
from edgeloop.hub.store import HubStore
from edgeloop.node.mqtt_source import MqttSource
from edgeloop.sim.factory import FactoryConfig, FactorySim
from edgeloop.sim.publish import SimPublisher, aligned_start
from edgeloop.telemetry.frame import SensorCatalog

PREFIX = "edgeloop/default/gw1/sensors"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ack", choices=["covered", "handover"], default="covered")
    ap.add_argument("--summary-every", type=float, default=0.5)
    ap.add_argument("--kill-after", type=float, default=6.0)
    ap.add_argument("--unaligned", action="store_true", help="start off the 0.1 s grid")
    a = ap.parse_args()
    binary = mosquitto_binary()
    if binary is None:
        raise SystemExit("needs the mosquitto binary (apt-get install mosquitto)")
    tmp = Path(tempfile.mkdtemp())
    broker = Mosquitto(binary, tmp / "mq", ("max_queued_messages 0",)).start()
    try:
        start = time.time_ns() if a.unaligned else aligned_start(0.1)
        sim = FactorySim(FactoryConfig.generate(n_machines=1, gateway="gw1", seed=3), 3, start)

        async def provision() -> None:  # the session exists before the node first runs
            src = MqttSource(
                SensorCatalog(), broker.host, broker.port, f"{PREFIX}/#", "edgeloop-src-default-gw1"
            )
            assert await src.wait_subscribed(10)
            await src.close()

        asyncio.run(provision())
        store = HubStore(f"sqlite:///{tmp / 'hub.db'}")
        store.create_all()
        with BackgroundServer(create_app(store)) as hub:
            cfg = {
                "node_id": "gw1",
                "summary_every_s": a.summary_every,
                "outbox": {"url": f"sqlite:///{tmp / 'outbox.db'}"},
                "uplink": {"kind": "http", "url": hub.url},
                "sensors": sensor_entries(sim),
                "sources": [
                    {"type": "mqtt", "host": broker.host, "port": broker.port, "ack": a.ack}
                ],
            }
            (tmp / "gw.yaml").write_text(yaml.safe_dump(cfg))
            node = [sys.executable, "-m", "edgeloop.node", "--config", str(tmp / "gw.yaml")]
            pub = SimPublisher(sim, broker.host, broker.port, PREFIX).connect()
            stop = threading.Event()
            feeder = threading.Thread(target=pub.run, args=(None, 0.1), kwargs={"stop": stop})
            feeder.start()
            quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            gw = subprocess.Popen(node, **quiet)  # type: ignore[call-overload]
            time.sleep(a.kill_after)
            os.kill(gw.pid, signal.SIGKILL)
            gw.wait()
            time.sleep(1.0)
            subprocess.run([*node, "--duration", "4"], check=False, **quiet)  # type: ignore[call-overload]
            stop.set()
            feeder.join()
            pub.close()
            subprocess.run([*node, "--duration", "3"], check=False, **quiet)  # type: ignore[call-overload]
            got = int(httpx.get(f"{hub.url}/v1/stats").json()["overall"]["samples"])
        store.close()
    finally:
        broker.stop()
    published = pub.stats.total_samples
    print(
        json.dumps(
            {
                "ack": a.ack,
                "summary_every_s": a.summary_every,
                "published": published,
                "hub": got,
                "lost": published - got,
            }
        )
    )


if __name__ == "__main__":
    main()

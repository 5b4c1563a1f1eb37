"""``edgeloop hub serve --mqtt``: a hub process consuming uplinks beside its HTTP API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

from conftest import Broker
from edgeloop.hub.store import HubStore
from edgeloop.outbox.base import Entry, Priority
from edgeloop.telemetry import codec
from edgeloop.telemetry.records import SummaryBatch
from edgeloop.transport.base import Ack, Batch
from edgeloop.transport.mqtt import MqttTransport
from services import free_port

EDGELOOP = [sys.executable, "-m", "edgeloop.cli.main"]


def _summaries(seq: int) -> bytes:
    b = SummaryBatch(
        sensor=np.array([0], np.uint32),
        t0_ns=np.array([seq * 10**9], np.int64),
        t1_ns=np.array([(seq + 1) * 10**9], np.int64),
        count=np.array([100], np.int64),
        mean=np.zeros(1, np.float32),
        std=np.zeros(1, np.float32),
        min=np.zeros(1, np.float32),
        max=np.zeros(1, np.float32),
        sensor_names=("m1.temp",),
    )
    return codec.encode_summaries(b)


async def _send(broker: Broker, tenant: str, seqs: range) -> list[Ack]:
    t = MqttTransport(broker.host, broker.port, tenant, "gw1", timeout_s=10)
    rx = aiter(t.receive())
    acks = []
    try:
        for seq in seqs:
            e = Entry(seq, Priority.SUMMARY, "summaries", _summaries(seq), 100)
            deadline = time.monotonic() + 20
            while True:  # the hub may still be subscribing: no subscriber is a LinkDown
                try:
                    await t.send(Batch("gw1", seq - 1, (e,), {}, epoch=5))
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            acks.append(await asyncio.wait_for(anext(rx), 20))
    finally:
        await t.close()
    return acks


def test_hub_serve_consumes_mqtt_uplinks_and_counts_them(
    mqtt_broker: Broker, tmp_path: Path
) -> None:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    port = free_port()
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    cmd = [*EDGELOOP, "hub", "serve", "--db", db, "--port", str(port)]
    cmd += ["--data-dir", str(tmp_path / "data")]
    cmd += ["--mqtt", f"{mqtt_broker.host}:{mqtt_broker.port}", "--group", tenant]
    cmd += ["--instance", "a", "--tenant", tenant]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env={**os.environ})
    try:
        acks = asyncio.run(_send(mqtt_broker, tenant, range(1, 4)))
        assert [a.upto_seq for a in acks] == [1, 2, 3]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert 'edgeloop_hub_ingest_batches_total{outcome="ok"} 3.0' in metrics
    assert "edgeloop_hub_ingest_entries_total 3.0" in metrics
    store = HubStore.open(db)
    try:
        assert store.totals()["overall"]["samples"] == 300
    finally:
        store.close()


def test_hub_serve_refuses_a_bad_mqtt_address(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    out = subprocess.run(
        [*EDGELOOP, "hub", "serve", "--db", db, "--mqtt", "localhost"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert "--mqtt" in out.stderr and "HOST:PORT" in out.stderr


def test_hub_serve_says_when_the_broker_cannot_be_reached(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    dead = free_port()
    out = subprocess.run(
        [*EDGELOOP, "hub", "serve", "--db", db, "--mqtt", f"127.0.0.1:{dead}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 1
    assert "not subscribed" in out.stderr and f"127.0.0.1:{dead}" in out.stderr

"""SIGTERM stops a gateway in order: its sources stop, what they gave reaches the hub,
exit 0. A second SIGTERM during the drain stops it at once (exit 143); its outbox keeps
what was not sent and the next start delivers it. Real processes, a real hub over HTTP,
a real SQLite outbox."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeloop.hub.app import create_app
from edgeloop.hub.server import BackgroundServer
from edgeloop.hub.store import HubStore
from edgeloop.node.config import parse_node_config
from edgeloop.node.plan import make_plan, plan_to_json
from edgeloop.outbox.sqlite import SqliteOutbox
from edgeloop.telemetry import codec


def _plan(tmp_path: Path, hub_url: str, name: str) -> Path:
    cfg: dict[str, Any] = {
        "node_id": "gw1",
        "summary_every_s": 0.5,
        "outbox": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
        "uplink": {"kind": "http", "url": hub_url},
        "status_file": str(tmp_path / "status.json"),
        "sources": [
            {
                "type": "sim",
                "seed": 3,
                "tick_s": 0.1,
                "factory": {"generate": {"n_machines": 2, "gateway": "gw1", "seed": 3}},
            }
        ],
    }
    path = tmp_path / f"{name}.plan.json"
    path.write_text(plan_to_json(make_plan(parse_node_config(cfg))))
    return path


def _start(plan: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """A gateway as a service manager starts it: no ``--duration`` unless given."""
    cmd = [sys.executable, "-m", "edgeloop.node", "--plan", str(plan), *args]
    cmd += ["--stats-out", str(log.with_suffix(".stats.json"))]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def _wait(what: str, cond: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while not cond():
        assert proc.poll() is None, f"gateway exited ({proc.returncode}): {log.read_text()}"
        assert time.monotonic() < deadline, f"no {what} within 20 s: {log.read_text()}"
        time.sleep(0.05)


def _status(tmp_path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((tmp_path / "status.json").read_text()))
    except (OSError, ValueError):
        return {}


def _pending_summaries(path: Path) -> dict[tuple[str, int], int]:
    """(sensor, period start) → samples of the summary rows waiting in the outbox."""
    box = SqliteOutbox(path)
    try:
        entries = box.claim(1 << 40)
    finally:
        box.close()
    rows: dict[tuple[str, int], int] = {}
    for e in entries:
        if e.kind == "summaries":
            b = codec.decode_summaries(e.payload)
            for s, t0, n in zip(b.sensor.tolist(), b.t0_ns.tolist(), b.count.tolist(), strict=True):
                rows[(b.sensor_names[s], t0)] = n
    return rows


def test_sigterm_stops_a_gateway_in_order_and_the_hub_gets_everything(tmp_path: Path) -> None:
    store = HubStore.open(f"sqlite:///{tmp_path / 'hub.db'}")
    log = tmp_path / "gw.log"
    with BackgroundServer(create_app(store)) as server:
        gw = _start(_plan(tmp_path, server.url, "gw1"), log)
        try:
            _wait("ack", lambda: (n := store.node("gw1")) is not None and n.watermark > 2, gw, log)
            time.sleep(1.0)  # periods are open and entries are in flight
            gw.send_signal(signal.SIGTERM)
            assert gw.wait(15) == 0, log.read_text()
        finally:
            gw.kill()
        stats = json.loads(log.with_suffix(".stats.json").read_text())
    text = log.read_text()
    assert "SIGTERM received: stopping" in text and "draining the outbox" in text
    assert stats["stopped_by"] == "SIGTERM"
    assert stats["drained"] and stats["outbox_depth"] == 0
    box = SqliteOutbox(tmp_path / "outbox.db")
    st = box.stats()
    box.close()
    assert st.depth == 0 and st.acked_upto == st.next_seq - 1 > 2
    node = store.node("gw1")
    assert node is not None and node.watermark == st.acked_upto
    # Every accepted sample is in exactly one summary row at the hub: the last, partial
    # period was closed and sent too.
    hub = store.totals()["nodes"]["gw1"]
    assert stats["samples_accepted"] > 0
    assert hub["samples"] == stats["samples_accepted"]
    assert (hub["entries"], hub["rejected"]) == (st.acked_upto, 0)
    store.close()


def test_a_second_sigterm_stops_at_once_and_the_next_start_delivers_the_rest(
    tmp_path: Path,
) -> None:
    with socket.socket() as s:  # a port nobody listens on: the hub is down
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    log = tmp_path / "first.log"
    gw = _start(_plan(tmp_path, down, "down"), log, "--drain-timeout", "60")
    try:
        _wait("backlog", lambda: _status(tmp_path).get("outbox_depth", 0) >= 3, gw, log)
        gw.send_signal(signal.SIGTERM)
        _wait("drain", lambda: "draining the outbox" in log.read_text(), gw, log)
        t0 = time.monotonic()
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(10) == 143, log.read_text()
        took = time.monotonic() - t0
    finally:
        gw.kill()
    assert took < 3.0, took
    assert "SIGTERM received again: stopping at once" in log.read_text()
    assert not log.with_suffix(".stats.json").exists()
    pending = _pending_summaries(tmp_path / "outbox.db")
    assert len(pending) > 0

    # The next start (the hub is back) sends what the first one left behind.
    store = HubStore.open(f"sqlite:///{tmp_path / 'hub.db'}")
    log = tmp_path / "second.log"
    with BackgroundServer(create_app(store)) as server:
        gw = _start(_plan(tmp_path, server.url, "up"), log, "--duration", "1")
        try:
            assert gw.wait(30) == 0, log.read_text()
        finally:
            gw.kill()
    box = SqliteOutbox(tmp_path / "outbox.db")
    st = box.stats()
    box.close()
    assert st.depth == 0
    node = store.node("gw1")
    assert node is not None and node.watermark == st.acked_upto == st.next_seq - 1
    at_hub = {(r.sensor, r.t0_ns): r.count for r in store.summaries("gw1", limit=10**6)}
    assert {k: at_hub.get(k) for k in pending} == pending
    assert store.duplicate_summary_samples() == 0
    store.close()

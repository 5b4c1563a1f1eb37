"""kill -9 of a gateway loses no sample: the simulator replays from the outbox's resume
point, and nothing is summarised twice (real processes, a real SQLite outbox)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from edgeloop.node.config import parse_node_config
from edgeloop.node.plan import make_plan, plan_to_json
from edgeloop.outbox.sqlite import SqliteOutbox
from edgeloop.sim.build import build_sim
from edgeloop.telemetry import codec

DURATION_S = 8.0
DOWN_S = 2.5  # longer than a summary period: the replay must catch up


def _config(tmp_path: Path) -> dict[str, Any]:
    return {
        "node_id": "gw1",
        "summary_every_s": 0.5,
        "outbox": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
        "sources": [
            {
                "type": "sim",
                "seed": 3,
                "tick_s": 0.1,
                "phase_s": 0.05,  # the last block comes after the run's end: still fed
                "factory": {"generate": {"n_machines": 1, "gateway": "gw1", "seed": 3}},
            }
        ],
    }


def _start(plan: Path, start_ns: int, stats: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "edgeloop.node", "--plan", str(plan)]
    cmd += ["--duration", str(DURATION_S), "--start-ns", str(start_ns)]
    cmd += ["--drain-timeout", "0.1", "--stats-out", str(stats)]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def _summary_rows(path: Path) -> tuple[int, Counter[tuple[str, int]]]:
    box = SqliteOutbox(path)
    try:
        entries = box.claim(1 << 40)
    finally:
        box.close()
    total, keys = 0, Counter[tuple[str, int]]()
    for e in entries:
        if e.kind != "summaries":
            continue
        b = codec.decode_summaries(e.payload)
        total += int(b.count.sum())
        for s, t0 in zip(b.sensor.tolist(), b.t0_ns.tolist(), strict=True):
            keys[(b.sensor_names[s], t0)] += 1
    return total, keys


def test_a_gateway_killed_mid_run_resumes_and_loses_nothing(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    node_plan = make_plan(parse_node_config(cfg))
    plan = tmp_path / "gw1.plan.json"
    plan.write_text(plan_to_json(node_plan))
    start_ns = time.time_ns() + int(1.5e9)
    stats = tmp_path / "stats.json"
    first = _start(plan, start_ns, stats, tmp_path / "first.log")
    # Kill it in the middle of the run: periods are open, a summary entry is pending.
    time.sleep((start_ns - time.time_ns()) / 1e9 + 3.25)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    box = SqliteOutbox(tmp_path / "outbox.db")
    resume = box.stats().resume_ns
    box.close()
    assert resume is not None and start_ns < resume < start_ns + int(DURATION_S * 1e9)
    time.sleep(DOWN_S)
    second = _start(plan, start_ns, stats, tmp_path / "second.log")
    assert second.wait(60) == 3, (tmp_path / "second.log").read_text()[-2000:]  # not drained
    out = json.loads(stats.read_text())
    assert out["resumed_from_ns"] == resume
    # What the simulator produced over the run, computed independently.
    assert node_plan.floor is not None and node_plan.sim is not None
    sim = build_sim(node_plan.floor, [], seed=node_plan.sim.seed, start_ns=start_ns)
    produced = len(sim.step(int(DURATION_S * 1e9)))
    summarised, keys = _summary_rows(tmp_path / "outbox.db")
    assert summarised == produced
    assert [k for k, n in keys.items() if n > 1] == []  # no (sensor, period) twice

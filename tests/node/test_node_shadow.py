"""Shadow mode: a challenger scores the same windows beside the acting model, is measured
per period and sent upstream, and never acts.

Two nodes see the same simulated floor (with faults) and the same acting model, delivered
by the reconciler from a stub hub; one also runs, in shadow, a model that alerts on every
window. Their decisions and actions must be identical.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from test_node_reconcile_stub import (
    GROUP,
    StubHub,
    desired,
    signed_models,
    trusted_key_file,
    write_spec,
)

from edgeloop.errors import ConfigError
from edgeloop.node.build import build_core
from edgeloop.node.config import parse_node_config
from edgeloop.node.fetch import ControlClient
from edgeloop.node.main import builtin_actions
from edgeloop.node.model_store import ModelStore
from edgeloop.node.model_switch import ModelSwitch
from edgeloop.node.reconcile import Reconciler
from edgeloop.node.shadow import (
    KIND_MEASUREMENT,
    MEASUREMENT_SCHEMA,
    ShadowMonitor,
    decode_measurement,
    measurement_for,
)
from edgeloop.outbox.base import Priority
from edgeloop.outbox.memory import MemoryOutbox
from edgeloop.sim.build import build_sim

TICK = 100_000_000
FAULTS = [
    {"kind": "imbalance", "machine": "gw1.m02", "start_s": 16, "end_s": 22},
    {"kind": "bearing_wear", "machine": "gw1.m01", "start_s": 26, "end_s": 34},
    {"kind": "overheating", "machine": "gw1.m03", "start_s": 30, "end_s": 36},
]


class Twin:
    def __init__(self, tmp: Path, node: str, hub: StubHub) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        cfg = parse_node_config(
            {
                "node_id": node,
                "pipeline": str(write_spec(tmp)),
                "decide": {"rules": [{"name": "stop", "actions": ["relay"]}]},
            }
        )
        self.sim = build_sim(
            {"generate": {"n_machines": 3, "gateway": "gw1", "seed": 3}},
            FAULTS,
            seed=3,
            start_ns=0,
        )
        self.actions = builtin_actions()
        self.core = build_core(cfg, self.sim.catalog, self.actions)
        self.outbox = MemoryOutbox()
        self.monitor = ShadowMonitor(node)
        self.rec = Reconciler(
            node,
            ControlClient(hub.url),
            ModelStore(tmp / "models", node),
            ModelSwitch(self.core.pipeline, self.monitor),
            [str(trusted_key_file(tmp))],
            clock=lambda: self.sim.now_ns,
            append=self.outbox.append,
            chunk_size=2048,
        )

    def step(self) -> None:
        self.core.process(self.sim.step(TICK), self.sim.now_ns, time.perf_counter_ns())

    def decisions(self) -> list[tuple[Any, ...]]:
        return [
            (d.event.machine, d.event.sensor, str(d.event.severity), d.event.t_start_ns, d.actions)
            for d in self.core.decisions
        ]

    def measurements(self) -> list[dict[str, Any]]:
        out = []
        for e in self.outbox.claim(1 << 30):
            if e.kind == KIND_MEASUREMENT:
                assert e.priority == Priority.SUMMARY
                out.append(json.loads(e.payload))
        return out


def test_a_shadow_model_is_measured_but_never_acts(tmp_path: Path) -> None:
    m = signed_models()
    with StubHub() as hub:
        hub.publish(m["v1"], m["bad"])
        hub.desired["gwA"] = desired("gwA", 1, "v1", shadow="bad")
        hub.desired["gwB"] = desired("gwB", 1, "v1")
        a, b = Twin(tmp_path / "a", "gwA", hub), Twin(tmp_path / "b", "gwB", hub)

        async def deliver() -> None:
            for t in (a, b):
                assert (await t.rec.round()).status == "converged"

        asyncio.run(deliver())
    assert a.core.pipeline.shadow(GROUP) is not None and b.core.pipeline.shadow(GROUP) is None
    for _ in range(400):  # 40 s of the floor, faults included
        a.step()
        b.step()
        if a.sim.now_ns == 20 * 10**9:
            asyncio.run(a.rec.close_period())  # a period boundary
    asyncio.run(a.rec.close_period())

    # Same decisions, same actions: the shadow's alerts on every window changed nothing.
    assert a.decisions() == b.decisions() and len(a.decisions()) >= 2
    assert a.actions.invocations == b.actions.invocations and a.actions.invocations["relay"] >= 2
    assert a.core.status()["events_forwarded"] == b.core.status()["events_forwarded"]

    # ... but it was measured: two periods, each comparing it with the acting model.
    docs = a.measurements()
    assert len(docs) == 2 and b.measurements() == []
    assert all(d["schema"] == MEASUREMENT_SCHEMA for d in docs)
    assert [(d["shadow"], d["acting"]) for d in docs] == [("bad", "v1")] * 2
    assert docs[0]["period_end_ns"] == docs[1]["period_start_ns"] == 20 * 10**9
    windows = sum(d["windows"] for d in docs)
    assert windows == a.monitor.windows_total > 0
    assert sum(d["challenger_alerts"] for d in docs) == windows == a.monitor.shadow_alerts_total
    assert sum(d["champion_alerts"] for d in docs) < windows / 2
    assert all(d["errors"] == 0 and d["latency_p99_ms"] > 0 for d in docs)

    # Oriented for the hub's rollout: as a shadow stage (challenger "bad") or a canary
    # where the challenger would be the acting model.
    doc = docs[1]
    shadow_view = measurement_for(doc, "bad")
    canary_view = measurement_for(doc, "v1")
    assert shadow_view is not None and canary_view is not None
    assert shadow_view.challenger_alerts == doc["windows"] == canary_view.champion_alerts
    assert canary_view.challenger_alerts == doc["champion_alerts"]
    assert canary_view.latency_p99_ms == doc["acting_latency_p99_ms"]
    assert measurement_for(doc, "v9") is None
    entry = a.monitor.begin("v1", "bad", a.sim.now_ns)  # nothing since the last period
    assert entry is None
    raw = json.dumps(doc).encode()
    assert decode_measurement(raw) == doc
    with pytest.raises(ConfigError, match="measurement: not JSON"):
        decode_measurement(raw[:-1])
    with pytest.raises(ConfigError, match="missing field 'windows'"):
        measurement_for({k: v for k, v in doc.items() if k != "windows"}, "bad")


def test_a_failing_shadow_is_counted_and_the_acting_path_runs_on(tmp_path: Path) -> None:
    m = signed_models()
    with StubHub() as hub:
        hub.publish(m["v1"], m["bad"])
        hub.desired["gwA"] = desired("gwA", 1, "v1")
        hub.desired["gwB"] = desired("gwB", 1, "v1")
        a, b = Twin(tmp_path / "a", "gwA", hub), Twin(tmp_path / "b", "gwB", hub)

        async def deliver() -> None:
            for t in (a, b):
                assert (await t.rec.round()).status == "converged"

        asyncio.run(deliver())
    # A vibration model in shadow on the process group: it fails on every block (a real
    # ModelError from onnxruntime's caller: wrong group), the acting detectors do not.
    v1 = a.core.pipeline.detectors(GROUP)["pca_t2q_vibration"]
    a.core.pipeline.set_shadow("process", v1, compare_with="robust")
    a.monitor.begin("robust", "v1-on-process", 0)
    for _ in range(400):
        a.step()
        b.step()
    entry = a.monitor.take(a.sim.now_ns)
    assert entry is not None
    doc = json.loads(entry.payload)
    assert doc["windows"] == 0 and doc["errors"] > 0
    assert a.decisions() == b.decisions() and len(a.decisions()) >= 2
    with pytest.raises(ConfigError, match="no detector 'nope' to compare with"):
        a.core.pipeline.set_shadow(GROUP, v1, compare_with="nope")

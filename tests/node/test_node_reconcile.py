"""A node reconciles its models against a hub over real HTTP: links cut mid-download,
corrupted and wrongly signed artifacts, hot swaps between frames, rollback, restarts.

The hub is a stub on loopback serving the documented shapes (``test_node_reconcile_stub``);
the models are real signed ONNX models; verification runs in the real child process
(``python -m edgeloop.security.verify``) with the real Ed25519 check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_node_reconcile_stub import (
    DETECTOR,
    GROUP,
    StubHub,
    desired,
    signed_models,
    trusted_key_file,
    write_spec,
)

from edgeloop.desired import Report
from edgeloop.detect.onnx_model import OnnxDetector
from edgeloop.errors import ConfigError, LinkDown
from edgeloop.node.build import build_core
from edgeloop.node.config import parse_node_config
from edgeloop.node.core import NodeCore
from edgeloop.node.fetch import ControlClient
from edgeloop.node.main import builtin_actions
from edgeloop.node.model_store import ModelStore
from edgeloop.node.model_switch import ModelSwitch
from edgeloop.node.reconcile import Reconciler
from edgeloop.node.shadow import ShadowMonitor
from edgeloop.outbox.memory import MemoryOutbox
from edgeloop.pipeline.types import Features, Scores
from edgeloop.security import PrivateKey
from edgeloop.sim.build import build_sim

TICK = 100_000_000
CHUNK = 1024


class Node:
    """A node core fed by the simulator on simulated time, and its reconciler."""

    def __init__(self, tmp: Path, hub: StubHub, max_failures: int = 3) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        cfg = parse_node_config({"node_id": "gw1", "pipeline": str(write_spec(tmp))})
        self.sim = build_sim(
            {"generate": {"n_machines": 3, "gateway": "gw1", "seed": 3}}, [], seed=3, start_ns=0
        )
        self.core: NodeCore = build_core(cfg, self.sim.catalog, builtin_actions())
        self.windows: dict[int, list[int]] = defaultdict(list)  # vibration sensor -> t1_ns
        self.detectors: list[str] = []
        self.core.score_sink = self._seen
        self.outbox = MemoryOutbox()
        self.dir = tmp / "models"
        self.rec = self.reconciler(hub, max_failures)

    def reconciler(self, hub: StubHub, max_failures: int = 3) -> Reconciler:
        switch = ModelSwitch(self.core.pipeline, ShadowMonitor("gw1"))
        return Reconciler(
            "gw1",
            ControlClient(hub.url, timeout_s=5.0),
            ModelStore(self.dir, "gw1"),
            switch,
            [str(trusted_key_file(self.dir.parent))],
            clock=lambda: self.sim.now_ns,
            append=self.outbox.append,
            chunk_size=CHUNK,
            max_failures=max_failures,
        )

    def _seen(self, feats: Features, scores: Scores) -> None:
        if feats.group == GROUP:
            for s in np.unique(feats.sensor):
                self.windows[int(s)].extend(feats.t1_ns[feats.sensor == s].tolist())
            self.detectors.append(scores.detector)

    def acting(self) -> OnnxDetector:
        det = self.core.pipeline.detectors(GROUP)[DETECTOR]
        assert isinstance(det, OnnxDetector)
        return det

    async def feed(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.core.process(self.sim.step(TICK), self.sim.now_ns, time.perf_counter_ns())
            await asyncio.sleep(0.002)

    async def converge(self, rounds: int = 30) -> Report:
        """Rounds as ``Reconciler.run`` does them (a cut link fails a round), no back-off."""
        rep = None
        for _ in range(rounds):
            try:
                rep = await self.rec.round()
            except LinkDown:
                continue
            if rep.status in ("converged", "failed"):
                return rep
        raise AssertionError(f"no verdict after {rounds} rounds: {rep}")

    def check_no_window_missed(self) -> None:
        assert len(self.windows) >= 3
        for sensor, ends in self.windows.items():
            steps = np.diff(np.asarray(ends))
            assert steps.size > 5 and np.all(steps == steps[0]), (sensor, np.unique(steps))

    def pointer(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.dir / "current.json").read_text())
        return doc


async def while_feeding(node: Node, *steps: Any) -> list[Report]:
    """Run ``steps`` (desired documents to converge on) while frames keep arriving."""
    stop = asyncio.Event()
    feeder = asyncio.create_task(node.feed(stop))
    out = []
    try:
        for hub, doc in steps:
            hub.desired["gw1"] = doc
            await asyncio.sleep(0.05)  # some frames before each change
            out.append(await node.converge())
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await feeder
    return out


def test_link_cuts_resume_swap_keeps_every_window_and_the_previous_version(tmp_path: Path) -> None:
    m = signed_models()
    with StubHub() as hub:
        hub.publish(m["v1"], m["v2"])
        hub.cut_after = [300, 0, 700]  # three range requests cut part-way (one before any byte)
        node = Node(tmp_path, hub)
        v0 = node.acting()

        (rep1,) = asyncio.run(while_feeding(node, (hub, desired("gw1", 1, "v1"))))
        assert rep1.status == "converged" and rep1.actual_generation == 1
        assert node.acting().name == "v1" and node.acting() is not v0
        assert node.rec.actual.active == (m["v1"].slot(),)
        # Every byte was stored once: the cut requests kept what arrived, resumes asked
        # only for the rest.
        assert node.rec.bytes_downloaded == len(m["v1"].data)
        cut = [r for r in hub.ranges if r[3]]
        whole = sorted((a, b) for _, a, b, c in hub.ranges if not c)
        assert len(cut) == 3
        # A resume starts after the bytes that arrived (300, then 0, then 700 more).
        assert [r[1:] for r in hub.ranges[:5]] == [
            (0, 1024, True),
            (300, 1024, True),
            (300, 1024, True),
            (1000, 1024, False),
            (1024, 2048, False),
        ]
        assert all(b1 <= a2 for (_, b1), (a2, _) in pairwise(whole))
        assert node.pointer()["active"][0]["version"] == "v1"
        assert hub.actual[-1]["status"] == "converged"
        assert hub.actual[-1]["active"][0]["version"] == "v1"

        asyncio.run(while_feeding(node, (hub, desired("gw1", 2, "v2"))))
        v1_object = node.rec.switch.retired
        assert node.acting().name == "v2" and v1_object is not None and v1_object.name == "v1"  # type: ignore[attr-defined]
        assert node.rec.actual.previous == m["v1"].slot()
        assert node.pointer()["previous"]["version"] == "v1"
        store = ModelStore(node.dir, "gw1")
        assert store.model_path(m["v1"].artifact).exists()  # kept for rollback

        # Roll back: no download, the kept v1 object takes over again.
        fetched = len(hub.ranges)
        (back,) = asyncio.run(while_feeding(node, (hub, desired("gw1", 3, "v1"))))
        assert back.status == "converged" and len(hub.ranges) == fetched
        assert node.acting() is v1_object
        assert node.rec.actual.previous == m["v2"].slot()

    # The group's windows ran on through three swaps: none missing, none twice.
    node.check_no_window_missed()
    names = [d for i, d in enumerate(node.detectors) if i == 0 or d != node.detectors[i - 1]]
    assert names == [
        "max(robust,pca_t2q_vibration)",
        "max(robust,v1)",
        "max(robust,v2)",
        "max(robust,v1)",
    ]


@pytest.mark.parametrize("fault", ["corrupt", "unknown_key", "bad_signature"])
def test_bad_artifacts_are_refused_with_the_reason_and_never_activated(
    tmp_path: Path, fault: str
) -> None:
    m = signed_models()
    with StubHub() as hub:
        hub.publish(m["v1"], m["v2"])
        node = Node(tmp_path, hub, max_failures=2)
        (ok,) = asyncio.run(while_feeding(node, (hub, desired("gw1", 1, "v1"))))
        assert ok.status == "converged"
        if fault == "corrupt":
            hub.corrupt.add(m["v2"].artifact)
        elif fault == "unknown_key":
            hub.signatures["v2"] = PrivateKey.generate().sign(m["v2"].manifest, m["v2"].artifact)
        else:  # signed by the trusted key, but over another manifest
            hub.signatures["v2"] = m["v1"].signature
        (rep,) = asyncio.run(while_feeding(node, (hub, desired("gw1", 2, "v2"))))

        reason = {"corrupt": "hash_mismatch"}.get(fault, fault)
        assert rep.status == "failed" and "failed verification 2 times" in rep.detail
        assert [r["reason"] for r in node.rec.refusals] == [reason, reason]
        last = hub.actual[-1]
        assert last["status"] == "failed" and last["refused"][-1]["reason"] == reason
        assert last["refused"][-1]["version"] == "v2" and last["refused"][-1]["error"]
        # The node keeps running v1; v2's bytes were dropped, never became a model file.
        assert node.acting().name == "v1" and node.rec.actual.generation == 1
        assert node.pointer()["active"][0]["version"] == "v1"
        store = ModelStore(node.dir, "gw1")
        assert not store.model_path(m["v2"].artifact).exists()
        assert "max(robust,v2)" not in node.detectors

        # Fixed at the hub: a new document (generation 3) converges.
        hub.corrupt.clear()
        hub.signatures.clear()
        node.rec.max_failures = 4
        (fixed,) = asyncio.run(while_feeding(node, (hub, desired("gw1", 3, "v2"))))
        assert fixed.status == "converged" and node.acting().name == "v2"


def test_a_restarted_node_resumes_its_download_and_restores_its_models(tmp_path: Path) -> None:
    m = signed_models()
    with StubHub() as hub:
        hub.publish(m["v1"])
        hub.desired["gw1"] = desired("gw1", 1, "v1")
        node = Node(tmp_path, hub)
        hub.cut_after = [None, None, 500]  # two chunks arrive, the third is cut after 500 bytes

        async def partial() -> None:
            with pytest.raises(LinkDown):
                await node.rec.round()

        asyncio.run(partial())
        held = ModelStore(node.dir, "gw1").load().artifacts[m["v1"].artifact].held
        assert held == ((0, 2 * CHUNK + 500),)

        # The process dies; a new one reads the directory and asks only for the rest.
        before = len(hub.ranges)
        node.rec = node.reconciler(hub)
        asyncio.run(node.rec.restore())
        (rep,) = asyncio.run(while_feeding(node, (hub, desired("gw1", 1, "v1"))))
        assert rep.status == "converged"
        assert hub.ranges[before][1] == 2 * CHUNK + 500
        assert node.rec.bytes_downloaded == len(m["v1"].data) - (2 * CHUNK + 500)

        # Another restart: the active model comes back from disk, with no request at all.
        requests = len(hub.requests)
        fresh = Node(tmp_path / "again", hub)
        fresh.dir = node.dir
        fresh.rec = fresh.reconciler(hub)
        asyncio.run(fresh.rec.restore())
        assert fresh.acting().name == "v1" and len(hub.requests) == requests
        assert fresh.rec.actual.active == (m["v1"].slot(),)


def test_a_model_file_changed_on_disk_is_not_restored(tmp_path: Path) -> None:
    m = signed_models()
    with StubHub() as hub:
        hub.publish(m["v1"])
        node = Node(tmp_path, hub)
        asyncio.run(while_feeding(node, (hub, desired("gw1", 1, "v1"))))
        path = ModelStore(node.dir, "gw1").model_path(m["v1"].artifact)
        data = bytearray(path.read_bytes())
        data[100] ^= 1
        path.write_bytes(bytes(data))
        fresh = Node(tmp_path / "again", hub)
        fresh.dir = node.dir
        fresh.rec = fresh.reconciler(hub)
        asyncio.run(fresh.rec.restore())
        assert fresh.acting().name == DETECTOR  # still the spec's own model
        assert fresh.rec.actual.active == () and fresh.rec.actual.generation == 0


def test_model_delivery_config_errors_name_the_field(tmp_path: Path) -> None:
    base = {"node_id": "gw1", "models": {"dir": str(tmp_path), "trusted_keys": ["hub.pem"]}}
    with pytest.raises(ConfigError, match=r"models\.hub_url: required unless uplink\.kind"):
        parse_node_config(base)
    with pytest.raises(ConfigError, match=r"models\.trusted_keys"):
        parse_node_config({**base, "models": {"dir": str(tmp_path), "trusted_keys": []}})
    cfg = parse_node_config({**base, "uplink": {"kind": "http", "url": "http://hub:8000"}})
    assert cfg.models is not None and cfg.models.chunk_bytes == 256 * 1024


def test_the_run_loop_backs_off_through_failures_and_converges(tmp_path: Path) -> None:
    m = signed_models()
    with StubHub() as hub:
        hub.publish(m["v1"])
        hub.desired["gw1"] = desired("gw1", 1, "v1")
        hub.cut_after = [0, 0, 0, 0]  # four failed rounds in a row
        node = Node(tmp_path, hub)
        node.rec.retry_min_s, node.rec.every_s = 0.01, 0.05
        link = {"up": False}
        node.rec.link_up = lambda: link["up"]

        async def main() -> None:
            task = asyncio.create_task(node.rec.run())
            await asyncio.sleep(0.2)
            assert hub.requests == []  # no round while the uplink is down
            link["up"] = True
            for _ in range(400):
                if hub.actual and hub.actual[-1]["status"] == "converged":
                    break
                await asyncio.sleep(0.05)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        asyncio.run(main())
    assert hub.actual[-1]["status"] == "converged" and node.acting().name == "v1"
    assert node.rec.failures == 4

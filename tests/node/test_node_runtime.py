"""The node runtime end to end, in one process: simulator → node → outbox → chaos
uplink → the real hub ingest (SQLite store). Simulated time, no sleeps in the data path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.hub.app import IngestService
from edgeloop.hub.store import HubStore
from edgeloop.node.build import build_core
from edgeloop.node.config import parse_node_config
from edgeloop.node.main import builtin_actions
from edgeloop.node.runtime import NodeRuntime
from edgeloop.outbox.base import NewEntry, Priority
from edgeloop.outbox.memory import MemoryOutbox
from edgeloop.outbox.sqlite import SqliteOutbox
from edgeloop.sim.build import build_sim
from edgeloop.sim.chaos import ChaosTransport, PartitionSchedule
from edgeloop.telemetry import codec
from edgeloop.telemetry.records import SummaryBatch
from edgeloop.transport.base import Ack, Batch, Message
from edgeloop.transport.inproc import InProcTransport

TICK = 100_000_000
FAULTS = [
    {"kind": "imbalance", "machine": "gw1.m02", "start_s": 16, "end_s": 20},
    {"kind": "overheating", "machine": "gw1.m03", "start_s": 22, "end_s": 26},
    {
        "kind": "dropout",
        "machine": "gw1.m01",
        "sensor": "gw1.m01.pressure",
        "start_s": 28,
        "end_s": 31,
    },
]


def make(config: dict[str, Any] | None = None) -> tuple[Any, Any, Any]:
    cfg = parse_node_config({"node_id": "gw1", "summary_every_s": 1.0, **(config or {})})
    sim = build_sim(
        {"generate": {"n_machines": 3, "gateway": "gw1", "seed": 3}}, FAULTS, seed=3, start_ns=0
    )
    core = build_core(cfg, sim.catalog, builtin_actions())
    return cfg, sim, core


async def run(rt: NodeRuntime, sim: Any, seconds: float) -> None:
    await rt.start()
    for _ in range(int(seconds * 1e9 / TICK)):
        await rt.feed(sim.step(TICK))
        await asyncio.sleep(0)  # let the uplink task interleave


def test_partition_and_lost_acks_lose_nothing_and_count_nothing_twice() -> None:
    _, sim, core = make({"decide": {"rules": [{"name": "a", "actions": ["relay"]}]}})
    store = HubStore("sqlite://")
    store.create_all()
    chaos = ChaosTransport(
        InProcTransport(IngestService(store).handle),
        PartitionSchedule([(10.0, 20.0)]),
        clock=lambda: sim.now_ns,
        ack_loss=0.3,
        seed=1,
    )
    rt = NodeRuntime(core, MemoryOutbox(), chaos, clock=lambda: sim.now_ns)

    async def main() -> bool:
        await run(rt, sim, 36.0)
        await rt.flush()
        ok = await rt.drain(20.0)
        await rt.stop()
        return ok

    assert asyncio.run(main())
    totals = store.totals()["overall"]
    assert totals["samples"] == core.counters.samples_accepted > 600_000
    assert store.duplicate_summary_samples() == 0
    assert chaos.blocked > 0 and chaos.acks_dropped > 0
    assert totals["duplicates"] > 0  # resent after lost acks, recognised, skipped
    events = store.events()
    machines = {e.machine for e in events}
    assert {"gw1.m01", "gw1.m02", "gw1.m03"} <= machines
    assert all(e.has_raw for e in events if e.detector != "rule:dropout")
    # local actions fired for every incident, latency measured from arrival
    assert core.actions.invocations["relay"] == core.counters.incidents
    assert core.actions.latency.count == core.counters.incidents


def test_outbox_survives_a_restart_during_a_partition(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    store = HubStore("sqlite://")
    store.create_all()
    inproc = InProcTransport(IngestService(store).handle)
    _, sim, core = make()
    chaos = ChaosTransport(inproc, PartitionSchedule([(5.0, 1e9)]), clock=lambda: sim.now_ns)
    box = SqliteOutbox(db)
    rt = NodeRuntime(core, box, chaos, clock=lambda: sim.now_ns)

    async def first() -> None:
        await run(rt, sim, 12.0)
        await rt.flush()
        await rt.stop()

    asyncio.run(first())
    held = box.stats().depth
    box.close()
    assert held > 0
    before = store.totals()["overall"]["samples"]
    assert before < core.counters.samples_accepted

    # a new process: same outbox file, link up
    box2 = SqliteOutbox(db)
    _, _, core2 = make()
    rt2 = NodeRuntime(core2, box2, InProcTransport(IngestService(store).handle), clock=time.time_ns)

    async def second() -> bool:
        await rt2.start()
        ok = await rt2.drain(20.0)
        await rt2.stop()
        return ok

    assert asyncio.run(second())
    assert store.totals()["overall"]["samples"] == core.counters.samples_accepted
    assert store.duplicate_summary_samples() == 0
    box2.close()


def test_anonymised_node_sends_hashed_names_and_acts_on_real_ones(
    monkeypatch: Any,
) -> None:
    from edgeloop.node.build import resolve_spec

    monkeypatch.setenv("EDGELOOP_ANON_KEY", "plant-secret")
    spec = resolve_spec("factory").model_copy(
        update={
            "anonymise": resolve_spec("factory").anonymise.model_copy(
                update={"hash": ("machine", "sensor")}
            )
        }
    )
    cfg = parse_node_config(
        {
            "node_id": "gw1",
            "summary_every_s": 1.0,
            "decide": {"rules": [{"name": "a", "actions": ["relay"]}]},
        }
    )
    sim = build_sim(
        {"generate": {"n_machines": 3, "gateway": "gw1", "seed": 3}}, FAULTS, seed=3, start_ns=0
    )
    actions = builtin_actions()
    core = build_core(cfg, sim.catalog, actions, spec=spec)
    store = HubStore("sqlite://")
    store.create_all()
    rt = NodeRuntime(
        core, MemoryOutbox(), InProcTransport(IngestService(store).handle), clock=lambda: sim.now_ns
    )

    async def main() -> bool:
        await run(rt, sim, 30.0)
        await rt.flush()
        ok = await rt.drain(10.0)
        await rt.stop()
        return ok

    assert asyncio.run(main())
    events = store.events()
    assert events and all(e.machine.startswith("h:") and e.sensor.startswith("h:") for e in events)
    # the local action saw the real machine names
    assert {m for m, _ in actions.relay_log} <= {"gw1.m01", "gw1.m02", "gw1.m03"}
    assert len(actions.relay_log) == len(events)
    sensors = {s.sensor for s in store.summaries(limit=100)}
    assert sensors and all(name.startswith("h:") for name in sensors)
    assert store.totals()["overall"]["samples"] == core.counters.samples_accepted


def test_replaced_outbox_numbers_from_one_again_and_loses_nothing() -> None:
    # A gateway's outbox is replaced mid-run (new disk, re-flash): the new outbox numbers
    # from 1 again under a new epoch, and the hub stores those entries as new data.
    _, sim, core = make()
    store = HubStore("sqlite://")
    store.create_all()
    box1 = MemoryOutbox()
    rt1 = NodeRuntime(
        core, box1, InProcTransport(IngestService(store).handle), clock=lambda: sim.now_ns
    )

    async def first() -> bool:
        await run(rt1, sim, 12.0)
        await rt1.flush()
        ok = await rt1.drain(20.0)
        await rt1.stop()
        return ok

    assert asyncio.run(first())
    first_samples = core.counters.samples_accepted
    assert store.totals()["overall"]["samples"] == first_samples > 0
    used = box1.stats().next_seq - 1
    assert used > 1

    box2 = MemoryOutbox()  # brand new: seqs from 1, another epoch
    assert box2.stats().epoch != box1.stats().epoch
    rt2 = NodeRuntime(
        core, box2, InProcTransport(IngestService(store).handle), clock=lambda: sim.now_ns
    )

    async def second() -> bool:
        await run(rt2, sim, 12.0)
        await rt2.flush()
        ok = await rt2.drain(20.0)
        await rt2.stop()
        return ok

    assert asyncio.run(second())
    assert box2.stats().next_seq - 1 >= 2  # the second run reused seqs 1.. of the first
    assert core.counters.samples_accepted > first_samples
    totals = store.totals()["overall"]
    assert totals["samples"] == core.counters.samples_accepted
    assert totals["duplicates"] == 0
    assert store.duplicate_summary_samples() == 0
    node = store.node("gw1")
    assert node is not None
    assert (node.epoch, node.unknown_upto_seq) == (box2.stats().epoch, 0)
    assert [(i.epoch, i.watermark) for i in store.incarnations("gw1")] == [
        (box1.stats().epoch, box1.stats().acked_upto),
        (box2.stats().epoch, box2.stats().acked_upto),
    ]


# -- the uplink window ------------------------------------------------------------------
class InOrderCheck:
    """The hub's real receive path, recording for every batch that stored new entries
    whether the (node, epoch) watermark had reached the batch's ``after_seq`` before:
    the hub must never commit seq k+1 of an epoch before k."""

    def __init__(self, store: HubStore) -> None:
        self.store = store
        self.service = IngestService(store)
        self.commits = 0
        self.violations: list[tuple[int, int | None]] = []

    def handle(self, data: bytes) -> bytes:
        batch = codec.decode_batch(data)
        before = next(
            (i.watermark for i in self.store.incarnations(batch.node) if i.epoch == batch.epoch),
            None,
        )
        reply = self.service.handle(data)
        if codec.decode_ack(reply).accepted:
            self.commits += 1
            if batch.after_seq > (0 if before is None else before):
                self.violations.append((batch.after_seq, before))
        return reply


class HeldAcks:
    """A link to the real hub whose acks wait until the test releases them."""

    def __init__(self, handler: Callable[[bytes], bytes]) -> None:
        self.handler = handler
        self.sent: list[Batch] = []
        self.held: list[Ack] = []
        self._out: asyncio.Queue[Ack] = asyncio.Queue()

    async def send(self, batch: Batch) -> None:
        self.sent.append(batch)
        self.held.append(codec.decode_ack(self.handler(codec.encode_batch(batch))))

    def release(self) -> None:
        for ack in self.held:
            self._out.put_nowait(ack)
        self.held.clear()

    async def receive(self) -> AsyncIterator[Message]:
        while True:
            yield await self._out.get()

    async def close(self) -> None:
        pass


def summaries_entries(n: int) -> list[NewEntry]:
    rows = SummaryBatch(
        sensor=np.zeros(1, dtype=np.uint32),
        t0_ns=np.zeros(1, dtype=np.int64),
        t1_ns=np.ones(1, dtype=np.int64),
        count=np.full(1, 10, dtype=np.int64),
        mean=np.zeros(1, dtype=np.float32),
        std=np.zeros(1, dtype=np.float32),
        min=np.zeros(1, dtype=np.float32),
        max=np.zeros(1, dtype=np.float32),
        sensor_names=("m01.temp",),
    )
    payload = codec.encode_summaries(rows)
    return [NewEntry(Priority.SUMMARY, "summaries", payload, 10) for _ in range(n)]


async def until(cond: Callable[[], bool], wait_s: float = 10.0) -> None:
    deadline = time.monotonic() + wait_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def test_the_window_bounds_what_is_unacknowledged_and_acks_release_it() -> None:
    # One entry per batch (max_batch_bytes 1); acks held unless released.
    _, _, core = make({"uplink": {"max_batch_bytes": 1, "timeout_s": 60.0}})
    store = HubStore("sqlite://")
    store.create_all()
    link = HeldAcks(IngestService(store).handle)
    box = MemoryOutbox()
    box.append(summaries_entries(20))
    rt = NodeRuntime(core, box, link, window_batches=3)

    async def main() -> list[int]:
        sent = []
        await rt.start()
        await until(lambda: len(link.sent) == 1)
        await asyncio.sleep(0.2)
        sent.append(len(link.sent))  # one batch until the hub has answered once
        link.release()
        await until(lambda: len(link.sent) == 4)
        await asyncio.sleep(0.2)
        sent.append(len(link.sent))  # then three unacknowledged, no more
        link.release()
        await until(lambda: len(link.sent) == 7)
        await asyncio.sleep(0.2)
        sent.append(len(link.sent))
        while box.stats().depth:
            link.release()
            await asyncio.sleep(0.01)
        await rt.stop()
        return sent

    assert asyncio.run(main()) == [1, 4, 7]
    # each batch claimed after the last one *sent*, not the last acknowledged
    assert [b.after_seq for b in link.sent[:7]] == [0, 1, 2, 3, 4, 5, 6]
    assert [b.entries[0].seq for b in link.sent] == list(range(1, 21))
    assert store.totals()["overall"]["samples"] == 200


def test_the_window_byte_bound_holds() -> None:
    _, _, core = make({"uplink": {"max_batch_bytes": 1, "timeout_s": 60.0}})
    store = HubStore("sqlite://")
    store.create_all()
    link = HeldAcks(IngestService(store).handle)
    box = MemoryOutbox()
    entries = summaries_entries(10)
    box.append(entries)
    size = len(entries[0].payload)
    rt = NodeRuntime(core, box, link, window_batches=8, window_bytes=int(2.5 * size))

    async def main() -> int:
        await rt.start()
        await until(lambda: len(link.sent) == 1)
        link.release()
        await until(lambda: len(link.sent) == 4)
        await asyncio.sleep(0.2)
        n = len(link.sent)
        await rt.stop()
        return n

    # after the first: 2 batches are under 2.5 sizes, the third crosses the bound
    assert asyncio.run(main()) == 4


def test_window_commits_in_order_under_lost_acks_and_a_partition() -> None:
    _, sim, core = make({"uplink": {"max_batch_bytes": 4096}})
    store = HubStore("sqlite://")
    store.create_all()
    hub = InOrderCheck(store)
    chaos = ChaosTransport(
        InProcTransport(hub.handle),
        PartitionSchedule([(8.0, 14.0)]),
        clock=lambda: sim.now_ns,
        ack_loss=0.3,
        seed=2,
    )
    rt = NodeRuntime(core, MemoryOutbox(), chaos, clock=lambda: sim.now_ns, window_batches=6)

    async def main() -> bool:
        await run(rt, sim, 24.0)
        await rt.flush()
        ok = await rt.drain(30.0)
        await rt.stop()
        return ok

    assert asyncio.run(main())
    assert rt.window is not None and rt.window.rewinds > 0
    assert chaos.blocked > 0 and chaos.acks_dropped > 0
    assert hub.commits > 10 and hub.violations == []
    totals = store.totals()["overall"]
    assert totals["samples"] == core.counters.samples_accepted
    assert totals["duplicates"] > 0  # resends after lost acks, recognised and skipped
    assert store.duplicate_summary_samples() == 0

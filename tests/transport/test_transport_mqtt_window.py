"""Several batches in flight over MQTT: the hub commits a (node, epoch) in seq order
whatever the broker drops or two hub replicas race for, and the node's window resends
what the hub did not take. Real Mosquitto, real hub ingest, real node runtime."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from transport_contract import ACK_WAIT_S, batch, ledger, new_entry, next_ack

from conftest import Broker
from edgeloop.errors import TelemetryError
from edgeloop.hub.app import IngestService
from edgeloop.hub.mqtt_ingest import MqttIngest, StoreIngest
from edgeloop.hub.store import HubStore
from edgeloop.node.build import build_core
from edgeloop.node.config import parse_node_config
from edgeloop.node.main import builtin_actions
from edgeloop.node.runtime import NodeRuntime
from edgeloop.outbox.memory import MemoryOutbox
from edgeloop.sim.build import build_sim
from edgeloop.sim.netproxy import NetProxy
from edgeloop.telemetry import codec
from edgeloop.transport.base import Ack
from edgeloop.transport.mqtt import MqttTransport
from services import Mosquitto, MqttProbe


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


class InOrderPath(StoreIngest):
    """The hub's real receive path, recording for every batch that stored new entries
    whether the (node, epoch) watermark had reached its ``after_seq`` before. Replicas
    share ``lock`` so that reading the watermark and committing are one step here."""

    def __init__(self, service: IngestService, lock: threading.Lock) -> None:
        super().__init__(service)
        self.lock = lock
        self.commits = 0
        self.violations: list[tuple[int, int | None]] = []

    def ingest(self, data: bytes, *, sender: str | None = None) -> Ack:
        b = codec.decode_batch(data)
        with self.lock:
            before = self.watermark(b.node, b.epoch)
            ack = super().ingest(data, sender=sender)
        if ack.accepted:
            self.commits += 1
            if b.after_seq > (before or 0):
                self.violations.append((b.after_seq, before))
        return ack


def test_a_batch_ahead_of_the_watermark_is_not_committed(mqtt_broker: Broker, tenant: str) -> None:
    store = HubStore("sqlite://")
    store.create_all()
    hub = MqttIngest(
        IngestService(store), mqtt_broker.host, mqtt_broker.port, group=tenant, tenant=tenant
    ).start()

    async def go() -> list[tuple[int, int]]:
        t = MqttTransport(mqtt_broker.host, mqtt_broker.port, tenant, "gw1")
        rx = aiter(t.receive())
        got = []
        for seqs in (range(1, 3), range(5, 7), range(3, 5), range(5, 7)):
            await t.send(batch("gw1", seqs))  # 5..6 first goes before 3..4 (a lost batch)
            ack = await next_ack(rx)
            got.append((ack.upto_seq, ack.answers_seq))
            if seqs.start == 5 and len(got) == 2:
                assert ledger(store, "gw1")["entries"] == 2  # 5..6 not committed
        await t.close()
        return got

    try:
        got = asyncio.run(go())
    finally:
        hub.stop()
    # the answer to 5..6 says: not taken, the watermark is 2 (the node resends from 3)
    assert got == [(2, 2), (2, 6), (4, 4), (6, 6)]
    assert hub.out_of_order == 1 and hub.stored == 3
    assert ledger(store, "gw1") == {"entries": 6, "samples": 600, "duplicates": 0}
    store.close()


def test_window_over_a_dropping_broker_and_two_replicas_commits_in_order(
    private_broker: Callable[..., Mosquitto], tenant: str, tmp_path: Path
) -> None:
    """Mosquitto drops QoS 1 messages beyond ``max_queued_messages`` for a hub that falls
    behind (and still PUBACKs them to the node); two replicas share the uplinks. The
    node keeps up to 6 batches in flight."""
    broker = private_broker("max_queued_messages 2")
    proxy = NetProxy(broker.host, broker.port).start_in_thread()  # between hub a and broker
    url = f"sqlite:///{tmp_path / 'hub.db'}"  # one database, two stores: as two processes
    stores = [HubStore(url), HubStore(url)]
    stores[0].create_all()
    lock = threading.Lock()
    paths = [InOrderPath(IngestService(s), lock) for s in stores]
    hubs = [
        MqttIngest(p, host, port, group=tenant, instance=name, tenant=tenant, max_pending=1)
        for p, name, (host, port) in zip(
            paths, "ab", [(proxy.host, proxy.port), (broker.host, broker.port)], strict=True
        )
    ]
    for h in hubs:
        h.start()
    cfg = parse_node_config(
        {
            "node_id": "gw1",
            "summary_every_s": 0.2,
            "uplink": {"max_batch_bytes": 1, "timeout_s": 2.0, "retry_max_s": 0.5},
        }
    )
    sim = build_sim(
        {"generate": {"n_machines": 2, "gateway": "gw1", "seed": 5}}, [], seed=5, start_ns=0
    )
    core = build_core(cfg, sim.catalog, builtin_actions())
    transport = MqttTransport(broker.host, broker.port, tenant, "gw1", timeout_s=2.0)
    rt = NodeRuntime(core, MemoryOutbox(), transport, clock=lambda: sim.now_ns, window_batches=6)

    async def main() -> bool:
        await rt.start()
        for tick in range(150):
            if tick == 30:
                proxy.stall()  # hub a stops taking messages: the broker queues 2, drops more
            if tick == 90:
                proxy.restore()
            await rt.feed(sim.step(100_000_000))
            await asyncio.sleep(0.002)
        await rt.flush()
        ok = await rt.drain(90.0)
        await rt.stop()
        return ok

    try:
        assert asyncio.run(main())
    finally:
        for h in hubs:
            h.stop()
        proxy.stop_thread()
    a, b = hubs
    assert [p.violations for p in paths] == [[], []]
    assert a.stored > 0 and b.stored > 0, (a.stats(), b.stats())
    assert a.out_of_order + b.out_of_order > 0  # gaps happened and were refused
    assert rt.window is not None and rt.window.rewinds > 0
    assert sum(p.commits for p in paths) > 10
    totals = stores[0].totals()["overall"]
    assert totals["samples"] == core.counters.samples_accepted > 0
    assert stores[0].duplicate_summary_samples() == 0
    for s in stores:
        s.close()


def test_the_window_keeps_several_batches_in_flight_over_mqtt(
    mqtt_broker: Broker, tenant: str
) -> None:
    """The node sends batch k+1 before the hub has answered batch k, and never more than
    ``window_batches`` beyond the hub's answers: seen by a plain subscriber on the broker,
    which orders the node's uplinks and the hub's acks as it forwards them."""
    store = HubStore("sqlite://")
    store.create_all()

    class Slow(StoreIngest):
        def ingest(self, data: bytes, *, sender: str | None = None) -> Ack:
            time.sleep(0.02)  # a slow store: the node's next batches arrive meanwhile
            return super().ingest(data, sender=sender)

    hub = MqttIngest(
        Slow(IngestService(store)), mqtt_broker.host, mqtt_broker.port, group=tenant, tenant=tenant
    ).start()
    watcher = MqttProbe(mqtt_broker.host, mqtt_broker.port, f"edgeloop/{tenant}/gw1/+")
    cfg = parse_node_config({"node_id": "gw1", "uplink": {"max_batch_bytes": 1}})
    sim = build_sim(
        {"generate": {"n_machines": 1, "gateway": "gw1", "seed": 1}}, [], seed=1, start_ns=0
    )
    core = build_core(cfg, sim.catalog, builtin_actions())
    box = MemoryOutbox()
    box.append([new_entry(seq) for seq in range(1, 25)])
    transport = MqttTransport(mqtt_broker.host, mqtt_broker.port, tenant, "gw1")
    rt = NodeRuntime(core, box, transport, window_batches=4)

    async def main() -> bool:
        await rt.start()
        ok = await rt.drain(ACK_WAIT_S * 2)
        await rt.stop()
        return ok

    try:
        assert asyncio.run(main())
        messages = watcher.wait_count(48)  # 24 uplinks, 24 acks (and the presence)
    finally:
        hub.stop()
        watcher.close()
    ahead, afters = [], []
    uplinks = acks = 0
    for payload, _, corr in messages:
        if corr is None:
            continue  # presence
        try:
            codec.decode_ack(payload)
            acks += 1
        except TelemetryError:
            afters.append(codec.decode_batch(payload).after_seq)
            uplinks += 1
            ahead.append(uplinks - acks)
    assert afters == list(range(24))  # in order, each once: nothing was resent
    assert max(ahead) > 1  # pipelined
    assert max(ahead) <= 4  # bounded by the window
    assert ledger(store, "gw1")["entries"] == 24
    store.close()

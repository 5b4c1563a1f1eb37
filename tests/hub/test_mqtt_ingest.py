"""The hub's MQTT ingest against a real Mosquitto: replicas sharing one subscription,
bad input on the wire dead-lettered and answered, store failures acknowledging nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import Broker
from edgeloop.hub.app import IngestService
from edgeloop.hub.mqtt_ingest import MqttIngest
from edgeloop.hub.store import HubStore
from edgeloop.outbox.base import Entry, Priority
from edgeloop.sim.chaos import wrong_version
from edgeloop.sim.netproxy import NetProxy
from edgeloop.telemetry import codec
from edgeloop.transport.base import Ack, Batch
from edgeloop.transport.mqtt import MqttTransport
from edgeloop.transport.mqtt_session import (
    ERROR_PROPERTY,
    FIELD_PROPERTY,
    Correlation,
    publish_properties,
)
from edgeloop.transport.topics import NodeTopics
from services import Mosquitto, MqttProbe

from .conftest import SEC, summary_batch

WAIT_S = 15.0


def entry(seq: int) -> Entry:
    b = summary_batch(["m01.temp", "m01.vib_x"], [seq * SEC, seq * SEC], [10, 20])
    return Entry(seq, Priority.SUMMARY, "summaries", codec.encode_summaries(b), b.samples)


def batch(node: str, seq: int, epoch: int = 9) -> Batch:
    return Batch(node, seq - 1, (entry(seq),), {}, epoch=epoch)


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def replica(mqtt_broker: Broker, tenant: str) -> Iterator[Callable[..., MqttIngest]]:
    """Start hub replicas of one group on ``tenant``, each over its own store."""
    started: list[MqttIngest] = []

    def start(store: HubStore, instance: str = "0", **kw: object) -> MqttIngest:
        r = MqttIngest(
            IngestService(store),
            mqtt_broker.host,
            mqtt_broker.port,
            group=tenant,
            instance=instance,
            tenant=tenant,
            **kw,  # type: ignore[arg-type]
        ).start()
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


async def send_all(
    broker: Broker, tenant: str, node: str, seqs: range, epoch: int = 9
) -> list[Ack]:
    """Send one batch per seq through a real transport, each after the previous ack."""
    t = MqttTransport(broker.host, broker.port, tenant, node)
    rx = aiter(t.receive())
    acks = []
    for seq in seqs:
        await t.send(batch(node, seq, epoch))
        ack = await asyncio.wait_for(anext(rx), WAIT_S)
        assert isinstance(ack, Ack)
        acks.append(ack)
    await t.close()
    return acks


def test_two_replicas_share_the_load_and_store_each_batch_once(
    mqtt_broker: Broker, tenant: str, replica: Callable[..., MqttIngest], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"  # one database, two stores: as two processes
    stores = [HubStore(url), HubStore(url)]
    stores[0].create_all()
    a, b = replica(stores[0], "a"), replica(stores[1], "b")
    nodes = [f"gw{i}" for i in range(4)]

    async def go() -> list[list[Ack]]:
        return list(
            await asyncio.gather(*(send_all(mqtt_broker, tenant, n, range(1, 13)) for n in nodes))
        )

    acks = asyncio.run(go())
    assert all([x.upto_seq for x in node_acks] == list(range(1, 13)) for node_acks in acks)
    assert a.stored > 0 and b.stored > 0, (a.stats(), b.stats())
    assert a.stored + b.stored == 48
    totals = stores[0].totals()
    assert {n: totals["nodes"][n]["entries"] for n in nodes} == dict.fromkeys(nodes, 12)
    assert totals["overall"]["samples"] == 48 * 30
    assert stores[0].duplicate_summary_samples() == 0
    for s in stores:
        s.close()


def test_a_stopped_replica_takes_no_share(
    mqtt_broker: Broker, tenant: str, replica: Callable[..., MqttIngest]
) -> None:
    store = HubStore("sqlite://")
    store.create_all()
    a = replica(store, "a")
    b = replica(store, "b")
    b.stop()
    acks = asyncio.run(send_all(mqtt_broker, tenant, "gw1", range(1, 11)))
    assert [x.upto_seq for x in acks] == list(range(1, 11))
    assert a.stored == 10
    store.close()


# -- bad input on the wire ------------------------------------------------------------------
def forged(node: str) -> bytes:
    return codec.encode_batch(batch("gw2", 1))  # a batch of gw2 on gw1's topic


def zero_seq(node: str) -> bytes:
    e = entry(1)
    bad = Entry(0, e.priority, e.kind, e.payload, e.samples)
    return codec.encode_batch(Batch(node, 0, (bad,), {}, epoch=9))


CASES = {
    "garbage": (lambda node: b"\x93not a batch", "malformed", "payload"),
    "truncated": (lambda node: codec.encode_batch(batch(node, 1))[:40], "truncated", "payload"),
    "wrong_version": (
        lambda node: wrong_version(codec.encode_batch(batch(node, 1))),
        "schema_version",
        "envelope.v",
    ),
    "forged_sender": (forged, "malformed", "node"),
    "forged_seq": (zero_seq, "malformed", "batch.entries[0].seq"),
    "oversized": (
        lambda node: codec.encode_batch(batch(node, 1)) + b"\0" * 4096,
        "oversized",
        "payload",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_on_the_wire_is_dead_lettered_counted_and_answered(
    case: str, mqtt_broker: Broker, tenant: str, replica: Callable[..., MqttIngest]
) -> None:
    make, reason, field = CASES[case]
    store = HubStore("sqlite://")
    store.create_all()
    hub = replica(store, max_payload_bytes=2048)
    topics = NodeTopics(tenant, "gw1")
    probe = MqttProbe(mqtt_broker.host, mqtt_broker.port, topics.ack)
    corr = Correlation(9, 1, 1).pack()
    try:
        probe.publish(topics.uplink, make("gw1"), publish_properties(corr))
        [(detail, props, got_corr)] = probe.wait_count(1)
    finally:
        probe.close()
    assert props[ERROR_PROPERTY] == reason and props[FIELD_PROPERTY] == field
    assert got_corr == corr and detail
    [dead] = store.dead_letters()
    assert (dead.node, dead.reason, dead.field) == ("gw1", reason, field)
    assert hub.stats()["rejected"] == {reason: 1}
    metrics = hub.service.metrics
    assert metrics.rejects.labels(reason)._value.get() == 1
    # The consumer is still there: a good batch goes in and is acknowledged.
    [ack] = asyncio.run(send_all(mqtt_broker, tenant, "gw1", range(1, 2)))
    assert (ack.upto_seq, ack.accepted) == (1, 1)
    assert store.totals()["nodes"]["gw1"]["entries"] == 1
    if case == "forged_sender":
        assert "forged sender" in dead.detail and "gw2" not in store.totals()["nodes"]
    store.close()


def test_a_store_failure_acknowledges_nothing_and_the_node_resends(
    mqtt_broker: Broker, tenant: str, replica: Callable[..., MqttIngest], tmp_path: Path
) -> None:
    store = HubStore(f"sqlite:///{tmp_path / 'hub.db'}")  # no tables yet: every ingest fails
    hub = replica(store)

    async def go() -> Ack:
        t = MqttTransport(mqtt_broker.host, mqtt_broker.port, tenant, "gw1")
        rx = aiter(t.receive())
        await t.send(batch("gw1", 1))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(rx), 2.0)
        assert hub.store_errors == 1 and hub.acks_published == 0
        store.create_all()  # the database is back
        await t.send(batch("gw1", 1))
        rx = aiter(t.receive())  # the timeout above closed the first iterator
        ack = await asyncio.wait_for(anext(rx), WAIT_S)
        await t.close()
        assert isinstance(ack, Ack)
        return ack

    ack = asyncio.run(go())
    assert (ack.upto_seq, ack.accepted) == (1, 1)
    assert hub.stats()["store_errors"] == 1 and hub.stats()["stored"] == 1
    store.close()


def test_messages_the_broker_drops_for_a_slow_hub_are_resent_until_committed(
    private_broker: Callable[..., Mosquitto], tenant: str
) -> None:
    """Mosquitto drops QoS 1 messages beyond ``max_queued_messages`` for a subscriber
    that falls behind, yet PUBACKs them to the publisher. Only the hub's ack tells."""
    broker = private_broker("max_queued_messages 1")
    proxy = NetProxy(broker.host, broker.port).start_in_thread()  # between hub and broker
    store = HubStore("sqlite://")
    store.create_all()
    hub = MqttIngest(
        IngestService(store), proxy.host, proxy.port, group=tenant, tenant=tenant, max_pending=1
    ).start()
    nodes = [f"gw{i}" for i in range(5)]
    sends = dict.fromkeys(nodes, 0)

    async def node(name: str) -> None:
        t = MqttTransport(broker.host, broker.port, tenant, name, timeout_s=2.0)
        for seq in (1, 2):
            while True:
                await t.send(batch(name, seq))
                sends[name] += 1
                try:  # a fresh iterator each time: a timeout closes the one it cancels
                    ack = await asyncio.wait_for(anext(aiter(t.receive())), 1.0)
                except TimeoutError:
                    continue
                assert isinstance(ack, Ack)
                if ack.upto_seq >= seq:
                    break
        await t.close()

    async def go() -> None:
        proxy.stall()  # the hub stops taking messages: the broker queues 1, drops the rest
        tasks = [asyncio.create_task(node(n)) for n in nodes]
        while sum(sends.values()) < len(nodes):
            await asyncio.sleep(0.01)
        proxy.restore()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)

    try:
        asyncio.run(go())
    finally:
        hub.stop()
        proxy.stop_thread()
    assert sum(sends.values()) > 2 * len(nodes)  # drops were made good by resends
    assert {n: store.totals()["nodes"][n]["entries"] for n in nodes} == dict.fromkeys(nodes, 2)
    assert store.duplicate_summary_samples() == 0
    store.close()

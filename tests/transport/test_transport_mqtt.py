"""What only the MQTT uplink does: presence and last will, acks of another epoch dropped,
refusals reported, no hub = LinkDown, bounded in-flight publishes, silent partitions,
broker restarts, and a real node runtime through a cut link. Real Mosquitto throughout."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from transport_contract import ACK_WAIT_S, batch, ledger, next_ack, send_until_accepted

from conftest import Broker
from edgeloop.errors import ConfigError, LinkDown, TransportError
from edgeloop.hub.app import IngestService
from edgeloop.hub.mqtt_ingest import MqttIngest
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
from edgeloop.transport.mqtt_session import Correlation, publish_properties, publish_size
from edgeloop.transport.topics import NodeTopics
from services import Mosquitto, MqttProbe


@dataclass
class Hub:
    host: str
    port: int
    tenant: str
    store: HubStore
    ingest: MqttIngest


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def start_hub(host: str, port: int, tenant: str, **kw: Any) -> Hub:
    store = HubStore("sqlite://")
    store.create_all()
    ingest = MqttIngest(IngestService(store), host, port, group=tenant, tenant=tenant, **kw).start()
    return Hub(host, port, tenant, store, ingest)


@pytest.fixture
def hub(mqtt_broker: Broker, tenant: str) -> Iterator[Hub]:
    h = start_hub(mqtt_broker.host, mqtt_broker.port, tenant)
    yield h
    h.ingest.stop()
    h.store.close()


# -- construction -----------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, 65_536])
def test_in_flight_bound_is_checked(bad: int) -> None:
    with pytest.raises(ConfigError, match="max_inflight"):
        MqttTransport("127.0.0.1", 1883, "t", "gw1", max_inflight=bad)


@pytest.mark.parametrize(("tenant", "node", "what"), [("a/b", "gw1", "tenant"), ("t", "+", "node")])
def test_topic_levels_are_checked(tenant: str, node: str, what: str) -> None:
    with pytest.raises(ConfigError, match=what):
        MqttTransport("127.0.0.1", 1883, tenant, node)


def test_publish_size_counts_the_mqtt_framing() -> None:
    # 1 type byte + remaining-length varint (2 bytes past 127) + topic + id + properties
    assert publish_size(10, 24, 50) == 1 + 1 + (2 + 10 + 2 + 1 + 27 + 50)
    assert publish_size(10, 24, 1000) == 1 + 2 + (2 + 10 + 2 + 1 + 27 + 1000)


def test_a_batch_of_another_node_is_refused_before_sending(hub: Hub) -> None:
    async def go() -> None:
        t = MqttTransport(hub.host, hub.port, hub.tenant, "gw1")
        with pytest.raises(TransportError, match="'gw2'"):
            await t.send(batch("gw2", range(1, 2)))
        await t.close()

    asyncio.run(go())


# -- presence -----------------------------------------------------------------------------
def test_presence_is_online_while_connected_and_offline_after_close(hub: Hub) -> None:
    watcher = MqttProbe(hub.host, hub.port, NodeTopics(hub.tenant, "gw1").presence)

    async def go() -> None:
        t = MqttTransport(hub.host, hub.port, hub.tenant, "gw1")
        await t.connect()
        await asyncio.to_thread(watcher.wait_last, b"online")
        await t.close()
        await asyncio.to_thread(watcher.wait_last, b"offline")

    try:
        asyncio.run(go())
    finally:
        watcher.close()
    # Retained: a late subscriber learns the state too.
    late = MqttProbe(hub.host, hub.port, NodeTopics(hub.tenant, "gw1").presence)
    try:
        late.wait_last(b"offline")
    finally:
        late.close()


def test_the_broker_publishes_the_last_will_when_the_link_dies(hub: Hub) -> None:
    watcher = MqttProbe(hub.host, hub.port, NodeTopics(hub.tenant, "gw1").presence)
    proxy = NetProxy(hub.host, hub.port).start_in_thread()

    async def go() -> None:
        t = MqttTransport(proxy.host, proxy.port, hub.tenant, "gw1", reconnect_min_s=30)
        await t.connect()
        await asyncio.to_thread(watcher.wait_last, b"online")
        proxy.cut()
        await asyncio.to_thread(watcher.wait_last, b"offline")
        await t.close()

    try:
        asyncio.run(go())
    finally:
        proxy.stop_thread()
        watcher.close()


# -- acks -----------------------------------------------------------------------------------
def test_acks_of_another_epoch_or_without_correlation_are_dropped(hub: Hub) -> None:
    topics = NodeTopics(hub.tenant, "gw1")
    forger = MqttProbe(hub.host, hub.port)

    def forge(props: Any) -> None:
        forger.publish(topics.ack, codec.encode_ack(Ack("gw1", 1000)), props)

    async def go() -> tuple[Ack, Ack, MqttTransport]:
        t = MqttTransport(hub.host, hub.port, hub.tenant, "gw1")
        rx = aiter(t.receive())
        await t.send(batch("gw1", range(1, 3), epoch=5))
        first = await next_ack(rx)
        # An ack of another epoch, one naming a send never made, one without correlation.
        await asyncio.to_thread(forge, publish_properties(Correlation(6, 2, 1).pack()))
        await asyncio.to_thread(forge, publish_properties(Correlation(5, 2, 99).pack()))
        await asyncio.to_thread(forge, None)
        await t.send(batch("gw1", range(3, 5), epoch=5))
        second = await next_ack(rx)
        await t.close()
        return first, second, t

    try:
        first, second, t = asyncio.run(go())
    finally:
        forger.close()
    assert (first.upto_seq, second.upto_seq) == (2, 4)  # never the forged 1000
    assert t.stale_acks == 3


def test_a_refused_batch_is_reported_to_the_node(mqtt_broker: Broker, tenant: str) -> None:
    h = start_hub(mqtt_broker.host, mqtt_broker.port, tenant, max_payload_bytes=200)

    async def go() -> MqttTransport:
        t = MqttTransport(h.host, h.port, tenant, "gw1")
        rx = aiter(t.receive())
        await t.send(batch("gw1", range(1, 6)))  # well over 200 bytes
        with pytest.raises(TimeoutError):  # no ack for a refused batch
            await next_ack(rx, 2.0)
        await t.close()
        return t

    try:
        t = asyncio.run(go())
        assert t.refusals == 1
        assert t.last_refusal.startswith("payload: oversized")
        [dead] = h.store.dead_letters(node="gw1")
        assert (dead.reason, dead.field) == ("oversized", "payload")
    finally:
        h.ingest.stop()
        h.store.close()


def test_no_hub_consuming_is_link_down(mqtt_broker: Broker, tenant: str) -> None:
    async def go() -> None:
        t = MqttTransport(mqtt_broker.host, mqtt_broker.port, tenant, "gw1")
        with pytest.raises(LinkDown, match="no hub subscribes"):
            await t.send(batch("gw1", range(1, 2)))
        await t.close()

    asyncio.run(go())


def test_what_is_in_flight_is_bounded(hub: Hub) -> None:
    proxy = NetProxy(hub.host, hub.port).start_in_thread()

    async def go() -> tuple[int, list[BaseException | None]]:
        t = MqttTransport(proxy.host, proxy.port, hub.tenant, "gw1", max_inflight=2)
        await t.connect()
        proxy.stall()  # PUBACKs cannot come back
        sends = [asyncio.create_task(t.send(batch("gw1", range(i, i + 1)))) for i in range(1, 7)]
        deadline = time.monotonic() + ACK_WAIT_S
        while t.inflight < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        peak = t.inflight
        for _ in range(20):
            await asyncio.sleep(0.01)
            peak = max(peak, t.inflight)
        proxy.restore()
        results = await asyncio.gather(*sends, return_exceptions=True)
        await t.close()
        return peak, [r if isinstance(r, BaseException) else None for r in results]

    try:
        peak, results = asyncio.run(go())
    finally:
        proxy.stop_thread()
    assert peak == 2
    assert all(r is None or isinstance(r, LinkDown) for r in results)


# -- faults ---------------------------------------------------------------------------------
def test_a_silent_partition_is_noticed_by_keepalive_and_survived(hub: Hub) -> None:
    proxy = NetProxy(hub.host, hub.port).start_in_thread()

    async def go() -> MqttTransport:
        t = MqttTransport(proxy.host, proxy.port, hub.tenant, "gw1", timeout_s=1.0, keepalive_s=1)
        rx = aiter(t.receive())
        await send_until_accepted(t, batch("gw1", range(1, 3)), rx)
        proxy.stall()
        with pytest.raises(LinkDown):
            await t.send(batch("gw1", range(3, 5)))
        while t.connected:  # keep-alive: 1.5 s without an answer
            await asyncio.sleep(0.05)
        proxy.restore()
        _, ack = await send_until_accepted(t, batch("gw1", range(3, 5)), rx)
        assert ack.upto_seq == 4
        await t.close()
        return t

    try:
        t = asyncio.run(go())
    finally:
        proxy.stop_thread()
    assert t.disconnects >= 1
    assert ledger(hub.store, "gw1") | {"duplicates": 0} == {
        "entries": 4,
        "samples": 400,
        "duplicates": 0,
    }
    assert hub.store.duplicate_summary_samples() == 0


def test_a_broker_restart_is_survived_by_node_and_hub(
    private_broker: Callable[..., Mosquitto], tenant: str
) -> None:
    broker = private_broker()
    h = start_hub(broker.host, broker.port, tenant)

    async def go() -> None:
        t = MqttTransport(broker.host, broker.port, tenant, "gw1", timeout_s=1.0)
        rx = aiter(t.receive())
        await send_until_accepted(t, batch("gw1", range(1, 3)), rx)
        await asyncio.to_thread(broker.stop)
        with pytest.raises(LinkDown):
            await t.send(batch("gw1", range(3, 5)))
        await asyncio.to_thread(broker.start)
        _, ack = await send_until_accepted(t, batch("gw1", range(3, 5)), rx, wait_s=60)
        assert ack.upto_seq == 4
        await t.close()

    try:
        asyncio.run(go())
        got = ledger(h.store, "gw1")
        assert (got["entries"], got["samples"]) == (4, 400)
        assert h.store.duplicate_summary_samples() == 0
    finally:
        h.ingest.stop()
        h.store.close()


def test_a_node_runtime_over_mqtt_survives_a_cut_link(hub: Hub) -> None:
    """The real node (simulator, pipeline, outbox, uplink loop) through a cut proxy."""
    cfg = parse_node_config(
        {
            "node_id": "gw1",
            "summary_every_s": 1.0,
            "uplink": {"timeout_s": 2.0, "retry_min_s": 0.05, "retry_max_s": 0.5},
        }
    )
    sim = build_sim(
        {"generate": {"n_machines": 2, "gateway": "gw1", "seed": 4}}, [], seed=4, start_ns=0
    )
    core = build_core(cfg, sim.catalog, builtin_actions())
    proxy = NetProxy(hub.host, hub.port).start_in_thread()
    transport = MqttTransport(proxy.host, proxy.port, hub.tenant, "gw1", timeout_s=1.0)
    rt = NodeRuntime(core, MemoryOutbox(), transport, clock=lambda: sim.now_ns)

    async def main() -> bool:
        await rt.start()
        for tick in range(120):
            if tick == 40:
                proxy.cut()
                while rt.link_up:  # hold the cut until the uplink has felt it
                    await rt.feed(sim.step(100_000_000))
                    await asyncio.sleep(0.01)
            if tick == 80:
                proxy.restore()
            await rt.feed(sim.step(100_000_000))
            await asyncio.sleep(0)
        await rt.flush()
        ok = await rt.drain(60.0)
        await rt.stop()
        return ok

    try:
        assert asyncio.run(main())
    finally:
        proxy.stop_thread()
    totals = hub.store.totals()["overall"]
    assert totals["samples"] == core.counters.samples_accepted > 0
    assert hub.store.duplicate_summary_samples() == 0
    assert rt.send_failures >= 1 and transport.disconnects >= 1
    assert proxy.stats.cuts == 1 and proxy.stats.connections >= 2

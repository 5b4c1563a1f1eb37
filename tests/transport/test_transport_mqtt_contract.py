"""The transport contract against :class:`MqttTransport`: a real Mosquitto, the hub's
:class:`MqttIngest` consuming the shared subscription, and our :class:`NetProxy` between
the node and the broker so the test can cut the link."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from transport_contract import Link, TransportContract

from conftest import Broker
from edgeloop.hub.app import IngestService
from edgeloop.hub.mqtt_ingest import MqttIngest
from edgeloop.hub.store import HubStore
from edgeloop.sim.netproxy import NetProxy
from edgeloop.transport.mqtt import MqttTransport


class TestMqttTransport(TransportContract):
    __test__ = True

    @pytest.fixture
    def link(self, mqtt_broker: Broker) -> Iterator[Link]:
        tenant = f"t{uuid.uuid4().hex[:10]}"  # isolates this test on the shared broker
        store = HubStore("sqlite://")
        store.create_all()
        hub = MqttIngest(
            IngestService(store), mqtt_broker.host, mqtt_broker.port, group=tenant, tenant=tenant
        ).start()
        proxy = NetProxy(mqtt_broker.host, mqtt_broker.port).start_in_thread()

        def make() -> MqttTransport:
            return MqttTransport(
                proxy.host, proxy.port, tenant, "gw1", timeout_s=2.0, keepalive_s=2
            )

        yield Link("gw1", store, make, proxy.cut, proxy.restore)
        proxy.stop_thread()
        hub.stop()
        store.close()

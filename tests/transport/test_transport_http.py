"""The transport contract against :class:`HttpTransport`: uvicorn serving the hub's app,
reached through our :class:`NetProxy` so the test can cut the link."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from transport_contract import Link, TransportContract

from edgeloop.hub.app import create_app
from edgeloop.hub.server import BackgroundServer
from edgeloop.hub.store import HubStore
from edgeloop.sim.netproxy import NetProxy
from edgeloop.transport.http import HttpTransport


class TestHttpTransport(TransportContract):
    __test__ = True

    @pytest.fixture
    def link(self) -> Iterator[Link]:
        store = HubStore("sqlite://")
        store.create_all()
        with BackgroundServer(create_app(store)) as server:
            proxy = NetProxy(server.host, server.port).start_in_thread()

            def make() -> HttpTransport:
                return HttpTransport(f"http://{proxy.host}:{proxy.port}", timeout_s=2.0)

            yield Link("gw1", store, make, proxy.cut, proxy.restore)
            proxy.stop_thread()
        store.close()

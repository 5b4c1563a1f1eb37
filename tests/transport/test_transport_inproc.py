"""The transport contract against :class:`InProcTransport` (the hub's service as handler)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from transport_contract import Link, TransportContract

from edgeloop.hub.app import IngestService
from edgeloop.hub.store import HubStore
from edgeloop.transport.inproc import InProcTransport


class TestInProcTransport(TransportContract):
    __test__ = True

    @pytest.fixture
    def link(self) -> Iterator[Link]:
        store = HubStore("sqlite://")
        store.create_all()
        service = IngestService(store)
        up = [True]
        live: list[InProcTransport] = []

        def make() -> InProcTransport:
            t = InProcTransport(service.handle)
            t.connected = up[0]
            live.append(t)
            return t

        def cut() -> None:
            up[0] = False
            for t in live:
                t.connected = False

        def restore() -> None:
            up[0] = True
            for t in live:
                t.connected = True

        yield Link("gw1", store, make, cut, restore)
        store.close()

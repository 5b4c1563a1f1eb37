"""The outbox contract against :class:`MemoryOutbox`."""

from __future__ import annotations

import pytest
from outbox_contract import Factory, OutboxContract

from edgeloop.outbox.base import OutboxStore
from edgeloop.outbox.memory import MemoryOutbox


class TestMemoryOutbox(OutboxContract):
    __test__ = True

    @pytest.fixture
    def factory(self) -> Factory:
        def make(budget_bytes: int | None = None) -> OutboxStore:
            return MemoryOutbox(budget_bytes)

        return make

"""The outbox contract against :class:`SqliteOutbox`, with and without fsync per commit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from outbox_contract import Factory, OutboxContract

from edgeloop.outbox.base import OutboxStore
from edgeloop.outbox.sqlite import SqliteOutbox


class TestSqliteOutbox(OutboxContract):
    __test__ = True

    @pytest.fixture(params=["NORMAL", "FULL"])
    def factory(self, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Factory]:
        opened: list[SqliteOutbox] = []

        def make(budget_bytes: int | None = None) -> OutboxStore:
            box = SqliteOutbox(
                tmp_path / f"outbox{len(opened)}.db",
                budget_bytes=budget_bytes,
                synchronous=request.param,
            )
            opened.append(box)
            return box

        yield make
        for box in opened:
            box.close()

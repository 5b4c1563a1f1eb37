"""A PostgreSQL hub whose connection the server closed: the batch is stored anyway.

Pooled connections are pinged only after sitting idle (``engine.IDLE_PING_S``), not at
every checkout; a connection that dies while in use fails its transaction, and the
store retries the batch on a new connection. Real server, real terminated backends.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from edgeloop.hub import engine as hub_engine
from edgeloop.hub.store import HubStore, IngestItem

from .conftest import summaries_item, summary_batch

SEC = 1_000_000_000


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[HubStore]:
    s = HubStore.open(pg_url)
    yield s
    s.close()


def _item(seq: int) -> list[IngestItem]:
    base = seq * 10 * SEC
    return [summaries_item(seq, summary_batch(["a", "b"], [base, base], [10, 10]))]


def _kill_pooled_connections(store: HubStore, url: str) -> int:
    """Terminate the server backend of every connection the store's pool holds now."""
    with store.engine.connect() as c:
        pid = int(c.execute(text("SELECT pg_backend_pid()")).scalar_one())
    admin = create_engine(url, poolclass=NullPool)
    try:
        with admin.connect() as c:
            killed = c.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            assert killed.scalar_one() is True
    finally:
        admin.dispose()
    return pid


def test_connection_closed_while_in_steady_use_costs_one_retry(
    pg_store: HubStore, pg_url: str
) -> None:
    assert pg_store.ingest("gw1", 0, _item(1), {}, now_ns=1).upto_seq == 1
    _kill_pooled_connections(pg_store, pg_url)
    # Checked out again at once: not pinged; the batch's first statement fails, the
    # transaction is rolled back and the batch retried on a new connection.
    ack = pg_store.ingest("gw1", 0, _item(2), {}, now_ns=2)
    assert (ack.upto_seq, ack.accepted, ack.duplicates) == (2, 1, 0)
    assert pg_store.reconnects == 1
    assert {s.seq for s in pg_store.summaries()} == {1, 2}
    assert pg_store.totals()["nodes"]["gw1"]["entries"] == 2


def test_idle_connection_is_pinged_and_replaced_before_use(
    pg_store: HubStore, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_store.ingest("gw1", 0, _item(1), {}, now_ns=1)
    _kill_pooled_connections(pg_store, pg_url)
    monkeypatch.setattr(hub_engine, "IDLE_PING_S", 0.0)  # every pooled connection is "idle"
    ack = pg_store.ingest("gw1", 0, _item(2), {}, now_ns=2)
    assert (ack.upto_seq, ack.accepted) == (2, 1)
    assert pg_store.reconnects == 0  # the ping found it dead; no transaction failed
    assert {s.seq for s in pg_store.summaries()} == {1, 2}


def test_a_batch_of_a_known_node_is_four_statements_on_postgresql(pg_store: HubStore) -> None:
    # Round trips are what a loaded machine makes expensive: lock the node row, admit to
    # the ledger, insert the data rows, and update the node with its incarnation as a
    # CTE. No lookup before the transaction, no ping at checkout, no second connection.
    from sqlalchemy import event as sa_event

    pg_store.ingest("gw1", 0, _item(1), {}, now_ns=1)
    statements: list[str] = []

    @sa_event.listens_for(pg_store.engine, "before_cursor_execute")
    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement.split(None, 1)[0])

    ack = pg_store.ingest("gw1", 1, _item(2), {}, now_ns=2)
    assert (ack.upto_seq, ack.accepted) == (2, 1)
    assert statements == ["SELECT", "INSERT", "INSERT", "WITH"], statements

"""Events arriving as columns: rows written without a Python object per event (binary
COPY built with numpy on PostgreSQL), the entry's block read back for features and raw
context, validation naming the event, on SQLite and PostgreSQL."""

from __future__ import annotations

import doctest
import math
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select, text

import edgeloop.hub.columns
from edgeloop.hub import schema as t
from edgeloop.hub.app import IngestService
from edgeloop.hub.bulk import PG_COPY_MIN_ROWS, insert_columns
from edgeloop.hub.columns import ColumnRows, Text, binary_copy
from edgeloop.hub.store import HubStore
from edgeloop.outbox.base import Entry, Priority
from edgeloop.telemetry import codec
from edgeloop.telemetry.frame import Frame
from edgeloop.transport.base import Batch

from .conftest import SEC, event, events_item


def ingest(store: HubStore, node: str, after: int, *payloads: bytes) -> Any:
    entries = tuple(
        Entry(after + i + 1, Priority.EVENT, "events", p) for i, p in enumerate(payloads)
    )
    data = codec.encode_batch(Batch(node, after, entries, {}, sent_ns=after + 1))
    return IngestService(store, clock=lambda: 1).ingest(data)


def count(store: HubStore, table: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


RAW = Frame.from_arrays([0, 1, 0], [5, 6, 7], [1.0, 2.0, 3.0])


def many(n: int, **kw: Any) -> list[Any]:
    return [
        event(f"m{i % 7:02d}", t_start_ns=(i + 1) * SEC, reason=f"r{i}", **kw) for i in range(n)
    ]


@pytest.mark.parametrize("n", [3, PG_COPY_MIN_ROWS + 5])  # below and above the COPY threshold
def test_events_read_back_with_features_and_raw_from_the_block(store: HubStore, n: int) -> None:
    evs = many(n)
    evs[1] = event("m99", t_start_ns=2 * SEC, raw=RAW, raw_sensors=("m99.x", "m99.y"))
    evs[2] = event("m98", t_start_ns=3 * SEC, features={"nan": math.nan, "one": 1.0})
    ack = ingest(store, "gw1", 0, codec.encode_events(evs))
    assert (ack.accepted, ack.rejected) == (1, 0)
    got = store.events(limit=10_000)
    assert [(e.machine, e.reason, e.t_start_ns) for e in got] == [
        (e.machine, e.reason, e.t_start_ns) for e in evs
    ]
    assert got[0].features == {"rms": 2.5, "kurtosis": 4.0} and got[0].has_raw is False
    assert got[1].has_raw is True and got[1].raw_sensors == ["m99.x", "m99.y"]
    assert got[2].features == {"nan": None, "one": 1.0}  # as JSON columns store NaN
    blob, names = store.event_raw(got[1].id) or (b"", [])
    frame, sent_names = codec.decode_frame(blob)
    assert names == ["m99.x", "m99.y"] and list(sent_names) == names
    np.testing.assert_array_equal(frame.value, RAW.value)
    assert store.event_raw(got[0].id) is None
    assert count(store, t.event_blocks) == 1
    # the block is the payload as it arrived, once per entry
    with store.engine.connect() as conn:
        idx = conn.execute(select(t.events.c.idx).order_by(t.events.c.id)).scalars().all()
    assert idx == list(range(n))


def test_redelivered_batch_adds_no_rows_and_no_block(store: HubStore) -> None:
    payload = codec.encode_events(many(70))
    ingest(store, "gw1", 0, payload, payload)
    again = ingest(store, "gw1", 0, payload, payload)
    assert (again.accepted, again.duplicates) == (0, 2)
    assert (count(store, t.events), count(store, t.event_blocks)) == (140, 2)


def test_version_1_payloads_of_older_nodes_are_stored_the_same(store: HubStore) -> None:
    evs = [event(raw=RAW, raw_sensors=("a", "b")), event("m02", t_start_ns=20 * SEC)]
    ingest(store, "gw1", 0, codec.encode_events_v1(evs))
    got = store.events()
    assert [e.machine for e in got] == ["m01", "m02"]
    assert got[0].has_raw and got[0].features == {"rms": 2.5, "kurtosis": 4.0}


def test_rows_from_event_objects_and_from_columns_are_listed_together(store: HubStore) -> None:
    store.ingest("gw1", 0, [events_item(1, [event(t_start_ns=5 * SEC)])], {}, 1)
    ingest(store, "gw1", 1, codec.encode_events([event("m02", t_start_ns=6 * SEC)]))
    got = store.events(node="gw1", since_ns=5 * SEC)
    assert [(e.machine, e.features["rms"], e.raw_sensors) for e in got] == [
        ("m01", 2.5, []),
        ("m02", 2.5, []),
    ]
    assert [e.machine for e in store.events(machine="m02")] == ["m02"]


def test_values_the_tables_cannot_hold_reject_the_entry_naming_the_event(store: HubStore) -> None:
    too_long = codec.encode_events([event(), event("m" * 300)])
    unnamed = codec.encode_events([event(raw=RAW)])  # samples, no raw sensor names
    bad_name = codec.encode_events([event(raw=RAW, raw_sensors=("ok", "n\x00ul"))])
    nul_reason = codec.encode_events([event(reason="a\x00b")])
    ack = ingest(store, "gw1", 0, too_long, unnamed, bad_name, nul_reason)
    assert (ack.accepted, ack.rejected, ack.upto_seq) == (1, 3, 4)
    fields = {d.seq: (d.field, d.reason) for d in store.dead_letters()}
    assert fields == {
        1: ("events[1].machine", "malformed"),
        2: ("events[0].raw.sensor", "unknown_sensor"),
        3: ("events[0].raw_sensors[1]", "malformed"),
    }
    assert [e.reason for e in store.events()] == ["a\ufffdb"]


# -- columns and the binary COPY -----------------------------------------------------------


def test_binary_copy_rows_read_back_exactly(store: HubStore) -> None:
    n = 100
    rng = np.random.default_rng(3)
    score = rng.random(n)
    score[::7] = np.nan  # NULL
    score[3] = np.inf  # NULL too: the store keeps no non-finite number
    names = ("", "m01", "é-ü 漢", "x" * 256)
    columns = (
        Text(np.zeros(n, dtype=np.intp), ("gw1",)),
        np.arange(n, dtype=np.int64) - 2**62,
        np.full(n, 3, dtype=np.int64),
        np.arange(n, dtype=np.int32),
        Text(rng.integers(0, 4, n), names),
        Text(rng.integers(0, 4, n), names),
        Text(rng.integers(0, 4, n), names),
        Text(np.zeros(n, dtype=np.intp), ("alarm",)),
        Text(rng.integers(0, 4, n), names),
        Text(rng.integers(0, 4, n), names),
        np.arange(n, dtype=np.int64),
        np.arange(n, dtype=np.int64) + 1,
        np.arange(n, dtype=np.int64) + 2,
        score,
        np.full(n, 0.5),
    )
    rows = ColumnRows(
        ("node", "seq", "epoch", "idx", "origin", "machine", "sensor", "severity", "detector",
         "reason", "t_start_ns", "t_end_ns", "detected_ns", "score", "threshold"),
        columns,
    )  # fmt: skip
    with store.engine.begin() as conn:
        insert_columns(conn, t.events, rows)
    with store.engine.connect() as conn:
        keys = ", ".join(rows.keys)
        got = [tuple(r) for r in conn.execute(text(f"SELECT {keys} FROM events ORDER BY id"))]
    assert got == rows.tuples()
    assert sum(r[13] is None for r in got) == len(range(0, n, 7)) + 1


def test_binary_copy_layout() -> None:
    data = binary_copy((np.array([1], dtype=np.int32), Text(np.array([0]), ("ab",))))
    signature, trailer = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8, b"\xff\xff"
    row = b"\x00\x02" + b"\x00\x00\x00\x04\x00\x00\x00\x01" + b"\x00\x00\x00\x02ab"
    assert data == signature + row + trailer
    nulls = binary_copy((np.array([np.nan]),))
    assert nulls == signature + b"\x00\x01\xff\xff\xff\xff" + trailer
    with pytest.raises(ValueError, match="no binary COPY form for dtype uint16"):
        binary_copy((np.zeros(2, dtype=np.uint16),))


def test_column_rows_refuse_columns_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        ColumnRows(("a", "b"), (np.zeros(2), np.zeros(3)))
    a = ColumnRows(("s",), (Text(np.array([0, 1]), ("x", "y")),))
    b = ColumnRows(("s",), (Text(np.array([1]), ("z", "w")),))
    assert ColumnRows.concat([a, b]).tuples() == [("x",), ("y",), ("w",)]


def test_insert_columns_refuses_a_dtype_that_does_not_match_the_column(pg_url: str) -> None:
    # The check guards PostgreSQL's binary COPY (SQLite takes the rows as tuples).
    store = HubStore.open(pg_url)
    rows = ColumnRows(("seq",), (np.zeros(PG_COPY_MIN_ROWS, dtype=np.float64),))
    try:
        with store.engine.begin() as conn, pytest.raises(ValueError, match="a float8 column for"):
            insert_columns(conn, t.events, rows)
    finally:
        store.close()


def test_docstring_examples_run() -> None:
    result = doctest.testmod(edgeloop.hub.columns)
    assert result.attempted > 0 and result.failed == 0

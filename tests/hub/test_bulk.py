"""Batched inserts (``edgeloop.hub.bulk``) on SQLite and PostgreSQL: every path (COPY,
unnest, multi-row VALUES split at the parameter limit) stores exactly what it was given."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from edgeloop.hub import bulk
from edgeloop.hub import schema as t
from edgeloop.hub.ingest import LEDGER_KEYS
from edgeloop.hub.store import HubStore

SUMMARY_KEYS = (
    "node",
    "epoch",
    "seq",
    "sensor",
    "t0_ns",
    "t1_ns",
    "count",
    "mean",
    "std",
    "min",
    "max",
)


def _ledger(n: int, first: int = 1) -> list[tuple[object, ...]]:
    return [("gw1", 0, s, "summaries", 1, 10, 100, 7, False) for s in range(first, first + n)]


def _setup(store: HubStore, ledger_rows: int) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            t.nodes.insert().values(
                id="gw1", first_seen_ns=0, last_seen_ns=0, watermark=0, status={}, status_ns=0,
                batches=0, duplicates=0, epoch=0, unknown_upto_seq=0,
            )
        )  # fmt: skip
        bulk.insert_rows(conn, t.received, LEDGER_KEYS, _ledger(ledger_rows))


def _summaries(n: int) -> list[tuple[object, ...]]:
    tricky = [0.1, -0.0, 1e-300, 2.5e300, None, math.pi]
    return [
        ("gw1", 0, 1, f"s{i % 7}", 2**62 + i, 2**62 + i + 1, i, tricky[i % 6], None, -1.5, 1 / 3)
        for i in range(n)
    ]


def _statements(store: HubStore) -> list[str]:
    seen: list[str] = []

    @sa_event.listens_for(store.engine, "before_cursor_execute")
    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement.split("(")[0].strip())

    return seen


@pytest.mark.parametrize("n", [1, 63, 64, 5000])
def test_rows_read_back_exactly(store: HubStore, n: int) -> None:
    # 64+ rows go by COPY on PostgreSQL, fewer by unnest; SQLite uses multi-row VALUES.
    _setup(store, 1)
    rows = _summaries(n)
    with store.engine.begin() as conn:
        assert bulk.insert_rows(conn, t.summaries, SUMMARY_KEYS, rows) == []
    c = t.summaries.c
    with store.engine.connect() as conn:
        got = conn.execute(select(*(c[k] for k in SUMMARY_KEYS)).order_by(c.id)).all()
    assert [tuple(r) for r in got] == rows


def test_sqlite_splits_only_at_the_parameter_limit(store: HubStore) -> None:
    _setup(store, 1)
    per = bulk.SQLITE_MAX_PARAMS // len(SUMMARY_KEYS)
    seen = _statements(store)
    with store.engine.begin() as conn:
        bulk.insert_rows(conn, t.summaries, SUMMARY_KEYS, _summaries(2 * per + 1))
    inserts = [s for s in seen if s.startswith("INSERT INTO summaries")]
    # PostgreSQL: one COPY, which the driver runs outside SQLAlchemy's statement events.
    assert len(inserts) == (3 if store.backend == "sqlite" else 0)
    assert store.totals()["overall"]["samples"] == sum(range(2 * per + 1))


@pytest.mark.parametrize("copies", [1, 40])
def test_json_bytes_and_nulls(store: HubStore, copies: int) -> None:
    # 2 rows by unnest on PostgreSQL, 80 by COPY (JSON columns as text).
    _setup(store, 2)
    keys = ("node", "epoch", "seq", "origin", "machine", "sensor", "severity", "t_start_ns",
            "t_end_ns", "detected_ns", "score", "threshold", "detector", "reason", "features",
            "raw", "raw_sensors")  # fmt: skip
    features = {"rms": 2.5, "nested": {"a": [1, None, "x"]}, "é": "ü"}
    rows = [
        ("gw1", 0, 1, "gw1", "m1", "s", "alarm", 1, 2, 3, None, 0.7, "d", "", features,
         b"\x00\xff" * 10, ["a", "b"]),
        ("gw1", 0, 2, "gw1", "m1", "s", "anomaly", 1, 2, 3, 0.9, None, "d", "r", {}, None, []),
    ]  # fmt: skip
    with store.engine.begin() as conn:
        bulk.insert_rows(conn, t.events, keys, rows * copies)
    events = store.events(limit=1000)
    assert [e.features for e in events] == [features, {}] * copies
    assert [e.raw_sensors for e in events] == [["a", "b"], []] * copies
    assert [e.has_raw for e in events] == [True, False] * copies
    assert store.event_raw(events[-2].id) == (b"\x00\xff" * 10, ["a", "b"])
    assert (events[0].score, events[1].threshold, events[1].score) == (None, None, 0.9)


def test_conflicts_skipped_and_only_inserted_rows_returned(store: HubStore) -> None:
    _setup(store, 3)
    with store.engine.begin() as conn:
        got = bulk.insert_rows(
            conn, t.received, LEDGER_KEYS, _ledger(5), skip_conflicts=True, returning="seq"
        )
    assert sorted(got) == [4, 5]
    with store.engine.begin() as conn, pytest.raises(IntegrityError):
        bulk.insert_rows(conn, t.received, LEDGER_KEYS, _ledger(1))


def test_bad_keys_are_named(store: HubStore) -> None:
    with store.engine.begin() as conn, pytest.raises(ValueError, match=r"summaries.*'nope'"):
        bulk.insert_rows(conn, t.summaries, ("node", "nope"), [("gw1", 1)])
    with store.engine.begin() as conn:
        assert bulk.insert_rows(conn, t.summaries, SUMMARY_KEYS, []) == []

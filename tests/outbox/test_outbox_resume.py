"""The producer's resume point: recorded with the entries, kept across restarts."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeloop.errors import OutboxError
from edgeloop.outbox.base import NewEntry, OutboxStore, Priority
from edgeloop.outbox.memory import MemoryOutbox
from edgeloop.outbox.sqlite import SCHEMA_VERSION, SqliteOutbox


def entry(n: int = 10) -> NewEntry:
    return NewEntry(Priority.SUMMARY, "summaries", b"x" * n, samples=n)


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., OutboxStore]:
    def build(budget: int | None = None) -> OutboxStore:
        if request.param == "memory":
            return MemoryOutbox(budget)
        return SqliteOutbox(tmp_path / "box.db", budget)

    return build


def test_resume_point_is_recorded_and_never_moves_back(make: Callable[..., OutboxStore]) -> None:
    box = make()
    assert box.stats().resume_ns is None
    box.append([entry()])
    assert box.stats().resume_ns is None  # no point given: none recorded
    box.append([entry()], resume_ns=2_000)
    assert box.stats().resume_ns == 2_000
    box.append([entry()], resume_ns=1_000)  # lower: ignored
    box.append([entry()])  # none: kept
    assert box.stats().resume_ns == 2_000
    box.append([], resume_ns=3_000)  # a point without entries is recorded too
    assert box.stats().resume_ns == 3_000
    assert box.stats().next_seq == 5
    box.close()


def test_resume_point_advances_when_the_budget_evicts_the_entries(
    make: Callable[..., OutboxStore],
) -> None:
    box = make(budget=15)
    box.append([entry(10)], resume_ns=1)
    box.append([entry(10)], resume_ns=2)  # evicts the first: counted, and covered
    st = box.stats()
    assert (st.resume_ns, st.evicted.entries[Priority.SUMMARY]) == (2, 1)
    box.close()


def test_a_bad_resume_point_is_refused_and_nothing_is_stored(
    make: Callable[..., OutboxStore],
) -> None:
    box = make()
    with pytest.raises(OutboxError, match="resume_ns: must be an int"):
        box.append([entry()], resume_ns="12")  # type: ignore[arg-type]
    assert (box.stats().next_seq, box.stats().resume_ns) == (1, None)
    box.close()


def test_sqlite_keeps_the_resume_point_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "box.db"
    box = SqliteOutbox(path)
    box.append([entry(), entry()], resume_ns=7_000_000_000)
    box.ack(1)
    box.close()
    box = SqliteOutbox(path)
    st = box.stats()
    assert (st.resume_ns, st.next_seq, st.acked_upto, st.depth) == (7_000_000_000, 3, 1, 1)
    box.close()


def test_version_2_file_is_upgraded_without_a_resume_point(tmp_path: Path) -> None:
    path = tmp_path / "box.db"
    box = SqliteOutbox(path)
    box.append([entry(), entry()])
    epoch = box.stats().epoch
    box.close()
    conn = sqlite3.connect(path)  # a file written before resume points
    conn.execute("ALTER TABLE meta DROP COLUMN resume_ns")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    box = SqliteOutbox(path)
    st = box.stats()
    assert (st.resume_ns, st.next_seq, st.depth, st.epoch) == (None, 3, 2, epoch)
    box.append([entry()], resume_ns=5)
    box.close()
    box = SqliteOutbox(path)
    assert box.stats().resume_ns == 5
    box.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    finally:
        conn.close()


def test_every_eviction_is_in_the_audit_trail(tmp_path: Path) -> None:
    from edgeloop.outbox.sqlite import read_evictions

    path = tmp_path / "box.db"
    box = SqliteOutbox(path, budget_bytes=25)
    box.append([entry(10), entry(10)])  # 1, 2 held
    box.append([NewEntry(Priority.EVENT, "events", b"e" * 10)])  # 3: evicts 1 (held)
    box.append([entry(30)])  # 4: over the budget on its own: evicted on arrival
    st = box.stats()
    held = [e.seq for e in box.claim(1 << 20)]
    box.close()
    log = read_evictions(path)
    assert 1 in log and 4 in log  # evicted from storage, and on arrival
    assert sorted([*held, *log]) == [1, 2, 3, 4]  # each entry either held or logged
    assert all(c == Priority.SUMMARY for c, _ in log.values())  # the event survived
    assert st.evicted.total_entries == len(log)
    assert sum(n for _, n in log.values()) == st.evicted.samples[Priority.SUMMARY]


def test_reading_the_audit_trail_of_a_missing_file_names_it(tmp_path: Path) -> None:
    from edgeloop.outbox.sqlite import read_evictions

    with pytest.raises(OutboxError, match=r"nope\.db: cannot open outbox: no such file"):
        read_evictions(tmp_path / "nope.db")


def test_the_audit_trail_keeps_the_newest_evictions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeloop.outbox import sqlite as mod

    monkeypatch.setattr(mod, "EVICTION_LOG_ROWS", 10)
    path = tmp_path / "box.db"
    box = SqliteOutbox(path, budget_bytes=10)
    for _ in range(30):
        box.append([entry(10)])  # each evicts the one before
    box.close()
    log = mod.read_evictions(path)
    assert 10 <= len(log) <= 11  # trimmed to the newest tenth-steps, never below
    assert max(log) == 29 and min(log) >= 19
    box = SqliteOutbox(path, budget_bytes=10)  # reopened: it counts what it holds
    for _ in range(5):
        box.append([entry(10)])
    box.close()
    log = mod.read_evictions(path)
    assert max(log) == 34 and len(log) <= 11

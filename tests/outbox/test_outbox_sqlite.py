"""What only the durable store promises: restart, replay, the file layout, clear errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from outbox_contract import ALARM, EVENT, RAW, SUMMARY, entry, held, seqs

from edgeloop.errors import ConfigError, OutboxError
from edgeloop.outbox.sqlite import SCHEMA_VERSION, SqliteOutbox


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


def reopen(box: SqliteOutbox, budget_bytes: int | None = None) -> SqliteOutbox:
    box.close()
    return SqliteOutbox(box.path, budget_bytes=budget_bytes)


# -- restart ---------------------------------------------------------------------------
@pytest.mark.parametrize("budget", [None, 10_000])
def test_restart_resumes_numbering_acks_bytes_and_counters(path: Path, budget: int | None) -> None:
    box = SqliteOutbox(path, budget_bytes=budget)
    box.append([entry(RAW, 10), entry(EVENT, 20), entry(ALARM, 30), entry(SUMMARY, 40)])
    box.ack(1)
    before = box.stats()
    box = reopen(box, budget)
    after = box.stats()
    assert after == before
    assert (after.depth, after.bytes, after.next_seq, after.acked_upto) == (3, 90, 5, 1)
    assert box.append([entry(RAW, 5)]) == range(5, 6)
    box.close()


def test_restart_keeps_eviction_counters(path: Path) -> None:
    box = SqliteOutbox(path, budget_bytes=50)
    box.append([entry(RAW, 30, 11), entry(ALARM, 30, 1), entry(ALARM, 60, 2)])
    ev = box.stats().evicted.as_dict()
    assert ev["raw"] == {"entries": 1, "bytes": 30, "samples": 11}
    assert ev["alarm"] == {"entries": 1, "bytes": 60, "samples": 2}
    box = reopen(box, 50)
    assert box.stats().evicted.as_dict() == ev
    assert held(box) == [2]
    # The ledger was rebuilt too: the next eviction is still by class, then age.
    box.append([entry(EVENT, 30)])
    assert held(box) == [2]
    assert box.stats().evicted.entries[EVENT] == 1
    box.close()


def test_numbering_resumes_after_highest_even_if_all_acked(path: Path) -> None:
    box = SqliteOutbox(path)
    box.append([entry(RAW, 1)] * 7)
    box.ack(7)
    box = reopen(box)
    st = box.stats()
    assert (st.depth, st.next_seq, st.acked_upto) == (0, 8, 7)
    assert box.append([entry(RAW, 1)]) == range(8, 9)
    box.close()


def test_replay_after_restart_is_in_order_and_intact(path: Path) -> None:
    box = SqliteOutbox(path)
    new = [entry(p, 5 + i, i, str(i)) for i, p in enumerate([ALARM, RAW, EVENT, SUMMARY, RAW])]
    box.append(new)
    sent = box.claim(max_bytes=1 << 20)  # sent, never acknowledged: the node crashed
    box = reopen(box)
    again = box.claim(max_bytes=1 << 20)
    assert again == sent
    assert [e.payload for e in again] == [n.payload for n in new]
    box.ack(3)
    box = reopen(box)
    assert seqs(box.claim(max_bytes=1 << 20)) == [4, 5]
    box.close()


def test_smaller_budget_on_reopen_evicts_and_counts(path: Path) -> None:
    box = SqliteOutbox(path)
    box.append([entry(RAW, 40, 4), entry(ALARM, 40), entry(RAW, 40, 4)])
    box = reopen(box, budget_bytes=50)
    st = box.stats()
    assert (st.depth, st.bytes) == (1, 40)
    assert (st.evicted.entries[RAW], st.evicted.samples[RAW]) == (2, 8)
    box = reopen(box)  # the eviction was written, counters included
    assert held(box) == [2]
    assert box.stats().evicted.entries[RAW] == 2
    box.close()


def test_reopened_file_keeps_its_epoch_and_a_new_file_gets_a_new_one(
    path: Path, tmp_path: Path
) -> None:
    box = SqliteOutbox(path)
    epoch = box.stats().epoch
    box.append([entry(RAW, 3)])
    box = reopen(box)
    assert box.stats().epoch == epoch
    box = reopen(box, budget_bytes=1)
    assert box.stats().epoch == epoch
    box.close()
    path.unlink()  # a wiped disk: the same path, a new store
    fresh = SqliteOutbox(path)
    assert fresh.stats().epoch not in (0, epoch)
    assert fresh.stats().next_seq == 1
    fresh.close()


def test_version_1_file_is_upgraded_with_an_epoch_once(path: Path) -> None:
    box = SqliteOutbox(path)
    box.append([entry(RAW, 3), entry(EVENT, 4)])
    box.ack(1)
    box.close()
    conn = sqlite3.connect(path)  # make it look like a file written before epochs
    conn.execute("ALTER TABLE meta DROP COLUMN epoch")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    box = SqliteOutbox(path)
    epoch = box.stats().epoch
    assert epoch > 0
    assert (box.stats().next_seq, box.stats().acked_upto, held(box)) == (3, 1, [2])
    box = reopen(box)
    assert box.stats().epoch == epoch
    box.close()
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    finally:
        other.close()


# -- the file --------------------------------------------------------------------------
@pytest.mark.parametrize(("sync", "level"), [("NORMAL", 1), ("full", 2), ("EXTRA", 3)])
def test_file_is_wal_with_the_chosen_synchronous(path: Path, sync: str, level: int) -> None:
    box = SqliteOutbox(path, synchronous=sync)
    box.append([entry(RAW, 3)])
    conn = box._conn
    assert conn is not None
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == level
    box.close()
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        row = other.execute("SELECT next_seq, acked_upto FROM meta").fetchone()
        assert row == (2, 0)
        assert other.execute("SELECT seq, priority, kind FROM entries").fetchall() == [
            (1, 0, "raw")
        ]
    finally:
        other.close()


def test_invalid_synchronous_is_a_config_error(path: Path) -> None:
    with pytest.raises(ConfigError, match="synchronous"):
        SqliteOutbox(path, synchronous="OFF")
    assert not path.exists()


@pytest.mark.parametrize("budget", [0, -5, 1.5, True])
def test_invalid_budget_is_a_config_error(path: Path, budget: object) -> None:
    with pytest.raises(ConfigError, match="budget_bytes"):
        SqliteOutbox(path, budget_bytes=budget)  # type: ignore[arg-type]


# -- clear errors ----------------------------------------------------------------------
def test_missing_directory_is_named(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "outbox.db"
    with pytest.raises(OutboxError, match=r"outbox\.db.*nope does not exist"):
        SqliteOutbox(target)


def test_parent_that_is_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutboxError, match="is not a directory"):
        SqliteOutbox(tmp_path / "file" / "outbox.db")


def test_path_that_is_a_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(OutboxError, match="it is a directory"):
        SqliteOutbox(tmp_path)


def test_corrupt_file_is_named(path: Path) -> None:
    path.write_bytes(b"this is not a database, just garbage " * 200)
    with pytest.raises(OutboxError, match=rf"{path.name}.*not a database"):
        SqliteOutbox(path)


def test_foreign_database_is_refused(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxError, match="not an edgeloop outbox"):
        SqliteOutbox(path)


def test_tampered_sequence_bounds_are_refused(path: Path) -> None:
    box = SqliteOutbox(path)
    box.append([entry(RAW, 1)] * 3)
    box.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET next_seq = 2")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxError, match="corrupt outbox"):
        SqliteOutbox(path)


@pytest.mark.parametrize("budget", [None, 1 << 30])
def test_full_disk_is_an_outbox_error_and_nothing_drifts(path: Path, budget: int | None) -> None:
    box = SqliteOutbox(path, budget_bytes=budget)
    box.append([entry(RAW, 100)] * 10)
    box.ack(2)
    before = box.stats()
    conn = box._conn
    assert conn is not None
    # Cap the file at its current size: the next big append cannot fit.
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(OutboxError, match=r"outbox\.db: append failed: database or disk is full"):
        box.append([entry(EVENT, 4000)] * 50)
    assert box.stats() == before
    assert held(box) == list(range(3, 11))
    # Space again: numbering continues where the failed append would have started.
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert box.append([entry(EVENT, 10)]) == range(11, 12)
    expected = box.stats()
    box = reopen(box, budget)
    assert box.stats() == expected
    assert held(box) == list(range(3, 12))
    box.close()


def test_failed_ack_and_append_change_nothing(path: Path) -> None:
    box = SqliteOutbox(path)
    box.append([entry(RAW, 30)] * 5)
    before = box.stats()
    conn = box._conn
    assert conn is not None
    # The store owns its file exclusively, so make its own writes fail instead.
    conn.execute("PRAGMA query_only = 1")
    try:
        with pytest.raises(OutboxError, match=r"ack failed: attempt to write a readonly"):
            box.ack(5)
        with pytest.raises(OutboxError, match=r"append failed: attempt to write a readonly"):
            box.append([entry(RAW, 30)])
        assert box.stats() == before
    finally:
        conn.execute("PRAGMA query_only = 0")
    box.ack(3)
    assert box.append([entry(RAW, 30)]) == range(6, 7)
    box = reopen(box)
    assert held(box) == [4, 5, 6]
    box.close()


def test_a_second_process_cannot_open_the_same_outbox(tmp_path: Path) -> None:
    """Two writers would hand out the same sequence numbers; the second open fails."""
    import subprocess
    import sys

    db = tmp_path / "owned.db"
    first = SqliteOutbox(db)
    code = (
        "import sys\n"
        "from edgeloop.errors import OutboxError\n"
        "from edgeloop.outbox.sqlite import SqliteOutbox\n"
        "try:\n    SqliteOutbox(sys.argv[1])\nexcept OutboxError as e:\n"
        "    print(e); sys.exit(7)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(db)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 7, res.stderr
    assert "another process holds it" in res.stdout
    first.close()
    SqliteOutbox(db).close()  # free again once the owner closed it

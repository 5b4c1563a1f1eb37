"""Benchmark: the durable outbox's append against a raw SQLite batch insert.

Both sides write the same rows (same payload sizes) to a fresh file with
``journal_mode=WAL`` and the same ``synchronous`` setting, ``batch`` rows per
transaction:

* raw: ``executemany("INSERT ...")`` of ready-made tuples into an equivalent table
  (SQLite assigns the rowid), then ``COMMIT``;
* outbox: :meth:`SqliteOutbox.append` of :class:`NewEntry` objects — validation,
  sequence numbers, the eviction ledger and the ``meta`` update included.

The ratio is what durability-with-accounting costs over the bare insert. The drain
figure (claim 1 MiB batches, ack each) is reported beside it.

Run: ``python -m edgeloop.bench.outbox_bench`` (or ``edgeloop bench``).
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeloop.outbox.base import NewEntry, Priority
from edgeloop.outbox.sqlite import SqliteOutbox

_RAW_TABLE = """
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY,
    priority INTEGER NOT NULL,
    kind TEXT NOT NULL,
    samples INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    payload BLOB NOT NULL
)
"""
_RAW_INSERT = (
    "INSERT INTO entries (priority, kind, samples, created_ns, payload) VALUES (?, ?, ?, ?, ?)"
)


def _entries(rows: int, payload_bytes: int) -> list[NewEntry]:
    blob = np.random.default_rng(0).bytes(rows * payload_bytes)
    return [
        NewEntry(
            Priority.SUMMARY,
            "summary",
            blob[i * payload_bytes : (i + 1) * payload_bytes],
            samples=100,
            created_ns=1_700_000_000_000_000_000 + i,
        )
        for i in range(rows)
    ]


def _raw_connection(path: Path, sync: str) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute(_RAW_TABLE)
    return conn


def _one_rep(
    d: Path,
    entries: list[NewEntry],
    raw_rows: list[tuple[int, str, int, int, bytes]],
    batch: int,
    sync: str,
) -> dict[str, float]:
    """Append the same batches to three files — raw SQLite, the outbox, and the outbox
    with a budget of half the rows (so it evicts on every append of the second half) —
    rotating who goes first batch by batch, so a noisy neighbour slows every side
    alike. Then drain the unbounded outbox. Returns rows/s per side."""
    budget = max(1, sum(len(e.payload) for e in entries) // 2)
    raw = _raw_connection(d / "raw.db", sync)
    box = SqliteOutbox(d / "outbox.db", synchronous=sync)
    capped = SqliteOutbox(d / "capped.db", budget_bytes=budget, synchronous=sync)
    spent = [0.0, 0.0, 0.0]
    clock = time.perf_counter
    try:
        for k, i in enumerate(range(0, len(entries), batch)):
            for side in ((0, 1, 2), (1, 2, 0), (2, 0, 1))[k % 3]:
                t0 = clock()
                if side == 0:
                    raw.execute("BEGIN IMMEDIATE")
                    raw.executemany(_RAW_INSERT, raw_rows[i : i + batch])
                    raw.execute("COMMIT")
                elif side == 1:
                    box.append(entries[i : i + batch])
                else:
                    capped.append(entries[i : i + batch])
                spent[side] += clock() - t0
        if capped.stats().bytes > budget:
            raise RuntimeError("outbox bench: the capped outbox exceeds its budget")
        t0 = clock()
        drained = 0
        while claimed := box.claim(1 << 20):
            box.ack(claimed[-1].seq)
            drained += len(claimed)
        drain_s = clock() - t0
    finally:
        raw.close()
        box.close()
        capped.close()
    if drained != len(entries):
        raise RuntimeError(f"outbox bench: drained {drained} of {len(entries)} entries")
    n = len(entries)
    return {
        "raw": n / spent[0],
        "box": n / spent[1],
        "capped": n / spent[2],
        "drain": drained / drain_s,
    }


def bench_outbox(
    rows: int = 200_000,
    batch: int = 1000,
    payload_bytes: int = 64,
    reps: int = 3,
    tmpdir: Path | None = None,
    synchronous: str = "NORMAL",
) -> dict[str, float]:
    """Measure outbox append and drain against a raw SQLite insert of the same rows.

    Args:
        rows: rows written per repetition, on each side.
        batch: rows per transaction (one ``append`` / one ``executemany`` + commit).
        payload_bytes: payload size of every row.
        reps: repetitions; each uses fresh files and interleaves the sides batch by
            batch.
        tmpdir: where the files go (default: the system temp dir).
        synchronous: SQLite ``synchronous`` for every side.

    Returns:
        Medians over ``reps``: ``outbox_rows_per_s`` (unbounded outbox),
        ``sqlite_raw_rows_per_s``, ``ratio_vs_sqlite`` (their ratio),
        ``outbox_ratio_min`` (the worst repetition's paired ratio),
        ``outbox_budget_rows_per_s`` and ``budget_ratio_vs_sqlite`` (an outbox whose
        budget holds half the rows, evicting on every later append), and
        ``outbox_drain_rows_per_s`` (claim 1 MiB, ack, repeat).
    """
    if rows <= 0 or batch <= 0 or payload_bytes < 0 or reps <= 0:
        raise ValueError("rows, batch and reps must be > 0 and payload_bytes >= 0")
    entries = _entries(rows, payload_bytes)
    raw_rows = [(int(e.priority), e.kind, e.samples, e.created_ns, e.payload) for e in entries]
    runs: list[dict[str, float]] = []
    for _ in range(reps):
        with tempfile.TemporaryDirectory(dir=tmpdir, prefix="edgeloop-outbox-bench-") as d:
            runs.append(_one_rep(Path(d), entries, raw_rows, batch, synchronous))

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    return {
        "outbox_rows_per_s": med("box"),
        "sqlite_raw_rows_per_s": med("raw"),
        "ratio_vs_sqlite": med("box") / med("raw"),
        "outbox_ratio_min": min(r["box"] / r["raw"] for r in runs),
        "outbox_budget_rows_per_s": med("capped"),
        "budget_ratio_vs_sqlite": med("capped") / med("raw"),
        "outbox_drain_rows_per_s": med("drain"),
    }


if __name__ == "__main__":
    print(json.dumps(bench_outbox(reps=5), indent=2))

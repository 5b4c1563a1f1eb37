"""``kill -9`` in the middle of appends: whatever ``append`` returned is on disk, intact.

A child process appends batches in a loop and prints the last sequence of each batch
once ``append`` has returned. The parent reads a few lines, sends SIGKILL (the child is
usually inside the next append), reopens the file and checks every reported entry —
and every entry committed after it — byte for byte, then lets a new child continue.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from edgeloop.outbox.base import Priority
from edgeloop.outbox.sqlite import SqliteOutbox

BATCH = 50

CHILD = """
import hashlib, sys
from edgeloop.outbox.base import NewEntry, Priority
from edgeloop.outbox.sqlite import SqliteOutbox

box = SqliteOutbox(sys.argv[1])
batch = int(sys.argv[2])
while True:
    first = box.stats().next_seq
    got = box.append([
        NewEntry(Priority.SUMMARY, "summary", hashlib.sha256(str(s).encode()).digest() * 8,
                 samples=s % 7, created_ns=s)
        for s in range(first, first + batch)
    ])
    if got != range(first, first + batch):
        print(f"bad range {got}", flush=True)
        sys.exit(1)
    print(got[-1], flush=True)
"""


def payload(seq: int) -> bytes:
    return hashlib.sha256(str(seq).encode()).digest() * 8


def run_and_kill(path: Path, lines: int) -> list[int]:
    """Start a child, read ``lines`` reported seqs, SIGKILL it; return what it reported."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(BATCH)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reported: list[int] = []
    try:
        assert proc.stdout is not None
        while len(reported) < lines:
            line = proc.stdout.readline()
            if not line:
                err = proc.stderr.read() if proc.stderr else ""
                raise AssertionError(f"child ended early: {err}")
            reported.append(int(line))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL
    return reported


def test_kill_9_loses_nothing_append_returned(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    highest = 0
    for lines in (5, 17, 40):
        reported = run_and_kill(path, lines)
        # Reported seqs are whole batches, continuing the previous run's numbering.
        assert reported[0] == highest + BATCH
        assert reported == sorted(reported)

        box = SqliteOutbox(path)
        try:
            entries = box.claim(max_bytes=1 << 40)
            stats = box.stats()
            got = [e.seq for e in entries]
            # Everything reported is there, and nothing has a hole: rows committed
            # after the last report (killed before printing) are complete batches too.
            assert got == list(range(1, len(got) + 1))
            assert len(got) >= reported[-1]
            assert len(got) % BATCH == 0
            for e in entries:
                assert e.payload == payload(e.seq)
                assert (e.priority, e.kind, e.samples, e.created_ns) == (
                    Priority.SUMMARY,
                    "summary",
                    e.seq % 7,
                    e.seq,
                )
            assert stats.depth == len(got)
            assert stats.bytes == 256 * len(got)
            assert stats.next_seq == len(got) + 1
            highest = len(got)
        finally:
            box.close()
    assert highest >= 5 * BATCH + 17 * BATCH + 40 * BATCH

"""The durable outbox: one SQLite file in WAL mode.

Layout (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`):

* ``entries(seq INTEGER PRIMARY KEY, priority, kind, samples, created_ns, payload BLOB)``
  — the entries held, i.e. appended, not acknowledged, not evicted. It is a STRICT
  table (SQLite >= 3.37): SQLite itself refuses a malformed row, in C and at no
  measurable cost (CHECK expressions cost ~10 % of the insert rate), and only then is
  the entry explained in Python. STRICT still converts losslessly (an int ``kind``
  becomes text), and any bytes-like payload is stored as a BLOB;
* ``meta`` — one row: ``next_seq``, ``acked_upto``, the eviction counters by class
  (``evicted_<class>_entries|bytes|samples``), the store's ``epoch``, drawn once when
  the file is created (a reopened file keeps it; a new file gets a new one), and the
  producer's ``resume_ns`` (NULL until an ``append`` records one);
* ``evicted(seq INTEGER PRIMARY KEY, priority, samples, bytes)`` — the audit trail of
  evictions: one row per evicted entry, written in the transaction that evicts it, the
  newest :data:`EVICTION_LOG_ROWS` kept (:func:`read_evictions`). It tells which
  sequence numbers were evicted, so an entry that was sent *before* it was evicted
  (its publish still in flight, later stored by the hub) can be told apart from one
  that never left.

Older files are upgraded on open: version 1 (no epoch yet) gets its epoch then,
version 2 the ``resume_ns`` column, version 3 the ``evicted`` table.

Every ``append`` (its inserts, its evictions, its counters and its resume point) and
every ``ack`` is ONE transaction, so after a crash the counters and the data always agree. Reopening resumes
numbering at ``next_seq``, keeps ``acked_upto``, the counters and the epoch, and recomputes the
bytes held from the table.

Durability is the ``synchronous`` setting:

* ``"NORMAL"`` (default): in WAL mode a commit is not fsync'ed. Once ``append`` returns,
  the entries survive a crash or ``kill -9`` of the process; a power loss or OS crash
  may roll back the last transactions (the file stays consistent).
* ``"FULL"`` / ``"EXTRA"``: every commit is fsync'ed; entries also survive power loss,
  at the cost of one fsync per append or ack.

One process owns the file. Calls may come from any thread, one at a time (a lock).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edgeloop.errors import ConfigError, OutboxError
from edgeloop.outbox.base import (
    Entry,
    EvictionStats,
    NewEntry,
    OutboxStats,
    Priority,
    new_epoch,
)
from edgeloop.outbox.policy import (
    PRIORITY_INT,
    PRIORITY_OF,
    EvictionLedger,
    EvictionPlan,
    Incoming,
    ack_target,
    add_evictions,
    check_max_bytes,
    claim_start,
    later_resume,
    snapshot,
    validate_entries,
)

SCHEMA_VERSION = 4
EVICTION_LOG_ROWS = 100_000
"""Evicted entries the audit trail keeps (the newest); older rows are dropped."""
SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")

_COUNTERS = tuple(
    f"evicted_{p.name.lower()}_{what}" for p in Priority for what in ("entries", "bytes", "samples")
)
_SCHEMA = f"""
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY,
    priority INTEGER NOT NULL,
    kind TEXT NOT NULL,
    samples INTEGER NOT NULL CHECK (samples >= 0),
    created_ns INTEGER NOT NULL,
    payload BLOB NOT NULL
) STRICT;
CREATE TABLE meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    next_seq INTEGER NOT NULL,
    acked_upto INTEGER NOT NULL,
    {", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in _COUNTERS)},
    epoch INTEGER NOT NULL DEFAULT 0,
    resume_ns INTEGER
);
CREATE TABLE evicted (
    seq INTEGER PRIMARY KEY,
    priority INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    bytes INTEGER NOT NULL
) STRICT;
INSERT INTO meta (id, next_seq, acked_upto, epoch) VALUES (0, 1, 0, :epoch);
PRAGMA user_version = {SCHEMA_VERSION};
"""
# Version 1 files predate the epoch: they get one (drawn now) on their first open.
_UPGRADE_1_TO_2 = (
    "ALTER TABLE meta ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0",
    "UPDATE meta SET epoch = :epoch WHERE id = 0",
    "PRAGMA user_version = 2",
)
# Version 2 files predate the resume point.
_UPGRADE_2_TO_3 = (
    "ALTER TABLE meta ADD COLUMN resume_ns INTEGER",
    "PRAGMA user_version = 3",
)
# Version 3 files predate the eviction audit trail.
_UPGRADE_3_TO_4 = (
    "CREATE TABLE IF NOT EXISTS evicted (seq INTEGER PRIMARY KEY, priority INTEGER NOT NULL,"
    " samples INTEGER NOT NULL, bytes INTEGER NOT NULL) STRICT",
    "PRAGMA user_version = 4",
)
_LOG_HELD = (
    "INSERT OR REPLACE INTO evicted SELECT seq, priority, samples, length(payload) "
    "FROM entries WHERE seq BETWEEN ? AND ?"
)
_LOG_ROW = "INSERT OR REPLACE INTO evicted VALUES (?, ?, ?, ?)"
_TRIM_LOG = (
    "DELETE FROM evicted WHERE seq <= (SELECT seq FROM evicted ORDER BY seq DESC LIMIT 1 OFFSET ?)"
)
_INSERT = "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)"
_SET_NEXT = "UPDATE meta SET next_seq = ?, resume_ns = ? WHERE id = 0"
_SET_NEXT_AND_COUNTERS = (
    "UPDATE meta SET next_seq = ?, resume_ns = ?, "
    f"{', '.join(f'{c} = ?' for c in _COUNTERS)} WHERE id = 0"
)
_DELETE_RANGE = "DELETE FROM entries WHERE seq BETWEEN ? AND ?"
_MEASURE_UPTO = "SELECT count(*), coalesce(sum(length(payload)), 0) FROM entries WHERE seq <= ?"
# Errors that mean a row was refused (a CHECK, or a value SQLite cannot bind).
_BAD_ROW = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError, OverflowError)

_Row = tuple[int, int, str, int, int, bytes]
_PRIORITY = itemgetter(1)
_SAMPLES = itemgetter(3)
_PAYLOAD = itemgetter(5)
_SELECT_FROM = (
    "SELECT seq, priority, kind, payload, samples, created_ns FROM entries "
    "WHERE seq > ? ORDER BY seq"
)


class SqliteOutbox:
    """:class:`~edgeloop.outbox.base.OutboxStore` in a SQLite file (WAL).

    Args:
        path: the database file; created with its schema if missing. Its directory
            must exist.
        budget_bytes: the most payload bytes held at once (``None``: unbounded). If a
            reopened file holds more (a smaller budget than before), the excess is
            evicted and counted on open.
        synchronous: ``"NORMAL"`` (survives process crashes) or ``"FULL"`` /
            ``"EXTRA"`` (also survives power loss); see the module docstring.

    Raises:
        ConfigError: ``budget_bytes`` or ``synchronous`` is invalid.
        OutboxError: the file cannot be opened or created (naming the path and the
            cause), is not an edgeloop outbox, or is corrupt.
    """

    def __init__(
        self,
        path: str | Path,
        budget_bytes: int | None = None,
        synchronous: str = "NORMAL",
    ) -> None:
        sync = str(synchronous).upper()
        if sync not in SYNCHRONOUS:
            raise ConfigError(f"synchronous: must be one of {SYNCHRONOUS}, got {synchronous!r}")
        self.path = Path(path)
        self.synchronous = sync
        self._ledger = EvictionLedger(budget_bytes)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = self._connect()
        try:
            self._load()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    @property
    def budget_bytes(self) -> int | None:
        return self._ledger.budget_bytes

    # -- open ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        path = self.path
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise OutboxError(f"{path}: a file path is required (use MemoryOutbox otherwise)")
        parent = path.parent
        if not parent.is_dir():
            cause = "is not a directory" if parent.exists() else "does not exist"
            raise OutboxError(f"{path}: cannot open outbox: directory {parent} {cause}")
        if path.is_dir():
            raise OutboxError(f"{path}: cannot open outbox: it is a directory")
        try:
            conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=1.0
            )
        except sqlite3.Error as exc:
            raise OutboxError(f"{path}: cannot open outbox: {exc}") from exc
        try:
            # One process owns an outbox: a second writer would hand out the same
            # sequence numbers, which the receiver would then skip as duplicates.
            # Exclusive locking holds the file lock from the first write on.
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"{path}: cannot switch to WAL (journal_mode is {mode})")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if not tables and version == 0:
                epoch = new_epoch()
                conn.execute("BEGIN IMMEDIATE")
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(stmt, {"epoch": epoch} if ":epoch" in stmt else {})
                conn.execute("COMMIT")
            elif version in (1, 2, 3) and {"entries", "meta"} <= tables:
                epoch = new_epoch()
                cols = {r[1] for r in conn.execute("PRAGMA table_info(meta)")}
                steps = (
                    *(_UPGRADE_1_TO_2 if version == 1 else ()),
                    *(() if version >= 3 else _UPGRADE_2_TO_3[int("resume_ns" in cols) :]),
                    *_UPGRADE_3_TO_4,
                )
                conn.execute("BEGIN IMMEDIATE")
                for stmt in steps:
                    conn.execute(stmt, {"epoch": epoch} if ":epoch" in stmt else {})
                conn.execute("COMMIT")
            elif version != SCHEMA_VERSION or not {"entries", "meta"} <= tables:
                raise OutboxError(
                    f"{path}: not an edgeloop outbox (user_version {version}, "
                    f"tables {sorted(tables)})"
                )
            conn.execute("BEGIN IMMEDIATE")  # take the exclusive lock now, not later
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            conn.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise OutboxError(
                    f"{path}: cannot open outbox: another process holds it "
                    "(one node process per outbox file)"
                ) from exc
            raise OutboxError(f"{path}: cannot open outbox: {_describe(exc)}") from exc
        except sqlite3.Error as exc:
            conn.close()
            raise OutboxError(f"{path}: cannot open outbox: {_describe(exc)}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _load(self) -> None:
        """Read the sequence bounds, counters and held entries back from the file."""
        conn = self._live()
        try:
            meta = conn.execute(
                f"SELECT next_seq, acked_upto, epoch, resume_ns, {', '.join(_COUNTERS)} "
                "FROM meta WHERE id = 0"
            ).fetchone()
            depth, nbytes, lo, hi = conn.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0), min(seq), max(seq) "
                "FROM entries"
            ).fetchone()
            held = (
                conn.execute(
                    "SELECT seq, priority, length(payload), samples FROM entries ORDER BY seq"
                ).fetchall()
                if self._ledger.tracks_entries
                else []
            )
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: cannot read outbox: {_describe(exc)}") from exc
        if meta is None:
            raise OutboxError(f"{self.path}: corrupt outbox: the meta row is missing")
        self._next_seq, self._acked_upto, self._epoch = int(meta[0]), int(meta[1]), int(meta[2])
        self._resume_ns: int | None = None if meta[3] is None else int(meta[3])
        if self._epoch <= 0:
            raise OutboxError(f"{self.path}: corrupt outbox: epoch {self._epoch} is not positive")
        if depth and (lo <= self._acked_upto or hi >= self._next_seq):
            raise OutboxError(
                f"{self.path}: corrupt outbox: entries {lo}..{hi} lie outside "
                f"acked_upto={self._acked_upto} < seq < next_seq={self._next_seq}"
            )
        try:
            self._log_rows = int(conn.execute("SELECT count(*) FROM evicted").fetchone()[0])
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: cannot read outbox: {_describe(exc)}") from exc
        self._evicted = EvictionStats()
        counters = iter(meta[4:])
        for p in Priority:
            n, b, smp = next(counters), next(counters), next(counters)
            self._evicted.add(p, int(b), int(smp), int(n))
        if self._ledger.tracks_entries:
            cols = np.array(held, dtype=np.int64).reshape(-1, 4).T
            self._ledger.load(cols[0], cols[1], cols[2], cols[3])
            plan = self._ledger.plan(None)
            if plan.any:  # the budget is smaller than when the file was written
                self._write_plan(plan, [], self._next_seq, "open")
        else:
            self._ledger.load_totals(int(depth), int(nbytes))

    # -- the contract -------------------------------------------------------------
    def append(self, entries: Sequence[NewEntry], resume_ns: int | None = None) -> range:
        """Store ``entries`` in one transaction; return their sequence numbers.

        Once this returns, the entries survive a crash of the process (see
        ``synchronous``). Entries the budget evicts on arrival still get their number
        and are counted. ``resume_ns``, the producer's resume point (see
        :mod:`edgeloop.outbox.base`), is written in the same transaction.

        Raises:
            OutboxError: an entry is malformed (naming its index and field; nothing is
                stored), the disk is full, or the file cannot be written (naming the
                path and cause). Nothing is stored and the numbering does not advance.
        """
        n = len(entries)
        with self._lock:
            self._live()
            first = self._next_seq
            resume = later_resume(self._resume_ns, resume_ns)
            if n == 0:
                if resume != self._resume_ns:
                    self._write_plan(self._ledger.plan(None), [], first, "append", (), resume)
                return range(first, first)
            # The hot path: one tuple per entry and a few C-level passes over them. Types
            # and ranges are enforced by the table's CHECK constraints; only a failure
            # walks the entries in Python to name the culprit.
            pint = PRIORITY_INT
            try:
                rows = [
                    (s, pint[e.priority], e.kind, e.samples, e.created_ns, e.payload)
                    for s, e in zip(range(first, first + n), entries, strict=True)
                ]
                inc = self._incoming(first, rows)
            except (KeyError, TypeError, AttributeError, OverflowError, ValueError):
                validate_entries(entries)
                raise
            plan = self._ledger.plan(inc)
            kept = plan.kept_index()
            dropped: list[_Row] = []
            if kept is not None:
                keep = set(kept)
                dropped = [r for i, r in enumerate(rows) if i not in keep]
                rows = [rows[i] for i in kept]
            self._write_plan(plan, rows, first + n, "append", entries, resume, dropped)
            return range(first, first + n)

    def _incoming(self, first: int, rows: list[_Row]) -> Incoming:
        n = len(rows)
        if not self._ledger.tracks_entries:
            return Incoming(first, n, sum(map(len, map(_PAYLOAD, rows))))
        return Incoming.from_columns(
            first,
            np.fromiter(map(_PRIORITY, rows), dtype=np.int64, count=n),
            np.fromiter(map(len, map(_PAYLOAD, rows)), dtype=np.int64, count=n),
            np.fromiter(map(_SAMPLES, rows), dtype=np.int64, count=n),
        )

    def claim(self, max_bytes: int, after: int | None = None) -> list[Entry]:
        """Un-acked entries with ``seq > after`` (default: ``acked_upto``), in seq order,
        up to ``max_bytes`` of payload; at least one if any is pending. Removes nothing.

        Raises:
            OutboxError: the file cannot be read.
        """
        check_max_bytes(max_bytes)
        with self._lock:
            conn = self._live()
            start = claim_start(after, self._acked_upto)
            out: list[Entry] = []
            total = 0
            try:
                cur = conn.execute(_SELECT_FROM, (start,))
                try:
                    for seq, prio, kind, payload, samples, created in cur:
                        size = len(payload)
                        if out and total + size > max_bytes:
                            break
                        out.append(Entry(seq, PRIORITY_OF[prio], kind, payload, samples, created))
                        total += size
                finally:
                    cur.close()  # ends the read transaction so checkpoints can proceed
            except sqlite3.Error as exc:
                raise self._error("claim", exc) from exc
            return out

    def ack(self, upto_seq: int) -> None:
        """Release every entry with ``seq <= upto_seq``, durably, in one transaction.

        Cumulative and idempotent; a lower ack is a no-op; an ack beyond the highest
        sequence assigned releases everything (never future entries).

        Raises:
            OutboxError: the file cannot be written; nothing is released.
        """
        with self._lock:
            conn = self._live()
            upto = ack_target(upto_seq, self._acked_upto, self._next_seq)
            if upto is None:
                return
            measured: tuple[int, int] | None = None
            try:
                conn.execute("BEGIN IMMEDIATE")
                if not self._ledger.tracks_entries:
                    n, nbytes = conn.execute(_MEASURE_UPTO, (upto,)).fetchone()
                    measured = (int(n), int(nbytes))
                conn.execute("DELETE FROM entries WHERE seq <= ?", (upto,))
                conn.execute("UPDATE meta SET acked_upto = ? WHERE id = 0", (upto,))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise self._error("ack", exc) from exc
            self._ledger.release_upto(upto, measured)
            self._acked_upto = upto

    def stats(self) -> OutboxStats:
        """Depth, bytes held, ``next_seq``, ``acked_upto``, eviction counters, epoch.

        Served from memory (kept equal to the file); still works after :meth:`close`.
        """
        with self._lock:
            return snapshot(
                self._ledger,
                self._next_seq,
                self._acked_upto,
                self._evicted,
                self._epoch,
                self._resume_ns,
            )

    def close(self) -> None:
        """Close the file (idempotent); a new :class:`SqliteOutbox` on it resumes."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- internals ----------------------------------------------------------------
    def _write_plan(
        self,
        plan: EvictionPlan,
        rows: list[_Row],
        next_seq: int,
        op: str,
        entries: Sequence[NewEntry] = (),
        resume_ns: int | None = None,
        dropped: Sequence[_Row] = (),
    ) -> None:
        """Write ``rows``, ``plan`` and the resume point in one transaction, then update
        memory to match (``resume_ns`` None keeps the one held)."""
        resume = self._resume_ns if resume_ns is None else resume_ns
        conn = self._live()
        evicted = add_evictions(self._evicted, plan.evicted) if plan.any else self._evicted
        try:
            conn.execute("BEGIN IMMEDIATE")
            if plan.held_seqs.size:
                runs = _runs(plan.held_seqs)
                conn.executemany(_LOG_HELD, runs)
                conn.executemany(_DELETE_RANGE, runs)
            if dropped:  # incoming entries the budget evicted on arrival
                conn.executemany(_LOG_ROW, [(r[0], r[1], r[3], len(r[5])) for r in dropped])
            logged = self._log_rows + plan.evicted.total_entries
            if logged > EVICTION_LOG_ROWS + EVICTION_LOG_ROWS // 10:
                # Trimmed in steps of a tenth, not on every eviction: the OFFSET scan
                # costs ~100,000 index steps.
                conn.execute(_TRIM_LOG, (EVICTION_LOG_ROWS,))
                logged = EVICTION_LOG_ROWS
            if rows:
                conn.executemany(_INSERT, rows)
            if plan.any:
                conn.execute(_SET_NEXT_AND_COUNTERS, (next_seq, resume, *_counter_values(evicted)))
            else:
                conn.execute(_SET_NEXT, (next_seq, resume))
            conn.execute("COMMIT")
        except _BAD_ROW as exc:
            self._rollback()
            validate_entries(entries)  # names the entry a CHECK or a binding refused
            raise self._error(op, exc) from exc
        except sqlite3.Error as exc:
            self._rollback()
            raise self._error(op, exc) from exc
        except BaseException:
            self._rollback()
            raise
        # Only now, with the transaction on disk, does memory follow.
        self._ledger.commit(plan)
        self._evicted = evicted
        self._next_seq = next_seq
        self._resume_ns = resume
        self._log_rows = logged

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OutboxError(f"{self.path}: outbox is closed")
        return self._conn

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            # SQLite may have rolled back already (e.g. after SQLITE_FULL).
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    def _error(self, op: str, exc: Exception) -> OutboxError:
        hint = ""
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_CONSTRAINT_PRIMARYKEY":
            hint = "; is another process writing this outbox?"
        return OutboxError(f"{self.path}: {op} failed: {_describe(exc)}{hint}")


def read_evictions(path: str | Path) -> dict[int, tuple[Priority, int]]:
    """The audit trail of a closed outbox file: ``{seq: (class, samples)}`` of every
    evicted entry it keeps (the newest :data:`EVICTION_LOG_ROWS`).

    Raises:
        OutboxError: the file cannot be read or is not an edgeloop outbox.
    """
    if not Path(path).is_file():
        raise OutboxError(f"{path}: cannot open outbox: no such file")
    try:
        conn = sqlite3.connect(str(path))
    except sqlite3.Error as exc:
        raise OutboxError(f"{path}: cannot open outbox: {exc}") from exc
    try:
        rows = conn.execute("SELECT seq, priority, samples FROM evicted").fetchall()
    except sqlite3.Error as exc:
        raise OutboxError(f"{path}: cannot read its evictions: {_describe(exc)}") from exc
    finally:
        conn.close()
    return {int(s): (PRIORITY_OF[int(p)], int(n)) for s, p, n in rows}


def _runs(seqs: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    """Ascending ``seqs`` as ``(first, last)`` runs of consecutive numbers: evictions
    take a class's oldest entries, often a contiguous block, deleted as one range."""
    breaks = np.flatnonzero(np.diff(seqs) != 1) + 1
    firsts = np.concatenate([seqs[:1], seqs[breaks]]).tolist()
    lasts = np.concatenate([seqs[breaks - 1], seqs[-1:]]).tolist()
    return list(zip(firsts, lasts, strict=True))


def _counter_values(ev: EvictionStats) -> list[int]:
    return [getattr(ev, what)[p] for p in Priority for what in ("entries", "bytes", "samples")]


def _describe(exc: Exception) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    return f"{exc} ({name})" if name else str(exc)

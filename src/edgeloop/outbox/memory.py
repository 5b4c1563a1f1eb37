"""An in-process outbox: the full contract of :mod:`edgeloop.outbox.base`, minus durability.

The simulator, the demo and the tests use it; a node that must survive a crash uses
:class:`~edgeloop.outbox.sqlite.SqliteOutbox`. Both share the eviction policy of
:mod:`edgeloop.outbox.policy`, so they evict the same entries and count them alike.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from edgeloop.errors import OutboxError
from edgeloop.outbox.base import Entry, EvictionStats, NewEntry, OutboxStats, new_epoch
from edgeloop.outbox.policy import (
    PRIORITY_INT,
    PRIORITY_OF,
    EvictionLedger,
    ack_target,
    add_evictions,
    check_max_bytes,
    claim_start,
    incoming_from_entries,
    later_resume,
    snapshot,
)


class MemoryOutbox:
    """:class:`~edgeloop.outbox.base.OutboxStore` held in process memory.

    Args:
        budget_bytes: the most payload bytes held at once (``None``: unbounded).
            Beyond it, entries are evicted lowest priority first, oldest first, and
            counted (see :mod:`edgeloop.outbox.policy`).

    Nothing survives the process: every instance is a new store with a new epoch.
    After :meth:`close`, ``append``, ``claim`` and ``ack``
    raise :class:`~edgeloop.errors.OutboxError`; ``stats`` still reports the last state.
    Safe to call from several threads (one lock).

    >>> box = MemoryOutbox()
    >>> from edgeloop.outbox.base import Priority
    >>> box.append([NewEntry(Priority.EVENT, "event", b"x"), NewEntry(Priority.RAW, "raw", b"yy")])
    range(1, 3)
    >>> [e.seq for e in box.claim(max_bytes=1)]
    [1]
    >>> box.ack(1); box.stats().depth
    1
    """

    def __init__(self, budget_bytes: int | None = None) -> None:
        self._ledger = EvictionLedger(budget_bytes)
        # Insertion order is seq order; OrderedDict pops from the front in O(1).
        self._held: OrderedDict[int, Entry] = OrderedDict()
        self._next_seq = 1
        self._acked_upto = 0
        self._evicted = EvictionStats()
        self._lock = threading.Lock()
        self._closed = False
        self._epoch = new_epoch()
        self._resume_ns: int | None = None

    @property
    def budget_bytes(self) -> int | None:
        return self._ledger.budget_bytes

    def append(self, entries: Sequence[NewEntry], resume_ns: int | None = None) -> range:
        """Store ``entries``; return their sequence numbers (consecutive, from 1).

        Entries the budget evicts on arrival still get their number and are counted.
        ``resume_ns`` is the producer's resume point (see :mod:`edgeloop.outbox.base`).

        Raises:
            OutboxError: an entry is malformed (naming its index and field; nothing
                is stored), or the store is closed.
        """
        with self._lock:
            self._check_open()
            first = self._next_seq
            n = len(entries)
            resume = later_resume(self._resume_ns, resume_ns)
            if n == 0:
                self._resume_ns = resume
                return range(first, first)
            inc = incoming_from_entries(first, entries)
            plan = self._ledger.plan(inc)
            for seq in plan.held_seqs.tolist():
                del self._held[seq]
            kept = plan.kept_index()
            for i in range(n) if kept is None else kept:
                e = entries[i]
                seq = first + i
                self._held[seq] = Entry(
                    seq,
                    PRIORITY_OF[PRIORITY_INT[e.priority]],
                    e.kind,
                    e.payload,
                    e.samples,
                    e.created_ns,
                )
            self._ledger.commit(plan)
            if plan.any:
                self._evicted = add_evictions(self._evicted, plan.evicted)
            self._next_seq = first + n
            self._resume_ns = resume
            return range(first, first + n)

    def claim(self, max_bytes: int, after: int | None = None) -> list[Entry]:
        """Un-acked entries with ``seq > after`` (default: ``acked_upto``), in seq order,
        up to ``max_bytes`` of payload; at least one if any is pending. Removes nothing."""
        check_max_bytes(max_bytes)
        with self._lock:
            self._check_open()
            start = claim_start(after, self._acked_upto)
            out: list[Entry] = []
            total = 0
            for seq, entry in self._held.items():
                if seq <= start:
                    continue
                if out and total + entry.size > max_bytes:
                    break
                out.append(entry)
                total += entry.size
            return out

    def ack(self, upto_seq: int) -> None:
        """Release every entry with ``seq <= upto_seq`` (cumulative, idempotent)."""
        with self._lock:
            self._check_open()
            upto = ack_target(upto_seq, self._acked_upto, self._next_seq)
            if upto is None:
                return
            held = self._held
            n = nbytes = 0
            while held and next(iter(held)) <= upto:
                nbytes += held.popitem(last=False)[1].size
                n += 1
            self._ledger.release_upto(upto, (n, nbytes))
            self._acked_upto = upto

    def stats(self) -> OutboxStats:
        """Depth, bytes held, ``next_seq``, ``acked_upto``, eviction counters, epoch."""
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
        """Refuse further appends, claims and acks (idempotent)."""
        with self._lock:
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError("memory outbox: closed")

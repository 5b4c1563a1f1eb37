"""The outbox policy: what an append admits, what the byte budget evicts, what an ack frees.

Pure logic shared by every store (:mod:`edgeloop.outbox.memory`,
:mod:`edgeloop.outbox.sqlite`): no I/O, no clock. A store describes an ``append`` as an
:class:`Incoming` batch, asks its :class:`EvictionLedger` for an :class:`EvictionPlan`,
writes the plan to storage in one transaction, and only then calls
:meth:`EvictionLedger.commit` — so a failed write leaves the ledger (and ``stats()``)
exactly where the storage is.

Eviction rule, for a budget of ``B`` payload bytes:

* An incoming entry larger than ``B`` can never be held. It still gets its sequence
  number, and is evicted on arrival and counted in its class — never dropped silently,
  and it does not push out everything else to make room it could never use.
* Otherwise, while the held bytes exceed ``B``, the lowest priority class loses its
  oldest entry (a class's held entries are older than its incoming ones).

With a budget the ledger keeps, per class, running totals and a FIFO of
``(seq, size, samples)`` in int64 numpy chunks (24 bytes per held entry): planning and
committing cost O(evicted + incoming), never O(held). Without a budget nothing is ever
evicted, so it keeps only the totals (no memory per held entry), and the store tells it
what an ack released.
"""

from __future__ import annotations

import reprlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import numpy.typing as npt

from edgeloop.errors import ConfigError, OutboxError
from edgeloop.outbox.base import EvictionStats, NewEntry, OutboxStats, Priority

I64 = npt.NDArray[np.int64]

#: Priority (or an equal plain int) -> int: a validating lookup, cheap per entry.
PRIORITY_INT: dict[object, int] = {p: int(p) for p in Priority}
#: int -> Priority, to rebuild entries read from storage without an enum call.
PRIORITY_OF: tuple[Priority, ...] = tuple(Priority)
_N_CLASSES = len(PRIORITY_OF)
_CHUNK = 4096  # FIFO chunk capacity: a push copies only its own columns
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def check_budget(budget_bytes: int | None) -> int | None:
    """Return ``budget_bytes`` if it is ``None`` (unbounded) or a positive int.

    Raises:
        ConfigError: naming ``budget_bytes`` otherwise.
    """
    if budget_bytes is None:
        return None
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes <= 0:
        raise ConfigError(f"budget_bytes: must be a positive int or None, got {budget_bytes!r}")
    return budget_bytes


# -- what an append brings -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Incoming:
    """The entries of one append, entry ``i`` numbered ``first_seq + i``.

    Attributes:
        first_seq: sequence number of the first entry.
        count: number of entries.
        nbytes: their payload bytes.
        priority: class of each entry (0..3); ``None`` if only totals are known.
        size: payload bytes of each entry; ``None`` if only totals are known.
        samples: raw samples of each entry; ``None`` if only totals are known.

    A ledger without a budget needs the totals only; one with a budget needs the columns.
    """

    first_seq: int
    count: int
    nbytes: int
    priority: I64 | None = None
    size: I64 | None = None
    samples: I64 | None = None

    @classmethod
    def from_columns(cls, first_seq: int, priority: I64, size: I64, samples: I64) -> Incoming:
        return cls(first_seq, int(size.shape[0]), int(size.sum()), priority, size, samples)


def validate_entries(entries: Sequence[object]) -> None:
    """Check that every entry is a well-formed :class:`NewEntry`.

    Raises:
        OutboxError: naming the first bad entry's index, field and reason, e.g.
            ``append: entries[3].samples must be an int >= 0, got -1``.
    """
    for i, e in enumerate(entries):
        if not isinstance(e, NewEntry):
            _bad(i, "", "must be a NewEntry", e)
        if not _is_priority(e.priority):
            _bad(i, "priority", f"must be one of {[p.name for p in Priority]}", e.priority)
        if type(e.payload) is not bytes:
            _bad(i, "payload", "must be bytes", e.payload)
        if not isinstance(e.kind, str):
            _bad(i, "kind", "must be a str", e.kind)
        if not isinstance(e.samples, int) or not 0 <= e.samples <= _I64_MAX:
            _bad(i, "samples", "must be an int >= 0 that fits 64 bits", e.samples)
        if not isinstance(e.created_ns, int) or not _I64_MIN <= e.created_ns <= _I64_MAX:
            _bad(i, "created_ns", "must be an int that fits 64 bits", e.created_ns)


def incoming_from_entries(first_seq: int, entries: Sequence[NewEntry]) -> Incoming:
    """Validate ``entries`` and describe them, columns included.

    Raises:
        OutboxError: naming the first malformed entry and field.
    """
    validate_entries(entries)
    n = len(entries)
    return Incoming.from_columns(
        first_seq,
        np.fromiter((PRIORITY_INT[e.priority] for e in entries), dtype=np.int64, count=n),
        np.fromiter((len(e.payload) for e in entries), dtype=np.int64, count=n),
        np.fromiter((e.samples for e in entries), dtype=np.int64, count=n),
    )


def _is_priority(v: object) -> bool:
    try:
        return v in PRIORITY_INT
    except TypeError:  # unhashable
        return False


def _bad(i: int, field: str, reason: str, value: object) -> NoReturn:
    where = f"entries[{i}].{field}" if field else f"entries[{i}]"
    raise OutboxError(f"append: {where} {reason}, got {reprlib.repr(value)}")


# -- the per-class FIFO --------------------------------------------------------------------
class _Fifo:
    """The held entries of one class, oldest first, in ``(3, capacity)`` int64 chunks
    (rows ``seq``, ``size``, ``samples``). ``head`` columns of the first chunk are
    consumed, ``fill`` columns of the last are used. Totals live in the ledger."""

    __slots__ = ("chunks", "fill", "head")

    def __init__(self) -> None:
        self.chunks: deque[I64] = deque()
        self.head = 0
        self.fill = 0

    def push(self, cols: I64) -> None:
        """Append entries newer than every held one, given as a ``(3, n)`` array."""
        n = int(cols.shape[1])
        done = 0
        if self.chunks:
            last = self.chunks[-1]
            done = min(n, last.shape[1] - self.fill)
            last[:, self.fill : self.fill + done] = cols[:, :done]
            self.fill += done
        if done < n:
            rest = n - done
            buf = np.empty((3, max(_CHUNK, rest)), dtype=np.int64)
            buf[:, :rest] = cols[:, done:]
            self.chunks.append(buf)
            self.fill = rest

    def _views(self) -> Iterator[I64]:
        last = len(self.chunks) - 1
        for i, chunk in enumerate(self.chunks):
            yield chunk[:, (self.head if i == 0 else 0) : (self.fill if i == last else None)]

    def scan(self, excess: int) -> tuple[int, int, int, I64]:
        """The oldest entries whose bytes add up to at least ``excess`` (or all of them),
        left in place. Returns their ``(count, bytes, samples, seqs)``."""
        count = nbytes = nsamples = 0
        seqs: list[I64] = []
        for view in self._views():
            need = excess - nbytes
            n = view.shape[1]
            # Sum a doubling prefix, not the whole chunk: the cost follows what is
            # evicted, not what is held (a reopened store holds one big chunk).
            p = min(64, n)
            cs = np.cumsum(view[1, :p])
            while int(cs[-1]) < need and p < n:
                p = min(2 * p, n)
                cs = np.cumsum(view[1, :p])
            k = p if int(cs[-1]) < need else int(np.searchsorted(cs, need)) + 1
            count += k
            nbytes += int(cs[k - 1])
            nsamples += int(view[2, :k].sum())
            seqs.append(view[0, :k])
            if nbytes >= excess:
                break
        return count, nbytes, nsamples, _concat(seqs)

    def count_upto(self, seq: int) -> tuple[int, int, int]:
        """``(count, bytes, samples)`` of the held entries numbered ``<= seq``."""
        count = nbytes = nsamples = 0
        for view in self._views():
            k = int(np.searchsorted(view[0], seq, side="right"))
            count += k
            nbytes += int(view[1, :k].sum())
            nsamples += int(view[2, :k].sum())
            if k < view.shape[1]:
                break
        return count, nbytes, nsamples

    def pop(self, k: int) -> None:
        """Remove the ``k`` oldest entries."""
        while k > 0:
            end = self.fill if len(self.chunks) == 1 else self.chunks[0].shape[1]
            left = end - self.head
            if k < left:
                self.head += k
                return
            self.chunks.popleft()
            self.head = 0
            k -= left
            if not self.chunks:
                self.fill = 0


def _concat(parts: list[I64]) -> I64:
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


# -- plans and the ledger ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EvictionPlan:
    """What an append (or a budget check on open) does to storage.

    Attributes:
        incoming: the batch being appended, or ``None``.
        keep: per incoming entry, whether it is stored; ``None`` means all are.
        held_seqs: held entries to delete, ascending.
        held_evicted: per class, ``(entries, bytes, samples)`` of its held entries
            evicted (always its oldest).
        evicted: every eviction of the plan, held and incoming, by class.
    """

    incoming: Incoming | None
    keep: npt.NDArray[np.bool_] | None
    held_seqs: I64
    held_evicted: tuple[tuple[int, int, int], ...]
    evicted: EvictionStats

    @property
    def any(self) -> bool:
        """Whether anything is evicted."""
        return self.evicted.total_entries > 0

    def kept_index(self) -> list[int] | None:
        """Indices of the incoming entries to store, or ``None`` if all of them."""
        return None if self.keep is None else np.flatnonzero(self.keep).tolist()


_NO_EVICTION = ((0, 0, 0),) * _N_CLASSES


class EvictionLedger:
    """What a store holds, by priority class, and the eviction decisions over it.

    Args:
        budget_bytes: the most payload bytes held at once, or ``None`` for no limit.

    It changes only in :meth:`load`, :meth:`commit` and :meth:`release_upto`, each
    called once the storage change has succeeded; :meth:`plan` is pure.

    >>> led = EvictionLedger(budget_bytes=10)
    >>> inc = Incoming.from_columns(1, np.array([0, 3, 0]), np.array([4, 4, 4]), np.ones(3, int))
    >>> plan = led.plan(inc)
    >>> plan.kept_index(), plan.evicted.entries[Priority.RAW]
    ([1, 2], 1)
    >>> led.commit(plan); (led.entries, led.bytes)
    (2, 8)
    """

    def __init__(self, budget_bytes: int | None = None) -> None:
        self.budget_bytes = check_budget(budget_bytes)
        #: Whether entries are tracked one by one (only a budget needs it).
        self.tracks_entries = self.budget_bytes is not None
        self._fifos = [_Fifo() for _ in range(_N_CLASSES)]
        self._entries = [0] * _N_CLASSES
        self._bytes = [0] * _N_CLASSES
        self._samples = [0] * _N_CLASSES
        self._untracked = [0, 0]  # entries, bytes (no budget)

    @property
    def entries(self) -> int:
        """Entries held."""
        return sum(self._entries) + self._untracked[0]

    @property
    def bytes(self) -> int:
        """Payload bytes held."""
        return sum(self._bytes) + self._untracked[1]

    def load(self, seq: I64, priority: I64, size: I64, samples: I64) -> None:
        """Add held entries read back from storage (ascending ``seq``), e.g. on reopen."""
        if self.tracks_entries:
            self._push(seq, priority, size, samples)
        else:
            self.load_totals(int(seq.shape[0]), int(size.sum()))

    def load_totals(self, entries: int, nbytes: int) -> None:
        """Add held entries known only by their totals (a ledger without a budget).

        Raises:
            ValueError: the ledger tracks entries one by one (it has a budget).
        """
        if self.tracks_entries:
            raise ValueError("load_totals: a ledger with a budget needs the entries (load)")
        self._untracked[0] += entries
        self._untracked[1] += nbytes

    def plan(self, incoming: Incoming | None = None) -> EvictionPlan:
        """Decide what to evict so that the held bytes fit the budget after ``incoming``.

        Pure: the ledger is unchanged until :meth:`commit` of the returned plan.

        Raises:
            ValueError: the ledger has a budget and ``incoming`` lacks its columns.
        """
        evicted = EvictionStats()
        budget = self.budget_bytes
        if budget is None:
            return EvictionPlan(incoming, None, _concat([]), _NO_EVICTION, evicted)
        inc = incoming if incoming is not None and incoming.count else None
        keep: npt.NDArray[np.bool_] | None = None
        total = self.bytes
        if inc is not None:
            prio, size, samples = _columns(inc)
            oversized = size > budget
            if oversized.any():
                # It could never fit: evict it on arrival rather than empty the store.
                keep = ~oversized
                for c in np.unique(prio[oversized]).tolist():
                    sel = oversized & (prio == c)
                    evicted.add(
                        PRIORITY_OF[c],
                        int(size[sel].sum()),
                        int(samples[sel].sum()),
                        int(sel.sum()),
                    )
                total += int(size[keep].sum())
            else:
                total += inc.nbytes
        excess = total - budget
        held_ev = list(_NO_EVICTION)
        held_seqs: list[I64] = []
        for c in range(_N_CLASSES):
            if excess <= 0:
                break
            if self._entries[c]:
                k, nb, ns, seqs = self._fifos[c].scan(excess)
                held_ev[c] = (k, nb, ns)
                held_seqs.append(seqs)
                evicted.add(PRIORITY_OF[c], nb, ns, k)
                excess -= nb
            if excess > 0 and inc is not None:
                mine = prio == c if keep is None else (prio == c) & keep
                idx = np.flatnonzero(mine)
                if idx.size:
                    cs = np.cumsum(size[idx])
                    k = idx.size if int(cs[-1]) < excess else int(np.searchsorted(cs, excess)) + 1
                    if keep is None:
                        keep = np.ones(inc.count, dtype=np.bool_)
                    keep[idx[:k]] = False
                    nb = int(cs[k - 1])
                    evicted.add(PRIORITY_OF[c], nb, int(samples[idx[:k]].sum()), int(k))
                    excess -= nb
        return EvictionPlan(incoming, keep, np.sort(_concat(held_seqs)), tuple(held_ev), evicted)

    def commit(self, plan: EvictionPlan) -> None:
        """Apply ``plan`` once the store has written it."""
        for c, (k, nb, ns) in enumerate(plan.held_evicted):
            if k:
                self._fifos[c].pop(k)
                self._entries[c] -= k
                self._bytes[c] -= nb
                self._samples[c] -= ns
        inc = plan.incoming
        if inc is None or not inc.count:
            return
        if not self.tracks_entries:
            self._untracked[0] += inc.count
            self._untracked[1] += inc.nbytes
            return
        prio, size, samples = _columns(inc)
        seq = inc.first_seq + np.arange(inc.count, dtype=np.int64)
        m = plan.keep
        if m is None:
            self._push(seq, prio, size, samples)
        else:
            self._push(seq[m], prio[m], size[m], samples[m])

    def release_upto(self, upto_seq: int, measured: tuple[int, int] | None = None) -> None:
        """Forget every held entry numbered ``<= upto_seq`` (once an ack is stored).

        Args:
            upto_seq: the new ``acked_upto``.
            measured: ``(entries, bytes)`` the store released — required when the
                ledger does not track entries (no budget), ignored otherwise.
        """
        if not self.tracks_entries:
            if measured is None:
                raise ValueError("release_upto: an unbounded ledger needs `measured`")
            self._untracked[0] -= measured[0]
            self._untracked[1] -= measured[1]
            return
        for c in range(_N_CLASSES):
            if self._entries[c]:
                n, nb, ns = self._fifos[c].count_upto(upto_seq)
                if n:
                    self._fifos[c].pop(n)
                    self._entries[c] -= n
                    self._bytes[c] -= nb
                    self._samples[c] -= ns

    def _push(self, seq: I64, priority: I64, size: I64, samples: I64) -> None:
        if seq.size == 0:
            return
        lo, hi = int(priority.min()), int(priority.max())
        for c in range(lo, hi + 1):
            if lo == hi:  # the common case, a batch of one class: no masking
                cols = np.stack([seq, size, samples])
            else:
                sel = priority == c
                if not sel.any():
                    continue
                cols = np.stack([seq[sel], size[sel], samples[sel]])
            self._fifos[c].push(cols)
            self._entries[c] += int(cols.shape[1])
            self._bytes[c] += int(cols[1].sum())
            self._samples[c] += int(cols[2].sum())


def _columns(inc: Incoming) -> tuple[I64, I64, I64]:
    if inc.priority is None or inc.size is None or inc.samples is None:
        raise ValueError("a ledger with a budget needs the columns of the incoming entries")
    return inc.priority, inc.size, inc.samples


# -- claim, ack, counters ------------------------------------------------------------------
def check_max_bytes(max_bytes: int) -> int:
    """Return ``max_bytes`` if it is an int >= 0 (0 still claims one entry).

    Raises:
        OutboxError: naming ``max_bytes`` otherwise.
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise OutboxError(f"claim: max_bytes must be an int >= 0, got {max_bytes!r}")
    return max_bytes


def claim_start(after: int | None, acked_upto: int) -> int:
    """The sequence a claim starts after: ``after``, but never inside the acked range.

    Raises:
        OutboxError: naming ``after`` if it is neither ``None`` nor an int.
    """
    if after is None:
        return acked_upto
    if isinstance(after, bool) or not isinstance(after, int):
        raise OutboxError(f"claim: after must be an int or None, got {after!r}")
    return max(after, acked_upto)


def ack_target(upto_seq: int, acked_upto: int, next_seq: int) -> int | None:
    """The new ``acked_upto`` after ``ack(upto_seq)``, or ``None`` if nothing changes.

    An ack at or below ``acked_upto`` is a no-op (acks are cumulative and may arrive
    late or twice). An ack beyond the highest sequence assigned releases everything
    and stops there: it never pre-acknowledges entries not yet appended.

    Raises:
        OutboxError: naming ``upto_seq`` if it is not an int.
    """
    if isinstance(upto_seq, bool) or not isinstance(upto_seq, int):
        raise OutboxError(f"ack: upto_seq must be an int, got {upto_seq!r}")
    upto = min(upto_seq, next_seq - 1)
    return upto if upto > acked_upto else None


def add_evictions(total: EvictionStats, delta: EvictionStats) -> EvictionStats:
    """A new :class:`EvictionStats` holding ``total + delta`` (neither is changed)."""
    out = copy_evictions(total)
    for p in Priority:
        out.add(p, delta.bytes[p], delta.samples[p], delta.entries[p])
    return out


def copy_evictions(stats: EvictionStats) -> EvictionStats:
    """An independent copy of ``stats`` (what ``OutboxStore.stats()`` hands out)."""
    return EvictionStats(dict(stats.entries), dict(stats.bytes), dict(stats.samples))


def snapshot(
    ledger: EvictionLedger,
    next_seq: int,
    acked_upto: int,
    evicted: EvictionStats,
    epoch: int,
    resume_ns: int | None = None,
) -> OutboxStats:
    """The :class:`OutboxStats` both stores hand out (counters copied, not shared)."""
    return OutboxStats(
        depth=ledger.entries,
        bytes=ledger.bytes,
        next_seq=next_seq,
        acked_upto=acked_upto,
        evicted=copy_evictions(evicted),
        epoch=epoch,
        resume_ns=resume_ns,
    )


def later_resume(held: int | None, given: int | None) -> int | None:
    """The resume point after an append recorded ``given``: never moves back.

    >>> later_resume(None, 5), later_resume(7, 5), later_resume(7, None), later_resume(7, 9)
    (5, 7, 7, 9)
    """
    if given is None:
        return held
    if isinstance(given, bool) or not isinstance(given, int):
        raise OutboxError(f"resume_ns: must be an int (ns), got {type(given).__name__}")
    return given if held is None else max(held, given)

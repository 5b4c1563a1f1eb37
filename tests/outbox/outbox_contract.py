"""The outbox contract (``edgeloop.outbox.base``), one suite for every store.

A backend's test module subclasses :class:`OutboxContract`, sets ``__test__ = True`` and
provides the ``factory`` fixture: ``factory(budget_bytes=None) -> OutboxStore``.
(Named ``outbox_contract`` rather than ``contract`` so it cannot collide with another
test directory's plain module of the same name.)
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

import pytest

from edgeloop.errors import OutboxError
from edgeloop.outbox.base import Entry, NewEntry, OutboxStore, Priority

Factory = Callable[..., OutboxStore]

RAW, SUMMARY, EVENT, ALARM = Priority.RAW, Priority.SUMMARY, Priority.EVENT, Priority.ALARM


def entry(priority: Priority, size: int, samples: int = 0, tag: str = "") -> NewEntry:
    """An entry whose payload (``size`` bytes) says who it is."""
    body = f"{priority.name}:{tag}:".encode()
    payload = (body * (size // max(1, len(body)) + 1))[:size]
    return NewEntry(priority, priority.name.lower(), payload, samples=samples, created_ns=size)


def seqs(entries: list[Entry]) -> list[int]:
    return [e.seq for e in entries]


def held(store: OutboxStore) -> list[int]:
    """Every pending sequence, oldest first."""
    return seqs(store.claim(max_bytes=1 << 40))


class OutboxContract:
    __test__ = False

    @pytest.fixture
    def factory(self) -> Factory:
        raise NotImplementedError

    @pytest.fixture
    def store(self, factory: Factory) -> OutboxStore:
        return factory()

    # -- numbering ------------------------------------------------------------------
    def test_is_an_outbox_store(self, store: OutboxStore) -> None:
        assert isinstance(store, OutboxStore)

    def test_append_numbers_consecutively_from_one(self, store: OutboxStore) -> None:
        assert store.append([entry(RAW, 3), entry(EVENT, 4), entry(ALARM, 5)]) == range(1, 4)
        assert store.append([entry(SUMMARY, 6)]) == range(4, 5)
        assert store.append([]) == range(5, 5)
        assert store.append([entry(RAW, 1), entry(RAW, 1)]) == range(5, 7)
        assert store.stats().next_seq == 7

    def test_numbering_continues_after_everything_is_acked(self, store: OutboxStore) -> None:
        store.append([entry(RAW, 3)] * 3)
        store.ack(3)
        assert store.stats().depth == 0
        assert store.append([entry(RAW, 3)]) == range(4, 5)
        assert held(store) == [4]

    # -- epoch -----------------------------------------------------------------------
    def test_epoch_is_a_positive_int64(self, store: OutboxStore) -> None:
        epoch = store.stats().epoch
        assert isinstance(epoch, int)
        assert 0 < epoch < 2**63

    def test_epoch_is_stable_for_the_life_of_the_store(self, store: OutboxStore) -> None:
        epoch = store.stats().epoch
        store.append([entry(RAW, 3)] * 3)
        store.ack(2)
        assert store.stats().epoch == epoch
        store.close()
        assert store.stats().epoch == epoch

    def test_two_fresh_stores_have_different_epochs(self, factory: Factory) -> None:
        assert factory().stats().epoch != factory().stats().epoch

    # -- claim -----------------------------------------------------------------------
    def test_claim_returns_what_was_appended_in_seq_order(self, store: OutboxStore) -> None:
        new = [entry(ALARM, 5, 1, "a"), entry(RAW, 7, 70, "b"), entry(EVENT, 2, 0, "c")]
        store.append(new)
        got = store.claim(max_bytes=1000)
        assert seqs(got) == [1, 2, 3]
        for e, n in zip(got, new, strict=True):
            assert (e.priority, e.kind, e.payload, e.samples, e.created_ns) == (
                n.priority,
                n.kind,
                n.payload,
                n.samples,
                n.created_ns,
            )
            assert isinstance(e.priority, Priority)
            assert e.size == len(n.payload)

    def test_claim_on_empty_store_returns_nothing(self, store: OutboxStore) -> None:
        assert store.claim(max_bytes=100) == []
        store.append([entry(RAW, 1)])
        store.ack(1)
        assert store.claim(max_bytes=100) == []

    def test_claim_respects_max_bytes(self, store: OutboxStore) -> None:
        store.append([entry(RAW, 10) for _ in range(5)])
        assert seqs(store.claim(max_bytes=25)) == [1, 2]
        assert seqs(store.claim(max_bytes=30)) == [1, 2, 3]
        assert seqs(store.claim(max_bytes=29)) == [1, 2]

    def test_claim_returns_at_least_one_entry(self, store: OutboxStore) -> None:
        store.append([entry(RAW, 50), entry(RAW, 1)])
        assert seqs(store.claim(max_bytes=0)) == [1]
        assert seqs(store.claim(max_bytes=10)) == [1]

    def test_claim_stops_at_the_first_entry_that_does_not_fit(self, store: OutboxStore) -> None:
        # In order, never skipping ahead to a smaller later entry.
        store.append([entry(RAW, 10), entry(RAW, 100), entry(RAW, 1)])
        assert seqs(store.claim(max_bytes=50)) == [1]

    def test_claim_does_not_remove(self, store: OutboxStore) -> None:
        store.append([entry(EVENT, 4)] * 3)
        first = store.claim(max_bytes=100)
        assert store.claim(max_bytes=100) == first
        assert store.stats().depth == 3

    def test_claim_after(self, store: OutboxStore) -> None:
        store.append([entry(RAW, 4)] * 5)
        assert seqs(store.claim(max_bytes=100, after=2)) == [3, 4, 5]
        assert seqs(store.claim(max_bytes=8, after=1)) == [2, 3]
        assert store.claim(max_bytes=100, after=5) == []
        assert store.claim(max_bytes=100, after=99) == []
        store.ack(3)
        # ``after`` inside the acked range starts after the ack.
        assert seqs(store.claim(max_bytes=100, after=1)) == [4, 5]
        assert seqs(store.claim(max_bytes=100)) == [4, 5]

    def test_claim_rejects_a_negative_max_bytes(self, store: OutboxStore) -> None:
        with pytest.raises(OutboxError, match="max_bytes"):
            store.claim(max_bytes=-1)

    # -- ack -------------------------------------------------------------------------
    def test_ack_is_cumulative(self, store: OutboxStore) -> None:
        store.append([entry(RAW, 10), entry(RAW, 20), entry(RAW, 30)])
        store.ack(2)
        st = store.stats()
        assert (st.depth, st.bytes, st.acked_upto) == (1, 30, 2)
        assert held(store) == [3]

    def test_ack_is_idempotent_and_a_lower_ack_is_a_no_op(self, store: OutboxStore) -> None:
        store.append([entry(RAW, 10)] * 4)
        store.ack(3)
        store.ack(3)
        store.ack(1)
        store.ack(0)
        store.ack(-5)
        st = store.stats()
        assert (st.depth, st.acked_upto) == (1, 3)
        assert held(store) == [4]

    def test_ack_beyond_the_highest_seq_never_preacks_future_entries(
        self, store: OutboxStore
    ) -> None:
        store.append([entry(RAW, 10)] * 2)
        store.ack(100)
        st = store.stats()
        assert (st.depth, st.bytes, st.acked_upto, st.next_seq) == (0, 0, 2, 3)
        assert store.append([entry(RAW, 10)]) == range(3, 4)
        assert held(store) == [3]

    def test_ack_on_empty_store_is_a_no_op(self, store: OutboxStore) -> None:
        store.ack(5)
        st = store.stats()
        assert (st.acked_upto, st.next_seq) == (0, 1)
        assert store.append([entry(RAW, 1)]) == range(1, 2)

    def test_ack_rejects_a_non_int(self, store: OutboxStore) -> None:
        with pytest.raises(OutboxError, match="upto_seq"):
            store.ack("3")  # type: ignore[arg-type]

    # -- stats -----------------------------------------------------------------------
    def test_stats_track_depth_bytes_and_bounds(self, store: OutboxStore) -> None:
        st = store.stats()
        assert (st.depth, st.bytes, st.next_seq, st.acked_upto) == (0, 0, 1, 0)
        assert st.evicted.total_entries == 0
        store.append([entry(RAW, 10), entry(ALARM, 5)])
        st = store.stats()
        assert (st.depth, st.bytes, st.next_seq, st.acked_upto) == (2, 15, 3, 0)

    def test_stats_hand_out_a_copy(self, store: OutboxStore) -> None:
        store.stats().evicted.add(RAW, 10, 10)
        assert store.stats().evicted.total_entries == 0

    # -- budget and eviction ---------------------------------------------------------
    def test_unbounded_store_never_evicts(self, store: OutboxStore) -> None:
        store.append([entry(RAW, 1000)] * 50)
        st = store.stats()
        assert (st.depth, st.bytes, st.evicted.total_entries) == (50, 50_000, 0)

    def test_eviction_lowest_priority_first_then_oldest(self, factory: Factory) -> None:
        box = factory(budget_bytes=100)
        box.append(
            [
                entry(RAW, 20, 100, "a"),  # 1
                entry(SUMMARY, 20, 50, "b"),  # 2
                entry(EVENT, 20, 3, "c"),  # 3
                entry(ALARM, 20, 2, "d"),  # 4
                entry(RAW, 20, 100, "e"),  # 5
            ]
        )
        assert box.stats().evicted.total_entries == 0
        box.append([entry(ALARM, 30, 1, "f")])  # 6: both RAW go, oldest first
        assert held(box) == [2, 3, 4, 6]
        ev = box.stats().evicted
        assert (ev.entries[RAW], ev.bytes[RAW], ev.samples[RAW]) == (2, 40, 200)
        box.append([entry(EVENT, 30, 4, "g")])  # 7: the SUMMARY goes
        assert held(box) == [3, 4, 6, 7]
        box.append([entry(ALARM, 50, 5, "h")])  # 8: both EVENTs go
        assert held(box) == [4, 6, 8]
        st = box.stats()
        assert (st.depth, st.bytes) == (3, 100)
        ev = st.evicted
        assert ev.as_dict() == {
            "raw": {"entries": 2, "bytes": 40, "samples": 200},
            "summary": {"entries": 1, "bytes": 20, "samples": 50},
            "event": {"entries": 2, "bytes": 50, "samples": 7},
            "alarm": {"entries": 0, "bytes": 0, "samples": 0},
        }
        assert ev.total_samples == 257

    def test_eviction_counts_entries_of_the_same_append(self, factory: Factory) -> None:
        box = factory(budget_bytes=50)
        # In one append: the RAW goes although it is newer than the ALARM.
        assert box.append([entry(ALARM, 30), entry(RAW, 30, 9)]) == range(1, 3)
        assert held(box) == [1]
        # Within one class the older goes, even if it arrived in the same batch.
        assert box.append([entry(EVENT, 15), entry(EVENT, 15)]) == range(3, 5)
        assert held(box) == [1, 4]
        ev = box.stats().evicted
        assert (ev.entries[RAW], ev.samples[RAW], ev.entries[EVENT], ev.bytes[EVENT]) == (
            1,
            9,
            1,
            15,
        )

    def test_entry_larger_than_the_budget_is_evicted_on_arrival_and_counted(
        self, factory: Factory
    ) -> None:
        box = factory(budget_bytes=50)
        box.append([entry(RAW, 20, 5)])
        # Numbered, counted, never held; it does not push out what could stay.
        assert box.append([entry(ALARM, 60, 7), entry(EVENT, 10)]) == range(2, 4)
        assert held(box) == [1, 3]
        st = box.stats()
        assert (st.depth, st.bytes, st.next_seq) == (2, 30, 4)
        ev = st.evicted
        assert (ev.entries[ALARM], ev.bytes[ALARM], ev.samples[ALARM]) == (1, 60, 7)
        assert ev.entries[RAW] == 0

    def test_an_entry_exactly_the_budget_fits(self, factory: Factory) -> None:
        box = factory(budget_bytes=50)
        box.append([entry(RAW, 10), entry(EVENT, 50)])
        assert held(box) == [2]
        assert box.stats().bytes == 50

    def test_acked_entries_free_budget(self, factory: Factory) -> None:
        box = factory(budget_bytes=40)
        box.append([entry(RAW, 20), entry(RAW, 20)])
        box.ack(2)
        box.append([entry(RAW, 20), entry(RAW, 20)])
        assert box.stats().evicted.total_entries == 0
        assert held(box) == [3, 4]

    def test_evicted_seqs_are_holes_that_claim_skips(self, factory: Factory) -> None:
        box = factory(budget_bytes=30)
        box.append([entry(RAW, 10), entry(ALARM, 10), entry(RAW, 10), entry(ALARM, 10)])
        assert seqs(box.claim(max_bytes=100, after=0)) == [2, 3, 4]
        box.ack(2)
        assert seqs(box.claim(max_bytes=100)) == [3, 4]

    # -- validation and lifecycle ----------------------------------------------------
    @pytest.mark.parametrize(
        ("bad", "field"),
        [
            (NewEntry(7, "raw", b"x"), "priority"),  # type: ignore[arg-type]
            (NewEntry(RAW, "raw", "text"), "payload"),  # type: ignore[arg-type]
            (NewEntry(RAW, "raw", None), "payload"),  # type: ignore[arg-type]
            (NewEntry(RAW, "raw", b"x", samples=-1), "samples"),
            (NewEntry(RAW, "raw", b"x", samples=2.5), "samples"),  # type: ignore[arg-type]
            (NewEntry(RAW, "raw", b"x", created_ns=2**70), "created_ns"),
            ("not an entry", ""),
        ],
    )
    def test_malformed_entry_is_named_and_nothing_is_stored(
        self, store: OutboxStore, bad: object, field: str
    ) -> None:
        store.append([entry(RAW, 1)])
        where = f"entries[1].{field} " if field else "entries[1] must be a NewEntry"
        with pytest.raises(OutboxError, match=re.escape(where)):
            store.append([entry(RAW, 2), bad, entry(RAW, 3)])  # type: ignore[list-item]
        st = store.stats()
        assert (st.depth, st.bytes, st.next_seq) == (1, 1, 2)
        assert store.append([entry(RAW, 4)]) == range(2, 3)
        assert held(store) == [1, 2]

    def test_closed_store_refuses_work_but_reports(self, factory: Factory) -> None:
        box = factory()
        box.append([entry(RAW, 3)])
        box.close()
        box.close()  # idempotent
        with pytest.raises(OutboxError, match="closed"):
            box.append([entry(RAW, 3)])
        with pytest.raises(OutboxError, match="closed"):
            box.claim(10)
        with pytest.raises(OutboxError, match="closed"):
            box.ack(1)
        assert box.stats().depth == 1

    def test_concurrent_appends_get_distinct_consecutive_numbers(self, store: OutboxStore) -> None:
        ranges: list[range] = []
        lock = threading.Lock()

        def work() -> None:
            for _ in range(20):
                r = store.append([entry(EVENT, 8)] * 5)
                with lock:
                    ranges.append(r)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        numbers = sorted(s for r in ranges for s in r)
        assert numbers == list(range(1, 401))
        assert held(store) == numbers

"""Random append / claim / ack / reopen sequences against a deliberately naive model."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeloop.outbox import policy
from edgeloop.outbox.base import EvictionStats, NewEntry, OutboxStore, Priority
from edgeloop.outbox.memory import MemoryOutbox
from edgeloop.outbox.sqlite import SqliteOutbox


@dataclass
class Model:
    """The contract, written the obvious way: a dict, a min() per eviction."""

    budget: int | None
    held: dict[int, NewEntry] = field(default_factory=dict)
    next_seq: int = 1
    acked_upto: int = 0
    evicted: EvictionStats = field(default_factory=EvictionStats)

    def append(self, entries: list[NewEntry]) -> range:
        first = self.next_seq
        for i, e in enumerate(entries):
            if self.budget is not None and len(e.payload) > self.budget:
                self.evicted.add(e.priority, len(e.payload), e.samples)
            else:
                self.held[first + i] = e
        self.next_seq = first + len(entries)
        while self.budget is not None and self.bytes() > self.budget:
            victim = min(self.held, key=lambda s: (self.held[s].priority, s))
            gone = self.held.pop(victim)
            self.evicted.add(gone.priority, len(gone.payload), gone.samples)
        return range(first, self.next_seq)

    def claim(self, max_bytes: int, after: int | None) -> list[int]:
        start = self.acked_upto if after is None else max(after, self.acked_upto)
        out: list[int] = []
        total = 0
        for s in sorted(self.held):
            if s <= start:
                continue
            size = len(self.held[s].payload)
            if out and total + size > max_bytes:
                break
            out.append(s)
            total += size
        return out

    def ack(self, upto: int) -> None:
        upto = min(upto, self.next_seq - 1)
        if upto > self.acked_upto:
            self.held = {s: e for s, e in self.held.items() if s > upto}
            self.acked_upto = upto

    def bytes(self) -> int:
        return sum(len(e.payload) for e in self.held.values())


new_entry = st.builds(
    lambda p, n, k: NewEntry(Priority(p), "k", bytes([p]) * n, samples=k, created_ns=n),
    st.integers(0, 3),
    st.integers(0, 60),
    st.integers(0, 1000),
)
op = st.one_of(
    st.tuples(st.just("append"), st.lists(new_entry, max_size=12)),
    st.tuples(st.just("claim"), st.integers(0, 200), st.one_of(st.none(), st.integers(-2, 80))),
    st.tuples(st.just("ack"), st.integers(-2, 90)),
    st.tuples(st.just("reopen")),
)


def check(box: OutboxStore, model: Model) -> None:
    st_ = box.stats()
    assert (st_.depth, st_.bytes, st_.next_seq, st_.acked_upto) == (
        len(model.held),
        model.bytes(),
        model.next_seq,
        model.acked_upto,
    )
    assert st_.evicted.as_dict() == model.evicted.as_dict()


def run(ops: list[tuple[object, ...]], budget: int | None, open_box: object) -> None:
    assert callable(open_box)
    box: OutboxStore = open_box(budget)
    model = Model(budget)
    try:
        for o in ops:
            if o[0] == "append":
                entries = list(o[1])  # type: ignore[call-overload]
                assert box.append(entries) == model.append(entries)
            elif o[0] == "claim":
                max_bytes, after = o[1], o[2]
                got = box.claim(max_bytes, after)  # type: ignore[arg-type]
                assert [e.seq for e in got] == model.claim(max_bytes, after)  # type: ignore[arg-type]
                for e in got:
                    assert e.payload == model.held[e.seq].payload
            elif o[0] == "ack":
                box.ack(o[1])  # type: ignore[arg-type]
                model.ack(o[1])  # type: ignore[arg-type]
            elif o[0] == "reopen":
                box.close()
                box = open_box(budget)
                if isinstance(box, MemoryOutbox):  # not durable: nothing to reopen
                    return
            check(box, model)
    finally:
        box.close()


budgets = st.one_of(st.none(), st.integers(1, 150))
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Tiny FIFO chunks make every sequence cross chunk boundaries.
    monkeypatch.setattr(policy, "_CHUNK", 3)
    yield


@SETTINGS
@given(ops=st.lists(op.filter(lambda o: o[0] != "reopen"), max_size=30), budget=budgets)
def test_memory_outbox_matches_the_model(
    small_chunks: None, ops: list[tuple[object, ...]], budget: int | None
) -> None:
    run(ops, budget, MemoryOutbox)


@SETTINGS
@given(ops=st.lists(op, max_size=25), budget=budgets)
def test_sqlite_outbox_matches_the_model_across_reopens(
    small_chunks: None, ops: list[tuple[object, ...]], budget: int | None
) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "outbox.db"
        run(ops, budget, lambda b: SqliteOutbox(path, budget_bytes=b))

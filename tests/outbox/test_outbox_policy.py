"""The eviction ledger on its own: pure planning, commit, release, scale."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from edgeloop.errors import ConfigError
from edgeloop.outbox import factory, memory, policy
from edgeloop.outbox.base import Priority
from edgeloop.outbox.policy import EvictionLedger, Incoming


def batch(
    first: int, prios: list[int], sizes: list[int], samples: list[int] | None = None
) -> Incoming:
    smp = samples if samples is not None else [1] * len(prios)
    return Incoming.from_columns(first, np.array(prios), np.array(sizes), np.array(smp))


def test_plan_is_pure_until_commit() -> None:
    led = EvictionLedger(budget_bytes=100)
    led.commit(led.plan(batch(1, [0, 1, 2], [40, 40, 20])))
    inc = batch(4, [3], [30])
    p1, p2 = led.plan(inc), led.plan(inc)
    assert p1.held_seqs.tolist() == p2.held_seqs.tolist() == [1]
    assert (led.entries, led.bytes) == (3, 100)
    led.commit(p1)
    assert (led.entries, led.bytes) == (3, 90)


def test_release_upto_spans_classes() -> None:
    led = EvictionLedger(budget_bytes=1000)
    led.commit(led.plan(batch(1, [0, 3, 1, 0, 2], [1, 2, 3, 4, 5])))
    led.release_upto(3)
    assert (led.entries, led.bytes) == (2, 9)
    led.release_upto(3)  # nothing left at or below 3
    assert (led.entries, led.bytes) == (2, 9)
    led.release_upto(10)
    assert (led.entries, led.bytes) == (0, 0)


def test_unbounded_ledger_keeps_totals_only() -> None:
    led = EvictionLedger()
    assert not led.tracks_entries
    plan = led.plan(Incoming(1, 3, 30))
    assert not plan.any and plan.kept_index() is None
    led.commit(plan)
    assert (led.entries, led.bytes) == (3, 30)
    with pytest.raises(ValueError, match="measured"):
        led.release_upto(2)
    led.release_upto(2, (2, 20))
    assert (led.entries, led.bytes) == (1, 10)


def test_budgeted_ledger_needs_columns() -> None:
    led = EvictionLedger(budget_bytes=10)
    with pytest.raises(ValueError, match="columns"):
        led.plan(Incoming(1, 3, 30))
    with pytest.raises(ValueError, match="load_totals"):
        led.load_totals(1, 1)


@pytest.mark.parametrize("budget", [0, -1, 2.0, "10", True])
def test_budget_must_be_a_positive_int(budget: object) -> None:
    with pytest.raises(ConfigError, match="budget_bytes"):
        EvictionLedger(budget)  # type: ignore[arg-type]


def test_eviction_at_scale_takes_the_oldest_of_the_lowest_class() -> None:
    n = 100_000
    led = EvictionLedger(budget_bytes=10 * n)
    # 100k held entries in many appends: RAW and SUMMARY interleaved.
    for first in range(1, n + 1, 1000):
        prios = [(first + i) % 2 for i in range(1000)]
        led.commit(led.plan(batch(first, prios, [10] * 1000)))
    assert (led.entries, led.bytes) == (n, 10 * n)
    plan = led.plan(batch(n + 1, [3] * 1500, [10] * 1500, [2] * 1500))
    # 1500 entries must go: the 1500 oldest RAW ones (RAW holds the even seqs).
    raw_seqs = [s for s in range(1, n + 1) if s % 2 == 0][:1500]
    assert plan.held_seqs.tolist() == raw_seqs
    assert plan.evicted.entries[Priority.RAW] == 1500
    assert plan.evicted.bytes[Priority.RAW] == 15_000
    assert plan.kept_index() is None
    led.commit(plan)
    assert (led.entries, led.bytes) == (n, 10 * n)
    led.release_upto(n)
    assert (led.entries, led.bytes) == (1500, 15_000)


@pytest.mark.parametrize("module", [policy, memory, factory])
def test_doctests(module: object) -> None:
    result = doctest.testmod(module, raise_on_error=False)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0

"""The uplink window (go-back-N bookkeeping), alone: bounds, acks as watermarks, rewinds."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeloop.errors import ConfigError
from edgeloop.node import uplink
from edgeloop.node.uplink import UplinkWindow


def test_docstring_example() -> None:
    result = doctest.testmod(uplink)
    assert result.attempted > 0 and result.failed == 0


def confirmed(max_batches: int = 3, max_bytes: int = 1000, acked: int = 0) -> UplinkWindow:
    w = UplinkWindow(max_batches, max_bytes, acked)
    w.on_ack(acked)  # the receiver has answered once
    return w


@pytest.mark.parametrize(
    ("batches", "nbytes", "what"), [(0, 1, "window_batches"), (1, 0, "window_bytes")]
)
def test_bounds_are_checked(batches: int, nbytes: int, what: str) -> None:
    with pytest.raises(ConfigError, match=what):
        UplinkWindow(batches, nbytes)


def test_one_batch_at_a_time_until_the_receiver_has_answered() -> None:
    w = UplinkWindow(8, 1 << 20, acked_upto=5)
    assert (w.sent, w.has_room()) == (5, True)
    w.on_sent(9, 10, now=0.0)
    assert not w.has_room() and w.sent == 9
    w.on_ack(5)  # an answer, even one that releases nothing, opens the window
    assert w.has_room()


def test_the_batch_bound_holds_and_acks_release_as_watermarks() -> None:
    w = confirmed(max_batches=3)
    for last in (10, 20, 30):
        assert w.has_room()
        w.on_sent(last, 100, 0.0)
    assert not w.has_room() and (w.in_flight, w.sent) == (3, 30)
    assert w.on_ack(20) == 2  # one cumulative ack releases both batches it covers
    assert (w.in_flight, w.bytes_in_flight, w.acked) == (1, 100, 20)
    assert w.has_room()
    assert w.on_ack(15) == 0 and w.acked == 20  # a lower watermark is a no-op


def test_the_byte_bound_holds_but_one_batch_always_goes() -> None:
    w = confirmed(max_batches=10, max_bytes=250)
    w.on_sent(1, 5000, 0.0)  # larger than the bound alone: allowed, as the only one
    assert not w.has_room()
    w.on_ack(1)
    w.on_sent(2, 100, 0.0)
    w.on_sent(3, 100, 0.0)
    assert w.has_room()  # 200 < 250
    w.on_sent(4, 100, 0.0)
    assert not w.has_room()


def test_a_rewind_resends_from_the_last_acknowledged_seq() -> None:
    w = confirmed()
    w.on_sent(10, 1, 0.0)
    w.on_sent(20, 1, 0.0)
    w.on_ack(10)
    w.rewind()
    assert (w.sent, w.acked, w.in_flight, w.rewinds) == (10, 10, 0, 1)
    # An ack of the forgotten pass still counts: the receiver committed it.
    w.on_ack(20)
    assert (w.sent, w.acked) == (20, 20)


def test_a_refused_batch_rewinds_once_per_watermark() -> None:
    w = confirmed(max_batches=5)
    for last in (10, 20, 30, 40):
        w.on_sent(last, 1, 0.0)
    # batch 1..10 was lost; the receiver refuses 11..20, 21..30 and 31..40 at watermark 0
    w.on_ack(0, answers_seq=20)
    assert (w.sent, w.rewinds) == (0, 1)
    w.on_sent(10, 1, 0.0)
    w.on_ack(0, answers_seq=30)
    w.on_ack(0, answers_seq=40)
    assert (w.sent, w.rewinds, w.in_flight) == (10, 1, 1)  # refusals of the old pass
    w.on_ack(10, answers_seq=10)
    w.on_sent(20, 1, 0.0)
    w.on_ack(10, answers_seq=20)  # a new refusal at a new watermark
    assert (w.sent, w.rewinds) == (10, 2)


def test_a_refusal_of_a_batch_already_covered_changes_nothing() -> None:
    w = confirmed()
    w.on_sent(10, 1, 0.0)
    w.on_sent(20, 1, 0.0)
    w.on_ack(20)
    w.on_ack(10, answers_seq=20)  # late: 20 is acknowledged already
    assert (w.sent, w.acked, w.rewinds) == (20, 20, 0)


def test_overdue_and_wait_follow_the_oldest_batch() -> None:
    w = confirmed()
    assert not w.overdue(100.0, 5.0) and w.wait_s(100.0, 5.0, idle_s=0.5) == 0.5
    w.on_sent(10, 1, now=100.0)
    w.on_sent(20, 1, now=103.0)
    assert w.wait_s(101.0, 5.0, 0.5) == pytest.approx(4.0)
    assert not w.overdue(105.0, 5.0) and w.overdue(105.5, 5.0)
    w.on_ack(10)
    assert not w.overdue(105.5, 5.0) and w.wait_s(105.5, 5.0, 0.5) == pytest.approx(2.5)


events = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(1, 5), st.integers(1, 400)),
        st.tuples(st.just("ack"), st.integers(0, 60), st.integers(0, 60)),
        st.tuples(st.just("fail"), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(events=events, max_batches=st.integers(1, 4), max_bytes=st.integers(1, 600))
def test_invariants_under_any_interleaving(
    events: list[tuple[str, int, int]], max_batches: int, max_bytes: int
) -> None:
    """Whatever arrives: the next claim starts at or after the watermark; what is in
    flight lies past the watermark, in seq order, and respects both bounds (beyond the
    byte bound only by its newest batch)."""
    w = UplinkWindow(max_batches, max_bytes)
    for kind, a, b in events:
        if kind == "send":
            if w.has_room():
                w.on_sent(w.sent + a, b, 0.0)
        elif kind == "ack":
            w.on_ack(min(a, w.sent), answers_seq=b)  # never acks what was not sent
        else:
            w.rewind()
        flight = list(w._flight)
        lasts = [f.last_seq for f in flight]
        assert w.acked <= w.sent
        assert lasts == sorted(set(lasts)) and all(w.acked < s <= w.sent for s in lasts)
        assert w.bytes_in_flight == sum(f.nbytes for f in flight)
        assert len(flight) <= max_batches
        assert len(flight) <= 1 or w.bytes_in_flight - flight[-1].nbytes < max_bytes

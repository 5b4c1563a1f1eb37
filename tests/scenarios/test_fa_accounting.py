"""The drift scenario's accounting: false alarms per hour by phase, recall after the
promotion (pure; events and faults made by hand, times in plant seconds)."""

from __future__ import annotations

import pytest

from edgeloop.scenarios.fa_accounting import SEC, account
from edgeloop.scenarios.scoring import EventTime, FaultInterval

T0 = 1_000 * SEC


def ev(machine: str, t_s: float) -> EventTime:
    return EventTime(machine, T0 + int(t_s * SEC))


def fault(machine: str, start_s: float, end_s: float) -> FaultInterval:
    return FaultInterval(machine, "imbalance", T0 + int(start_s * SEC), T0 + int(end_s * SEC))


def test_phases_count_false_alarms_only_and_the_peak_is_the_worst_stretch() -> None:
    faults = [fault("m1", 20, 24), fault("m2", 70, 74), fault("m3", 80, 83)]
    events = [
        ev("m9", 5.0),  # warm-up: not counted
        ev("m1", 15.0),  # before the change: one false alarm in 20 s
        ev("m1", 21.0),  # inside a fault: true
        *(ev("m2", 40.0 + 0.5 * i) for i in range(6)),  # a burst after the change
        ev("m3", 55.0),
        ev("m2", 71.0),  # the late fault on m2, detected
        ev("m4", 90.0),  # one false alarm after the promotion
        # the fault on m3 at 80 s is missed
    ]
    acc = account(
        faults,
        events,
        start_ns=T0,
        warmup_s=10.0,
        change_s=30.0,
        promoted_s=60.0,
        end_s=110.0,
        settle_s=5.0,
        window_s=10.0,
    )
    assert acc.before.false_alarms == 1 and acc.before.per_hour == pytest.approx(180.0)
    assert acc.peak is not None and acc.peak.false_alarms == 6
    assert acc.peak.per_hour == pytest.approx(6 / 10 * 3600)
    assert 30.0 <= acc.peak.start_s <= 40.0 < acc.peak.end_s
    assert acc.after is not None and (acc.after.start_s, acc.after.end_s) == (65.0, 110.0)
    assert acc.after.false_alarms == 1
    assert (acc.faults_after, acc.detected_after) == (2, 1)
    assert acc.recall_after == 0.5


def test_without_a_promotion_there_is_no_after_phase_and_no_recall() -> None:
    acc = account(
        [fault("m1", 50, 52)],
        [ev("m1", 51.0), ev("m2", 45.0)],
        start_ns=T0,
        warmup_s=10.0,
        change_s=30.0,
        promoted_s=None,
        end_s=60.0,
    )
    assert acc.after is None and acc.recall_after is None
    assert acc.peak is not None and acc.peak.false_alarms == 1
    assert acc.false_alarm_times_s == (45.0,)

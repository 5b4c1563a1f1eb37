"""Fault-level detection scoring for scenarios: recall and precision against ground truth.

A fault counts as detected when an anomaly event for its machine has a time in
``[start, end + window]``; precision is the share of events that fall inside some
fault's interval of their machine (plus one window). Pure functions.

>>> faults = [FaultInterval("m1", "overheating", 10, 20)]
>>> r = score_events(faults, [EventTime("m1", 12), EventTime("m2", 15)], window_ns=5)
>>> (r.detected, r.recall, r.precision)
(1, 1.0, 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FaultInterval:
    machine: str
    kind: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class EventTime:
    machine: str
    t_ns: int


@dataclass(frozen=True, slots=True)
class FaultScore:
    faults: int
    detected: int
    events: int
    true_events: int
    recall: float
    precision: float
    missed: tuple[FaultInterval, ...] = ()
    false_events: tuple[EventTime, ...] = ()
    by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)


def score_events(
    faults: Sequence[FaultInterval], events: Sequence[EventTime], window_ns: int
) -> FaultScore:
    """Score ``events`` against ``faults``; see the module docstring for the rules."""

    def inside(f: FaultInterval, e: EventTime) -> bool:
        return e.machine == f.machine and f.start_ns <= e.t_ns <= f.end_ns + window_ns

    missed = tuple(f for f in faults if not any(inside(f, e) for e in events))
    false = tuple(e for e in events if not any(inside(f, e) for f in faults))
    detected = len(faults) - len(missed)
    true_events = len(events) - len(false)
    by_kind: dict[str, tuple[int, int]] = {}
    for f in faults:
        hit, total = by_kind.get(f.kind, (0, 0))
        by_kind[f.kind] = (hit + (f not in missed), total + 1)
    return FaultScore(
        faults=len(faults),
        detected=detected,
        events=len(events),
        true_events=true_events,
        recall=detected / len(faults) if faults else 1.0,
        precision=true_events / len(events) if events else 1.0,
        missed=missed,
        false_events=false,
        by_kind=by_kind,
    )

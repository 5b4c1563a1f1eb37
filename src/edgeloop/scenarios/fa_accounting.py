"""False alarms per hour and recall over phases of a run (the drift scenario's figures).

Pure: faults and events in, figures out. An event is a false alarm when no injected
fault of its machine explains it (``scenarios/scoring.py``: its window end within
``[start, end + one window]``). Rates are fleet-wide — false alarms of all the machines
counted, per hour of plant time —, over three phases:

* ``before``: from the end of the warm-up to the regime change;
* ``peak``: the worst ``window_s`` stretch (sliding by ``step_s``) between the regime
  change and the promotion of the retrained model;
* ``after``: from the promotion plus a settling time (the fleet converging) to the end.

``recall_after`` is the share of the faults that *start* in the ``after`` phase that were
detected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgeloop.scenarios.scoring import EventTime, FaultInterval, score_events

SEC = 1_000_000_000
HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class Phase:
    """A phase's false alarms: count over ``seconds``, and the rate per hour."""

    start_s: float
    end_s: float
    false_alarms: int

    @property
    def seconds(self) -> float:
        return max(self.end_s - self.start_s, 0.0)

    @property
    def per_hour(self) -> float | None:
        return self.false_alarms / self.seconds * HOUR_S if self.seconds > 0 else None


@dataclass(frozen=True, slots=True)
class Accounting:
    before: Phase
    peak: Phase | None
    after: Phase | None
    faults_after: int
    detected_after: int
    false_alarm_times_s: tuple[float, ...]

    @property
    def recall_after(self) -> float | None:
        return self.detected_after / self.faults_after if self.faults_after else None


def count_in(times: Sequence[float], start: float, end: float) -> int:
    return sum(1 for t in times if start <= t < end)


def account(
    faults: Sequence[FaultInterval],
    events: Sequence[EventTime],
    *,
    start_ns: int,
    warmup_s: float,
    change_s: float,
    promoted_s: float | None,
    end_s: float,
    settle_s: float = 5.0,
    window_s: float = 10.0,
    step_s: float = 1.0,
    event_window_ns: int = SEC,
) -> Accounting:
    """The phases' false alarms and the recall after promotion (times: plant seconds
    from ``start_ns``). Without a promotion, ``peak`` runs to the end and ``after`` is
    ``None``."""
    score = score_events(list(faults), list(events), window_ns=event_window_ns)
    fa = sorted((e.t_ns - start_ns) / SEC for e in score.false_events)
    before = Phase(warmup_s, change_s, count_in(fa, warmup_s, change_s))
    peak_end = promoted_s if promoted_s is not None else end_s
    peak: Phase | None = None
    t = change_s
    while t < peak_end:
        width = min(window_s, peak_end - t)
        if width < min(window_s, peak_end - change_s):
            break
        ph = Phase(t, t + width, count_in(fa, t, t + width))
        if peak is None or (ph.per_hour or 0.0) > (peak.per_hour or 0.0):
            peak = ph
        t += step_s
    after = None
    faults_after = detected_after = 0
    if promoted_s is not None and promoted_s + settle_s < end_s:
        a0 = promoted_s + settle_s
        after = Phase(a0, end_s, count_in(fa, a0, end_s))
        late = [f for f in faults if (f.start_ns - start_ns) / SEC >= a0]
        if late:
            s = score_events(late, list(events), window_ns=event_window_ns)
            faults_after, detected_after = s.faults, s.detected
    return Accounting(before, peak, after, faults_after, detected_after, tuple(fa))

"""Decide: turn detector scores into incidents, events and local actions. Pure logic.

Windows are scored one by one, but operators think in *incidents*: a machine is either
behaving or not. The :class:`Decider` keeps one small state per machine:

* an incident **opens** when a window of any of the machine's sensors scores at or above
  its detector threshold with enough confidence, or when a sensor of the machine falls
  silent for longer than ``stale_after_s`` (a dropout);
* while it is open, further anomalous windows extend it but raise nothing new (no alarm
  storm; the cloud sees one event per incident);
* it **closes** after ``clear_after_s`` of data time without an anomalous window, and
  never before the next window of the sensor that last extended it has ended: with 1 s
  windows and ``clear_after_s = 0.5``, a continuous alarm is one incident, not one per
  window. (A window's ``t1`` is its last sample: the next window of a tumbling group of
  ``n`` samples ends ``n / (n - 1)`` window spans later, at most two spans.)

Each opening yields one :class:`Decision`: the event to forward upstream and the
actions the first matching rule asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edgeloop.pipeline.types import Features, Scores
from edgeloop.telemetry.frame import Frame, SensorCatalog
from edgeloop.telemetry.records import Event, Severity


@dataclass(frozen=True, slots=True)
class Rule:
    """When an incident opens and matches, raise ``severity`` and fire ``actions``.

    Attributes:
        name: rule name (shown in events as ``rule:<name>`` when the rule is a check).
        groups: window groups the rule applies to (empty: all; ``"dropout"`` for silence).
        min_score: minimum score of the triggering window.
        severity: the event's severity.
        actions: names of registered local actions to fire.
        forward: send the event upstream (with its raw context).
    """

    name: str
    groups: tuple[str, ...] = ()
    min_score: float = 0.0
    severity: Severity = Severity.ANOMALY
    actions: tuple[str, ...] = ()
    forward: bool = True

    def matches(self, group: str, score: float) -> bool:
        return (not self.groups or group in self.groups) and score >= self.min_score


DEFAULT_RULES = (Rule(name="anomaly", actions=(), forward=True),)


@dataclass(frozen=True, slots=True)
class Decision:
    """One incident opening: the event and what to do about it."""

    event: Event
    actions: tuple[str, ...]
    forward: bool
    rule: str


@dataclass(slots=True)
class _MachineState:
    open: bool = False
    last_anomalous_ns: int = 0
    last_span_ns: int = 0  # t1 - t0 of the window(s) that last extended the incident
    incidents: int = 0
    groups: set[str] = field(default_factory=set)  # what raised or extended the open one

    def extend(self, t1_ns: int, span_ns: int) -> None:
        if t1_ns > self.last_anomalous_ns:
            self.last_anomalous_ns, self.last_span_ns = t1_ns, span_ns
        elif t1_ns == self.last_anomalous_ns:
            self.last_span_ns = max(self.last_span_ns, span_ns)


@dataclass(slots=True)
class Decider:
    """Machine-level incident logic over scored feature blocks.

    Args:
        node: the node id written into events.
        catalog: the node's sensors (gives each sensor's machine).
        rules: evaluated in order; the first match decides severity and actions.
        min_confidence: windows scored with lower confidence (detector warming up)
            never open an incident.
        clear_after_s: data time without anomalous windows before an incident closes.
        stale_after_s: silence after which a sensor that was seen counts as dropped out.
    """

    node: str
    catalog: SensorCatalog
    rules: Sequence[Rule] = DEFAULT_RULES
    min_confidence: float = 0.99
    clear_after_s: float = 2.0
    stale_after_s: float = 1.0
    _machine_of: npt.NDArray[np.int32] = field(init=False)
    _machines: list[str] = field(init=False)
    _state: list[_MachineState] = field(init=False)
    _last_seen: npt.NDArray[np.int64] = field(init=False)
    _stale: npt.NDArray[np.bool_] = field(init=False)

    def __post_init__(self) -> None:
        self._machine_of = self.catalog.machine_codes()
        self._machines = self.catalog.machines()
        self._state = [_MachineState() for _ in self._machines]
        self._last_seen = np.full(len(self.catalog), -1, dtype=np.int64)
        self._stale = np.zeros(len(self.catalog), dtype=np.bool_)

    # -- inputs -----------------------------------------------------------------
    def observe(self, frame: Frame, now_ns: int) -> None:
        """Note which sensors delivered data at ``now_ns`` (for dropout detection)."""
        if len(frame) == 0:
            return
        present = np.bincount(frame.sensor, minlength=len(self.catalog)) > 0
        self._last_seen[present] = now_ns
        self._stale[present] = False

    def decide(
        self,
        features: Sequence[Features],
        scores: Sequence[Scores],
        now_ns: int,
        housekeeping: bool = True,
    ) -> list[Decision]:
        """Open, extend and close incidents; return one decision per opened incident.

        ``housekeeping=False`` skips the silence check and the closing of quiet
        incidents (a node deciding group by group does them once per frame).
        """
        out: list[Decision] = []
        for feats, sc in zip(features, scores, strict=True):
            if len(feats) == 0:
                continue
            hot = (sc.score >= sc.threshold) & (sc.confidence >= self.min_confidence)
            if not hot.any():
                continue
            rows = np.flatnonzero(hot)
            machines = self._machine_of[feats.sensor[rows]]
            # Per machine, the row with the highest score explains the incident.
            order = np.lexsort((-sc.score[rows], machines))
            first = np.ones(order.shape[0], dtype=np.bool_)
            first[1:] = machines[order][1:] != machines[order][:-1]
            for r in rows[order[first]]:
                m = int(self._machine_of[feats.sensor[r]])
                if self._state[m].open:
                    continue
                decision = self._open(m, feats, sc, int(r), now_ns)
                if decision is not None:
                    out.append(decision)
            # Extend the incident of every hot machine (once, from all its hot rows).
            for m in np.unique(machines):
                mine = rows[machines == m]
                t1 = feats.t1_ns[mine]
                last = int(t1.max())
                span = int((t1 - feats.t0_ns[mine])[t1 == last].max())
                st = self._state[int(m)]
                st.extend(last, span)
                if st.open:
                    st.groups.add(feats.group)
        if housekeeping:
            out.extend(self._check_silence(now_ns))
            self._close_quiet(now_ns)
        return out

    # -- internals --------------------------------------------------------------
    def _rule_for(self, group: str, score: float) -> Rule | None:
        for rule in self.rules:
            if rule.matches(group, score):
                return rule
        return None

    def _open(self, m: int, feats: Features, sc: Scores, r: int, now_ns: int) -> Decision | None:
        score = float(sc.score[r])
        rule = self._rule_for(feats.group, score)
        if rule is None:
            return None
        st = self._state[m]
        st.open = True
        st.groups = {feats.group}
        st.incidents += 1
        top = int(sc.top_feature[r])
        sensor = self.catalog[int(feats.sensor[r])].name
        reason = f"{sc.detector} score {score:.2f} >= {sc.threshold:.2f}"
        if 0 <= top < len(feats.names):
            reason += f" (most deviant: {feats.names[top]})"
        event = Event(
            node=self.node,
            machine=self._machines[m],
            sensor=sensor,
            severity=rule.severity,
            t_start_ns=int(feats.t0_ns[r]),
            t_end_ns=int(feats.t1_ns[r]),
            detected_ns=now_ns,
            score=score,
            threshold=float(sc.threshold),
            detector=sc.detector,
            reason=reason,
            features={n: float(v) for n, v in zip(feats.names, feats.values[r], strict=True)},
        )
        return Decision(event, rule.actions, rule.forward, rule.name)

    def _check_silence(self, now_ns: int) -> list[Decision]:
        limit = now_ns - int(self.stale_after_s * 1e9)
        newly = (self._last_seen >= 0) & (self._last_seen < limit) & ~self._stale
        if not newly.any():
            return []
        self._stale |= newly
        out: list[Decision] = []
        for s in np.flatnonzero(newly):
            m = int(self._machine_of[s])
            st = self._state[m]
            st.last_anomalous_ns = max(st.last_anomalous_ns, now_ns)
            if st.open:
                st.groups.add("dropout")
                continue
            rule = self._rule_for("dropout", 1.0)
            if rule is None:
                continue
            st.open = True
            st.groups = {"dropout"}
            st.incidents += 1
            last = int(self._last_seen[s])
            event = Event(
                node=self.node,
                machine=self._machines[m],
                sensor=self.catalog[int(s)].name,
                severity=rule.severity,
                t_start_ns=last,
                t_end_ns=now_ns,
                detected_ns=now_ns,
                score=1.0,
                threshold=1.0,
                detector="rule:dropout",
                reason=f"no samples for {(now_ns - last) / 1e9:.1f} s "
                f"(limit {self.stale_after_s:g} s)",
            )
            out.append(Decision(event, rule.actions, rule.forward, rule.name))
        return out

    def _close_quiet(self, now_ns: int) -> None:
        quiet = int(self.clear_after_s * 1e9)
        for m, st in enumerate(self._state):
            if not st.open or now_ns - st.last_anomalous_ns < max(quiet, 2 * st.last_span_ns):
                continue
            # A machine with a silent sensor stays in its incident until data returns.
            if self._stale[self._machine_of == m].any():
                continue
            st.open = False

    @property
    def open_incidents(self) -> list[str]:
        return [self._machines[m] for m, st in enumerate(self._state) if st.open]

    def open_incidents_outside(self, group: str | None) -> list[str]:
        """Machines whose open incident was raised or extended by anything but
        ``group``'s windows (another window group, a dropout); ``None``: every open one.

        What the acting model's group flagged, its own scores already say row by row; a
        temperature alarm is what taints the machine's vibration windows too."""
        return [
            self._machines[m]
            for m, st in enumerate(self._state)
            if st.open and (group is None or st.groups - {group})
        ]

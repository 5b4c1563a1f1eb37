"""The node's sans-I/O core: validate → pipeline → decide → act → entries for the outbox.

:class:`NodeCore` takes frames and the current time and returns the outbox entries to
append. It never touches a socket or a file: the runtime (``node/runtime.py``) appends
the entries in a worker thread and runs the uplink. Local actions fire synchronously
inside :meth:`NodeCore.process`, before anything is written, so their latency is the
compute time of one frame.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeloop.errors import ConfigError
from edgeloop.node.actions import ActionRegistry
from edgeloop.node.config import NodeConfig
from edgeloop.node.context import PendingEvent, RecentFrames
from edgeloop.node.decide import Decider, Decision, Rule
from edgeloop.outbox.base import NewEntry, Priority
from edgeloop.pipeline.pipeline import Pipeline
from edgeloop.pipeline.types import Features, Scores
from edgeloop.telemetry import codec
from edgeloop.telemetry.frame import Frame, SensorCatalog
from edgeloop.telemetry.records import Event, Severity, SummaryBatch
from edgeloop.telemetry.validate import FrameValidator, RejectRecord


class NaiveJsonSize:
    """Bytes a frame would take as one JSON message per sample — the usual baseline.

    The message is ``{"sensor": name, "ts": ns, "value": v}`` (``json.dumps`` defaults).
    Sensor names and timestamps are counted exactly per sample (vectorized); the value's
    text is measured exactly on a few evenly spaced samples of each frame and scaled.
    Cheap enough to run on every frame, and kept off the path to local actions.
    """

    def __init__(self, names: list[str], value_samples: int = 16) -> None:
        frame = len(json.dumps({"sensor": "", "ts": 0, "value": 0.0})) - len("0") - len("0.0")
        self._per_sensor = np.array([frame + len(json.dumps(n)) - 2 for n in names], np.int64)
        self._k = value_samples

    def __call__(self, frame: Frame) -> int:
        n = len(frame)
        if n == 0:
            return 0
        per = int(np.bincount(frame.sensor, minlength=self._per_sensor.shape[0]) @ self._per_sensor)
        ts_digits = int(np.floor(np.log10(np.maximum(np.abs(frame.ts[[0, -1]]), 1))).max()) + 1
        idx = np.linspace(0, n - 1, num=min(self._k, n)).astype(np.intp)
        vals = sum(len(json.dumps(float(v))) for v in frame.value[idx])
        return per + n * ts_digits + round(vals * n / len(idx))


@dataclass(slots=True)
class NodeCounters:
    """Cumulative counters of a node; sent upstream as the batch status."""

    frames: int = 0
    samples_in: int = 0
    samples_accepted: int = 0
    windows: int = 0
    incidents: int = 0
    events_forwarded: int = 0
    summary_entries: int = 0
    bytes_naive: int = 0


class NodeCore:
    """One node's processing, independent of transport and storage.

    Args:
        config: the node configuration.
        catalog: sensors this node accepts.
        pipeline: the compiled pipeline (windows, features, detectors, summaries).
        actions: registry of local actions named by rules.
    """

    def __init__(
        self,
        config: NodeConfig,
        catalog: SensorCatalog,
        pipeline: Pipeline,
        actions: ActionRegistry | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.pipeline = pipeline
        self.actions = actions or ActionRegistry()
        d = config.decide
        rules = [
            Rule(
                name=r.name,
                groups=tuple(r.groups),
                min_score=r.min_score,
                severity=Severity(r.severity),
                actions=tuple(r.actions),
                forward=r.forward,
            )
            for r in d.rules
        ]
        missing = sorted({a for r in rules for a in r.actions} - set(self.actions.names()))
        if missing:
            raise ConfigError(
                f"decide.rules: unknown action(s) {missing}; registered: {self.actions.names()}"
            )
        self.decider = Decider(
            node=config.node_id,
            catalog=catalog,
            rules=rules,
            min_confidence=d.min_confidence,
            clear_after_s=d.clear_after_s,
            stale_after_s=d.stale_after_s,
        )
        self.validator = FrameValidator(catalog)
        # Enough history for the pre-trigger context of the longest window, and no more.
        self.recent = RecentFrames(keep_s=d.context_pre_s + d.context_post_s + 1.5)
        self._names = catalog.names()
        self._naive = NaiveJsonSize(self._names)
        self._machine_of = catalog.machine_codes()
        self._machine_index = {m: i for i, m in enumerate(catalog.machines())}
        self._pending: list[PendingEvent] = []
        self._summaries: list[SummaryBatch] = []
        self._next_summary_ns: int | None = None
        self._data_time_ns = 0
        # Data time through which every accepted sample is covered by the summary rows
        # of entries returned so far (None before the first): the resume point the
        # runtime records with them in the outbox (see edgeloop.outbox.base).
        self.resume_ns: int | None = None
        self.counters = NodeCounters()
        # The latest decisions, for inspection; bounded so a long-running node stays flat.
        self.decisions: deque[Decision] = deque(maxlen=1000)
        # Sees every scored block (features, combined scores); set by evaluations.
        self.score_sink: Callable[[Features, Scores], None] | None = None

    # -- processing ---------------------------------------------------------------
    def process(self, frame: Frame, now_ns: int, arrival_ns: int) -> list[NewEntry]:
        """Handle one frame; return the entries to append to the outbox.

        Args:
            frame: raw samples as received (validated here).
            now_ns: the node's wall clock (ns since the epoch).
            arrival_ns: ``time.perf_counter_ns()`` when the frame arrived; action
                latency is measured from it.
        """
        c = self.counters
        c.frames += 1
        c.samples_in += len(frame)
        valid = self.validator.process(frame, now_ns)
        c.samples_accepted += len(valid)
        # Detect and act first, group by group: local actions wait neither for the other
        # groups' detectors nor for the bookkeeping below.
        prepared, _, _ = self.pipeline.prepare(valid, now_ns, validated=True)
        self.decider.observe(valid, now_ns)
        decisions: list[Decision] = []
        n_windows = 0
        for feats, scores, _ in self.pipeline.detect_groups(prepared):
            n_windows += len(feats)
            if self.score_sink is not None:
                self.score_sink(feats, scores)
            opened = self.decider.decide([feats], [scores], now_ns, housekeeping=False)
            self._act(opened, arrival_ns)
            decisions.extend(opened)
        silent = self.decider.decide([], [], now_ns)
        self._act(silent, arrival_ns)
        decisions.extend(silent)
        # Bookkeeping.
        c.windows += n_windows
        c.incidents += len(decisions)
        for d in decisions:
            if d.forward:
                self._hold(d)
        self.decisions.extend(decisions)
        summaries = self.pipeline.summarise(prepared, now_ns)
        if summaries is not None and len(summaries):
            self._summaries.append(summaries)
        if len(valid):
            c.bytes_naive += self._naive(valid)
            self._data_time_ns = max(self._data_time_ns, int(valid.ts.max()))
        self.recent.add(valid)
        entries = self._due_events(self._data_time_ns, now_ns)
        if self._next_summary_ns is None:
            self._next_summary_ns = now_ns + int(self.config.summary_every_s * 1e9)
        elif now_ns >= self._next_summary_ns:
            entries.extend(self._summary_entry(now_ns))
            self._next_summary_ns = now_ns + int(self.config.summary_every_s * 1e9)
        return entries

    def reject(self, records: Sequence[RejectRecord]) -> None:
        """Count input rejected before it became a frame (CSV rows, pushed records)."""
        for r in records:
            self.validator.rejects[r.reason] += r.count
            self.validator.examples.append(r)

    def flush(self, now_ns: int) -> list[NewEntry]:
        """Emit everything held: open summary periods and pending events (at shutdown)."""
        final = self.pipeline.flush()
        if final is not None and len(final):
            self._summaries.append(final)
        entries = self._due_events(None, now_ns)
        entries.extend(self._summary_entry(now_ns))
        return entries

    def _act(self, decisions: list[Decision], arrival_ns: int) -> None:
        for d in decisions:
            for name in d.actions:
                self.actions.fire(name, d.event, arrival_ns)

    # -- status -----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Cumulative counters, safe to send repeatedly (the receiver replaces them)."""
        c = self.counters
        rejects = {str(k): int(v) for k, v in self.validator.rejects.items()}
        return {
            "frames": c.frames,
            "samples_in": c.samples_in,
            "samples_accepted": c.samples_accepted,
            "samples_rejected": rejects,
            "windows": c.windows,
            "incidents": c.incidents,
            "events_forwarded": c.events_forwarded,
            "summary_entries": c.summary_entries,
            "bytes_naive": c.bytes_naive,
            "actions": dict(self.actions.invocations),
            "action_latency_ms_p50": self.actions.latency.percentile_ms(50),
            "action_latency_ms_p99": self.actions.latency.percentile_ms(99),
            "open_incidents": self.decider.open_incidents,
        }

    # -- internals --------------------------------------------------------------
    def _hold(self, d: Decision) -> None:
        m = self._machine_index[d.event.machine]
        sensors = np.flatnonzero(self._machine_of == m).astype(np.uint32)
        due = d.event.t_end_ns + int(self.config.decide.context_post_s * 1e9)
        self._pending.append(PendingEvent(d.event, sensors, due))

    def _due_events(self, data_time_ns: int | None, now_ns: int) -> list[NewEntry]:
        if not self._pending:
            return []
        ready: list[PendingEvent] = []
        waiting: list[PendingEvent] = []
        for p in self._pending:
            (ready if data_time_ns is None or p.due_ns <= data_time_ns else waiting).append(p)
        if not ready:
            return []
        self._pending = waiting
        pre = int(self.config.decide.context_pre_s * 1e9)
        events: list[Event] = []
        for p in ready:
            raw = self.recent.window(p.sensors, p.event.t_start_ns - pre, p.due_ns)
            events.append(self._with_context(p.event, raw))
        anon = self.pipeline.anonymiser
        if anon is not None:  # local actions saw real names; upstream sees these
            events = [anon.event(e) for e in events]
        self.counters.events_forwarded += len(events)
        alarms = [e for e in events if e.severity == Severity.ALARM]
        anomalies = [e for e in events if e.severity != Severity.ALARM]
        out = []
        for group, prio in ((alarms, Priority.ALARM), (anomalies, Priority.EVENT)):
            if group:
                out.append(NewEntry(prio, "events", codec.encode_events(group), 0, now_ns))
        return out

    def _with_context(self, event: Event, raw: Frame) -> Event:
        if len(raw) == 0:
            return event
        present = np.unique(raw.sensor)
        remap = np.zeros(len(self.catalog), dtype=np.uint32)
        remap[present] = np.arange(present.shape[0], dtype=np.uint32)
        local = Frame(remap[raw.sensor], raw.ts, raw.value)
        names = tuple(self._names[int(s)] for s in present)
        return Event(
            node=event.node,
            machine=event.machine,
            sensor=event.sensor,
            severity=event.severity,
            t_start_ns=event.t_start_ns,
            t_end_ns=event.t_end_ns,
            detected_ns=event.detected_ns,
            score=event.score,
            threshold=event.threshold,
            detector=event.detector,
            reason=event.reason,
            features=event.features,
            raw=local,
            raw_sensors=names,
        )

    def _summary_entry(self, now_ns: int) -> list[NewEntry]:
        if not self._summaries:
            return []
        batch = SummaryBatch.concat(self._summaries)
        self._summaries = []
        if len(batch):
            # Periods close together for every sensor, so the latest period end in the
            # entry bounds what is covered (summaries cover every sample exactly once).
            covered = int(batch.t1_ns.max())
            self.resume_ns = covered if self.resume_ns is None else max(self.resume_ns, covered)
        if self.pipeline.anonymiser is not None:
            batch = self.pipeline.anonymiser.summary(batch)
        self.counters.summary_entries += 1
        payload = codec.encode_summaries(batch)
        return [NewEntry(Priority.SUMMARY, "summaries", payload, batch.samples, now_ns)]

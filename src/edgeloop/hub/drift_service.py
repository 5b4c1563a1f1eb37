"""The hub's drift service: judge each period's sketches, keep streaks, trigger retraining.

Nodes send one ``sketch`` document per period (:mod:`edgeloop.drift.document`): the
sketch of their acting model's features on the edges of that model's reference. Ingest
stores them in ``node_documents``; this service judges them by *hub period*: a sketch
belongs to the period that holds its midpoint (gateways close their periods on multiples
of their period, so with the same period each node's sketch falls in one hub period; a
shorter partial period, at a model swap or a shutdown, joins the one it lies in). A period is judged once ``grace_s`` has passed after its end, on a timer
(:class:`~edgeloop.hub.drift_ticker.DriftTicker`, ``hub serve --drift-tick-s``), when sketches arrive, or by hand
(``POST /v1/drift/judge``):

1. read the period's sketches back from ``node_documents``; refuse (count, log, name
   the field) those whose model version is unknown or has no reference, or whose names,
   bins or edges differ from the reference (``sketch.layout``); merge each node's;
2. per model version present: :func:`edgeloop.drift.assess` against that version's
   reference, :func:`edgeloop.drift.update` of that version's streaks;
3. in one transaction: the assessments per scope (``drift_assessments``), the streaks
   and the last judged period (``drift_state``), the triggers (``drift_triggers``).

Triggers are then handed to the callbacks registered with :meth:`DriftService.on_trigger`
(a trigger is claimed before its callbacks run, so two hub replicas never both deliver
it; one committed by a hub that died before delivering is delivered by the next call).
Everything is in the database, so a restarted hub resumes with the same streaks, never
judges a period twice (a period at or before the last one is skipped) and never loses a
trigger. Periods are judged under the control-plane lock (one writer across replicas).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, insert, select, update

from edgeloop.drift import (
    FLEET,
    DriftAssessment,
    DriftConfig,
    MonitorState,
    RetrainTrigger,
    Sketch,
    SketchError,
    assess,
    merge_all,
)
from edgeloop.drift import update as advance
from edgeloop.drift.document import KIND_SKETCH, parse_sketch_document
from edgeloop.errors import ConfigError, EdgeloopError
from edgeloop.hub import drift_tables as dt
from edgeloop.hub import queries
from edgeloop.hub.documents import Document
from edgeloop.hub.drift_records import (
    DriftMetrics,
    assessment_rows,
    state_to_json,
    states_from_json,
    trigger_of,
)
from edgeloop.hub.model_store import control, reading
from edgeloop.hub.store import HubStore

log = logging.getLogger("edgeloop.hub.drift")

References = Callable[[str], Sketch | None]
"""Model version → its drift reference sketch (``None``: unknown or none)."""

_STATE = "monitor"
SPAN = 4
"""Sketches are looked up by end time up to this many periods after the judged ones."""


@dataclass(frozen=True, slots=True)
class Judged:
    """One judged (period, model version): the assessment and the triggers it fired."""

    version: str
    assessment: DriftAssessment
    triggers: tuple[RetrainTrigger, ...]


def registry_references(registry: Callable[[], Any]) -> References:
    """References from the hub's model registry (``ControlPlane.registry``): the
    manifest's ``drift_reference`` of a version (``None``: unknown version)."""

    def lookup(version: str) -> Sketch | None:
        try:
            ref: Sketch | None = registry().resolve(version).manifest.drift_reference
        except EdgeloopError:
            return None
        return ref

    return lookup


class DriftService:
    """Judges drift per period (see the module docstring).

    Args:
        store: the hub store (schema upgraded).
        references: model version → reference sketch (the manifest's ``drift_reference``).
        config: thresholds and persistence.
        period_s: the hub's period; ``grace_s`` after its end a period is judged
            (default: a quarter of the period).
        clock: hub clock in ns.
        registry: where the Prometheus instruments register (a fresh one by default).
        lookback_periods: on a first start (no state in the database), how many past
            periods are judged (older sketches are history, not a reason to retrain now).
    """

    def __init__(
        self,
        store: HubStore,
        references: References,
        config: DriftConfig | None = None,
        *,
        period_s: float = 60.0,
        grace_s: float | None = None,
        clock: Callable[[], int] = time.time_ns,
        registry: CollectorRegistry | None = None,
        lookback_periods: int = 10,
    ) -> None:
        if not period_s > 0:
            raise ConfigError(f"drift.period_s: must be > 0, got {period_s}")
        grace = period_s / 4 if grace_s is None else grace_s
        if not grace >= 0:
            raise ConfigError(f"drift.grace_s: must be >= 0, got {grace_s}")
        self.store = store
        self.references = references
        self.config = config or DriftConfig()
        self.period_ns = round(period_s * 1e9)
        self.grace_ns = round(grace * 1e9)
        self.clock = clock
        self.lookback = lookback_periods
        self.metrics = DriftMetrics(registry or CollectorRegistry(auto_describe=True))
        self.rejected: Counter[str] = Counter()
        self.late = 0
        self._callbacks: list[Callable[[RetrainTrigger], None]] = []
        self._refs: dict[str, Sketch] = {}
        self._last_period: int | None = None
        self._deliver = threading.Lock()
        self._judging = threading.Lock()  # the ticker and ingest threads: one at a time

    # -- wiring ------------------------------------------------------------------------------
    def on_trigger(self, callback: Callable[[RetrainTrigger], None]) -> None:
        """Call ``callback(trigger)`` for every trigger emitted (once per trigger)."""
        self._callbacks.append(callback)

    def period_of(self, start_ns: int, end_ns: int) -> int:
        """The hub period a sketch of ``[start_ns, end_ns]`` belongs to (its midpoint's)."""
        return (start_ns + (end_ns - start_ns) // 2) // self.period_ns

    def reference(self, version: str) -> Sketch | None:
        """The reference of ``version`` (cached once found: manifests never change)."""
        ref = self._refs.get(version)
        if ref is None:
            try:
                ref = self.references(version)
            except (KeyError, EdgeloopError):
                ref = None
            if ref is not None:  # an unknown version may be registered later
                self._refs[version] = ref
        return ref

    def observe_documents(self, node: str, documents: Sequence[Document]) -> None:
        """Ingest observer of ``sketch`` documents: count the ones that arrive after
        their period was judged, then judge the periods that are due."""
        for d in documents:
            start, end = d.body.get("period_start_ns"), d.body.get("period_end_ns")
            last = self._last_period
            if (
                isinstance(start, int)
                and isinstance(end, int)
                and last is not None
                and self.period_of(start, end) <= last
            ):
                self.late += 1
                self.metrics.sketches.labels("late").inc()
        self.judge_due(deliver=False)

    # -- judging -----------------------------------------------------------------------------
    def judge_due(self, now_ns: int | None = None, *, deliver: bool = True) -> list[Judged]:
        """Judge every period that is due and not judged yet; then (``deliver``) hand the
        undelivered triggers to the callbacks. Returns what was judged."""
        now = self.clock() if now_ns is None else now_ns
        due = (now - self.grace_ns) // self.period_ns - 1
        with self._judging:
            if self._last_period is not None and due <= self._last_period:
                judged: list[Judged] = []
            else:
                judged = self._judge(due, now)
        if deliver:
            self.deliver_pending()
        return judged

    def _state(self, conn: Connection) -> tuple[int | None, dict[str, MonitorState]]:
        row = conn.execute(
            select(dt.drift_state.c.last_period, dt.drift_state.c.state).where(
                dt.drift_state.c.name == _STATE
            )
        ).first()
        if row is None:
            return None, {}
        return int(row.last_period), states_from_json(row.state)

    def _judge(self, due: int, now: int) -> list[Judged]:
        # Read and check the sketches first (the registry is read on its own connection),
        # then judge and write under the control-plane lock, if nobody judged meanwhile.
        with reading(self.store) as conn:
            last, _ = self._state(conn)
            first = (last + 1) if last is not None else due - self.lookback + 1
            if first > due:
                self._last_period = last
                return []
            # By end time (indexed); a sketch's midpoint is before its end, and one
            # ending much later than its midpoint's period is a long one: SPAN periods.
            docs = queries.documents(
                conn,
                KIND_SKETCH,
                None,
                first * self.period_ns,
                (due + 1 + SPAN) * self.period_ns,
                1_000_000,
            )
        by_period = self._group(docs, first, due)
        with control(self.store) as conn:
            again, states = self._state(conn)
            if again != last:  # another hub replica judged these periods
                self._last_period = again
                return []
            judged: list[Judged] = []
            for p in sorted(by_period):
                for version, (ref, nodes, scores) in sorted(by_period[p].items()):
                    a = assess(ref, nodes, p, self.config)
                    state, fired = advance(states.get(version, MonitorState()), a)
                    states[version] = state
                    self._write(conn, version, a, state, scores, fired, now)
                    judged.append(Judged(version, a, fired))
            values = {"versions": {v: state_to_json(s) for v, s in states.items()}}
            if last is None:
                conn.execute(
                    insert(dt.drift_state).values(
                        name=_STATE, last_period=due, state=values, updated_ns=now
                    )
                )
            else:
                conn.execute(
                    update(dt.drift_state)
                    .where(dt.drift_state.c.name == _STATE)
                    .values(last_period=due, state=values, updated_ns=now)
                )
        self._last_period = due
        for j in judged:
            self._gauges(j, states[j.version])
        return judged

    def _group(
        self, docs: Sequence[Any], first: int, due: int
    ) -> dict[int, dict[str, tuple[Sketch, dict[str, Sketch], dict[str, Sketch]]]]:
        """Period → version → (reference, node → merged sketch, node → score sketch)."""
        parts: dict[tuple[int, str, str], list[tuple[Sketch, Sketch | None]]] = defaultdict(list)
        refs: dict[str, Sketch] = {}
        for d in docs:
            start, end = d.body.get("period_start_ns"), d.body.get("period_end_ns")
            if (
                isinstance(start, int)
                and isinstance(end, int)
                and not first <= self.period_of(start, end) <= due
            ):
                continue  # another period's (judged already, or not due yet)
            try:
                doc = parse_sketch_document(d.body)
                if doc.node != d.node:
                    raise SketchError(f"sketch.node: {doc.node!r} sent by node {d.node!r}")
                ref = self.reference(doc.version)
                if ref is None:
                    raise SketchError(
                        f"sketch.version: model {doc.version!r} is unknown or has no "
                        "drift reference"
                    )
                feats = doc.features(ref)
            except SketchError as exc:
                field = str(exc).split(":", 1)[0]
                self.rejected[field] += 1
                self.metrics.sketches.labels(f"refused:{field}").inc()
                log.warning("sketch of node %s (seq %d) refused: %s", d.node, d.seq, exc)
                continue
            self.metrics.sketches.labels("accepted").inc()
            refs[doc.version] = ref
            parts[
                (self.period_of(doc.period_start_ns, doc.period_end_ns), doc.version, d.node)
            ].append((feats, doc.scores))
        out: dict[int, dict[str, tuple[Sketch, dict[str, Sketch], dict[str, Sketch]]]] = {}
        for (p, version, node), items in parts.items():
            entry = out.setdefault(p, {}).setdefault(version, (refs[version], {}, {}))
            entry[1][node] = merge_all(f for f, _ in items)
            score_parts = [s for _, s in items if s is not None]
            if score_parts:
                entry[2][node] = merge_all(score_parts)
        return out

    def _write(
        self,
        conn: Connection,
        version: str,
        a: DriftAssessment,
        state: MonitorState,
        scores: Mapping[str, Sketch],
        fired: Sequence[RetrainTrigger],
        now: int,
    ) -> None:
        rows = assessment_rows(version, a, state, scores, now)
        conn.execute(insert(dt.drift_assessments), rows)
        for t in fired:
            conn.execute(
                insert(dt.drift_triggers).values(
                    version=version,
                    period=t.period,
                    scope=t.scope,
                    streak=t.streak,
                    features=list(t.features),
                    values=dict(t.values),
                    reason=f"model {version}: {t.reason}",
                    at_ns=now,
                    delivered_ns=None,
                )
            )
            self.metrics.triggers.inc()
            log.warning("drift: retrain triggered for model %s: %s", version, t.reason)

    def _gauges(self, j: Judged, state: MonitorState) -> None:
        a, m = j.assessment, self.metrics
        for name, value in a.values(FLEET).items():
            m.value.labels(j.version, name).set(value)
        for scope in (*a.nodes, FLEET):
            m.drifted.labels(j.version, scope).set(len(a.drifted_features(scope)))
            m.streak.labels(j.version, scope).set(state.streaks.get(scope, 0))

    # -- triggers ----------------------------------------------------------------------------
    def deliver_pending(self) -> int:
        """Hand every undelivered trigger to the callbacks (none registered: they wait).
        Returns how many were delivered here."""
        if not self._callbacks:
            return 0
        delivered = 0
        with self._deliver:
            with reading(self.store) as conn:
                ids = [
                    int(r.id)
                    for r in conn.execute(
                        select(dt.drift_triggers.c.id)
                        .where(dt.drift_triggers.c.delivered_ns.is_(None))
                        .order_by(dt.drift_triggers.c.id)
                    )
                ]
            for tid in ids:
                with control(self.store) as conn:  # claim it: one replica delivers
                    claimed = conn.execute(
                        update(dt.drift_triggers)
                        .where(dt.drift_triggers.c.id == tid)
                        .where(dt.drift_triggers.c.delivered_ns.is_(None))
                        .values(delivered_ns=self.clock())
                    ).rowcount
                    r = (
                        conn.execute(select(dt.drift_triggers).where(dt.drift_triggers.c.id == tid))
                        .one()
                        ._mapping
                    )
                if claimed != 1:
                    continue
                trigger = trigger_of(r)
                for cb in self._callbacks:
                    try:
                        cb(trigger)
                    except Exception:  # one failing callback does not stop the others
                        log.exception("drift trigger callback failed (trigger %d)", tid)
                delivered += 1
        return delivered

    # -- reading -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The latest judgement per (model version, scope), streaks and the last trigger
        (what ``GET /v1/drift`` answers)."""
        from edgeloop.hub.drift_status import status

        return status(self)

    def history(
        self, scope: str | None = None, version: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Judged periods, newest first (``GET /v1/drift/history``)."""
        from edgeloop.hub.drift_status import history

        return history(self, scope, version, limit)


__all__ = [
    "DriftService",
    "Judged",
    "References",
    "registry_references",
]

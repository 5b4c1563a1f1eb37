"""The rollout state machine: pure, deterministic, time passed in.

Transition table (one :class:`Rollout` per challenger)::

    state      event                                   next       decision
    ---------  --------------------------------------  ---------  ----------------------
    (none)     start(champion, challenger, fleet)      stage 0    start
    stage i    tick: evidence complete, gates pass,    stage i+1  step
               i is not the last stage
    stage i    tick: evidence complete, gates pass,    promoted   promote
               i is the last stage
    stage i    tick: a gate fails (errors at once      rolled     rollback
               when no error is allowed)               back
    stage i    tick: stage_timeout_s passed without    rolled     rollback
               enough evidence                         back
    stage i    observe(measurement)                    stage i    (evidence added, or
                                                                   the report ignored)

Stages come from :meth:`RolloutPolicy.stages` (shadow, canary, steps). A stage's cohort
is the first online nodes of the seeded :func:`~edgeloop.rollout.cohort.rollout_order`,
at most ``floor(fraction * fleet size)`` of them, grown from the previous acting cohort
(the shadow cohort is separate: shadowing is not acting). :func:`desired` maps the state
to each node's models (:class:`NodeModels`): in a shadow stage the cohort acts on the
champion and runs the challenger in shadow; in an acting stage the cohort acts on the
challenger with the champion in shadow (so agreement is still measured); everyone else,
including nodes that are offline, stays on the champion until the final decision, which
then applies to every node.

Guarantees (property-tested): the nodes acting on the challenger never exceed the
current stage's share of the fleet, hence never the canary share until the canary's
gates have passed; after a rollback no node's desired state names the challenger; the
same inputs give the same decisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from edgeloop.errors import ConfigError
from edgeloop.rollout.cohort import Fleet, cohort_size, grow_cohort, rollout_order
from edgeloop.rollout.policy import (
    EdgeMeasurement,
    GateResult,
    Mode,
    RolloutPolicy,
    Stage,
    Tally,
    evaluate,
    missing_evidence,
)

Outcome = Literal["running", "promoted", "rolled_back"]
DecisionKind = Literal["start", "step", "promote", "rollback"]


class RolloutError(ConfigError):
    """A rollout cannot start as asked (names what is missing)."""


@dataclass(frozen=True, slots=True)
class NodeModels:
    """The models a node should run: one acting, optionally one in shadow."""

    act: str
    shadow: str | None = None

    def mode_of(self, version: str) -> Mode | None:
        """``"act"``, ``"shadow"`` or ``None`` for ``version`` on this node."""
        if version == self.act:
            return "act"
        return "shadow" if version == self.shadow else None


@dataclass(frozen=True, slots=True)
class Decision:
    """A rollout decision, with the reason and the figures behind it.

    Attributes:
        kind: ``start``, ``step``, ``promote`` or ``rollback``.
        at_ns: when it was taken.
        stage: the stage entered (start, step) or judged (promote, rollback).
        fraction: the fleet share of the stage entered (promote: 1, rollback: 0).
        nodes: the nodes running the challenger after the decision.
        reason: why, in words.
        gates: the gate verdicts it rests on.
        evidence: the stage's evidence figures (:meth:`Tally.summary`).
    """

    kind: DecisionKind
    at_ns: int
    stage: str
    fraction: float
    nodes: tuple[str, ...]
    reason: str
    gates: tuple[GateResult, ...] = ()
    evidence: Mapping[str, float | int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for the deployment record)."""
        return {
            "decision": self.kind,
            "at_ns": self.at_ns,
            "stage": self.stage,
            "fraction": self.fraction,
            "nodes": list(self.nodes),
            "reason": self.reason,
            "gates": [
                {"gate": g.gate, "value": g.value, "limit": g.limit, "passed": g.passed}
                for g in self.gates
            ],
            "evidence": dict(self.evidence or {}),
        }


@dataclass(frozen=True, slots=True)
class Rollout:
    """The state of one rollout (see the module docstring).

    Attributes:
        champion, challenger: the two versions.
        policy: the policy.
        order: the seeded order nodes join in.
        stage: index into ``policy.stages()`` of the current (or last) stage.
        cohort: nodes running the challenger in the current stage.
        stage_started_ns: when the current stage began.
        tally: the current stage's evidence.
        seen: (node, period_end_ns) of the measurements counted in this stage.
        outcome: ``running``, ``promoted`` or ``rolled_back``.
        decisions: every decision so far.
        ignored: measurements not counted (other version or node, before the stage,
            repeated).
        peak_acting: the most nodes that ever acted on the challenger before promotion.
        fleet_size: fleet size when the current stage began.
    """

    champion: str
    challenger: str
    policy: RolloutPolicy
    order: tuple[str, ...]
    stage: int
    cohort: tuple[str, ...]
    stage_started_ns: int
    tally: Tally
    seen: frozenset[tuple[str, int]]
    outcome: Outcome
    decisions: tuple[Decision, ...]
    ignored: int = 0
    peak_acting: int = 0
    fleet_size: int = 0

    @property
    def current(self) -> Stage:
        """The current (or, when finished, the last judged) stage."""
        return self.policy.stages()[self.stage]

    @property
    def acting(self) -> tuple[str, ...]:
        """Nodes whose desired state acts on the challenger now (running rollouts)."""
        if self.outcome == "running" and self.current.mode == "act":
            return self.cohort
        return ()


def start(
    champion: str, challenger: str, fleet: Fleet, policy: RolloutPolicy, now_ns: int
) -> tuple[Rollout, tuple[Decision, ...]]:
    """Begin rolling ``challenger`` out over ``fleet``.

    Raises:
        RolloutError: the two versions are the same, the fleet is empty, a stage's share
            of the fleet is less than one node, or no node is online.
    """
    if champion == challenger:
        raise RolloutError(f"challenger: {challenger!r} is already the champion")
    n = len(fleet)
    if n == 0:
        raise RolloutError("fleet: no nodes to roll out to")
    for s in policy.stages():
        if cohort_size(s.fraction, n) < 1:
            raise RolloutError(
                f"rollout: stage {s.name} would hold {s.fraction} of {n} nodes, less than "
                "one node; raise its fraction or roll out to a larger fleet"
            )
    order = rollout_order(fleet, policy.seed)
    first = policy.stages()[0]
    cohort = grow_cohort((), order, fleet.online, cohort_size(first.fraction, n))
    if not cohort:
        raise RolloutError(f"fleet: none of the {n} nodes is online")
    decision = Decision(
        "start",
        now_ns,
        first.name,
        first.fraction,
        cohort,
        f"rolling out {challenger} against {champion}: {first.name} on {len(cohort)} of {n} nodes",
    )
    r = Rollout(
        champion=champion,
        challenger=challenger,
        policy=policy,
        order=order,
        stage=0,
        cohort=cohort,
        stage_started_ns=now_ns,
        tally=Tally(),
        seen=frozenset(),
        outcome="running",
        decisions=(decision,),
        peak_acting=len(cohort) if first.mode == "act" else 0,
        fleet_size=n,
    )
    return r, (decision,)


def observe(r: Rollout, m: EdgeMeasurement) -> Rollout:
    """Count a measurement as evidence of the current stage, or ignore it.

    Ignored (and counted in ``ignored``): the rollout is over, the report is about
    another version, from a node outside the cohort, from a period that began before
    the stage, or repeats a (node, period end) already counted.
    """
    key = (m.node, m.period_end_ns)
    if (
        r.outcome != "running"
        or m.version != r.challenger
        or m.node not in r.cohort
        or m.period_start_ns < r.stage_started_ns
        or key in r.seen
    ):
        return replace(r, ignored=r.ignored + 1)
    return replace(r, tally=r.tally.add(m), seen=r.seen | {key})


def tick(r: Rollout, fleet: Fleet, now_ns: int) -> tuple[Rollout, tuple[Decision, ...]]:
    """Judge the current stage at ``now_ns``; return the new state and any decision."""
    if r.outcome != "running":
        return r, ()
    policy, stage = r.policy, r.current
    gates = policy.gates
    elapsed = (now_ns - r.stage_started_ns) / 1e9
    evidence = r.tally.summary()
    if gates.max_error_rate == 0 and r.tally.errors > 0:
        results = evaluate(r.tally, gates)
        return _finish(r, now_ns, "rollback", f"{stage.name}: challenger errors", results)
    lacks = missing_evidence(r.tally, policy.evidence, len(r.cohort), elapsed)
    if lacks:
        if policy.stage_timeout_s is not None and elapsed >= policy.stage_timeout_s:
            return _finish(
                r,
                now_ns,
                "rollback",
                f"{stage.name}: not enough evidence after {elapsed:g} s ({', '.join(lacks)})",
                (),
            )
        return r, ()
    results = evaluate(r.tally, gates)
    failed = [g for g in results if not g.passed]
    if failed:
        why = "; ".join(str(g) for g in failed)
        return _finish(r, now_ns, "rollback", f"{stage.name}: {why}", results)
    stages = policy.stages()
    if r.stage + 1 == len(stages):
        return _finish(r, now_ns, "promote", f"{stage.name}: all gates passed", results)

    nxt = stages[r.stage + 1]
    n = len(fleet)
    keep = r.cohort if stage.mode == "act" else ()
    cohort = grow_cohort(keep, r.order, fleet.online, cohort_size(nxt.fraction, n))
    d = Decision(
        "step",
        now_ns,
        nxt.name,
        nxt.fraction,
        cohort,
        f"{stage.name}: all gates passed; {nxt.name} on {len(cohort)} of {n} nodes",
        results,
        evidence,
    )
    new = replace(
        r,
        stage=r.stage + 1,
        cohort=cohort,
        stage_started_ns=now_ns,
        tally=Tally(),
        seen=frozenset(),
        decisions=(*r.decisions, d),
        peak_acting=max(r.peak_acting, len(cohort)),
        fleet_size=n,
    )
    return new, (d,)


def _finish(
    r: Rollout,
    now_ns: int,
    kind: Literal["promote", "rollback"],
    reason: str,
    results: tuple[GateResult, ...],
) -> tuple[Rollout, tuple[Decision, ...]]:
    promoted = kind == "promote"
    d = Decision(
        kind,
        now_ns,
        r.current.name,
        1.0 if promoted else 0.0,
        r.order if promoted else (),
        reason,
        results,
        r.tally.summary(),
    )
    outcome: Outcome = "promoted" if promoted else "rolled_back"
    return replace(r, outcome=outcome, decisions=(*r.decisions, d)), (d,)


def desired(r: Rollout, fleet: Fleet) -> dict[str, NodeModels]:
    """Each fleet node's models under rollout ``r`` (see the module docstring)."""
    if r.outcome == "promoted":
        return {n: NodeModels(r.challenger) for n in fleet.ids}
    if r.outcome == "rolled_back":
        return {n: NodeModels(r.champion) for n in fleet.ids}
    cohort = set(r.cohort)
    if r.current.mode == "shadow":
        inside = NodeModels(r.champion, shadow=r.challenger)
    else:
        inside = NodeModels(r.challenger, shadow=r.champion)
    base = NodeModels(r.champion)
    return {n: inside if n in cohort else base for n in fleet.ids}

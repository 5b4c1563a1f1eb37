"""The rollout state machine: transitions, reasons, and its guarantees as properties."""

from __future__ import annotations

import doctest
import importlib
import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeloop.errors import ConfigError
from edgeloop.rollout import (
    EdgeMeasurement,
    Evidence,
    Fleet,
    Gates,
    NodeModels,
    Rollout,
    RolloutError,
    RolloutPolicy,
    cohort_size,
    desired,
    observe,
    restore,
    rollout_order,
    snapshot,
    start,
    tick,
)

S = 1_000_000_000
T0 = 1_764_000_000 * S
POLICY = RolloutPolicy(
    canary_fraction=0.2,
    steps=(0.5,),
    shadow_fraction=1.0,
    evidence=Evidence(min_windows=200, min_nodes=2),
)


def fleet(n: int = 10, groups: int = 2, offline: tuple[str, ...] = ()) -> Fleet:
    return Fleet.of((f"n{i:02d}", f"g{i % groups}", f"n{i:02d}" not in offline) for i in range(n))


def report(
    node: str,
    t: int,
    version: str = "v2",
    *,
    bad: bool = False,
    errors: int = 0,
    latency: float = 2.0,
    windows: int = 100,
) -> EdgeMeasurement:
    ch = windows if bad else 1
    return EdgeMeasurement(
        node,
        version,
        t - 10 * S,
        t,
        windows,
        ch,
        1,
        windows - abs(ch - 1),
        score_shift=0.6 if bad else 0.05,
        latency_p99_ms=latency,
        errors=errors,
    )


def drive(r: Rollout, f: Fleet, t: int, **kw: object) -> tuple[Rollout, int]:
    """One period: every cohort node that is online reports, then the hub ticks."""
    t += 10 * S
    for node in r.cohort:
        if node in f.online:
            r = observe(r, report(node, t, **kw))  # type: ignore[arg-type]
    r, _ = tick(r, f, t)
    return r, t


def test_doctests() -> None:
    for name in ("edgeloop.rollout.cohort", "edgeloop.rollout.comparison"):
        result = doctest.testmod(importlib.import_module(name))
        assert result.attempted > 0 and result.failed == 0


def test_a_good_challenger_goes_shadow_canary_step_promote() -> None:
    f = fleet()
    r, (d,) = start("v1", "v2", f, POLICY, T0)
    assert (d.kind, d.stage, len(d.nodes)) == ("start", "shadow", 10)
    assert set(desired(r, f).values()) == {NodeModels("v1", shadow="v2")}
    t = T0
    kinds = []
    for _ in range(10):
        before = len(r.decisions)
        r, t = drive(r, f, t)
        kinds += [x.kind + ":" + x.stage for x in r.decisions[before:]]
    assert kinds == ["step:canary", "step:step-1", "promote:step-1"]
    assert r.outcome == "promoted"
    assert set(desired(r, f).values()) == {NodeModels("v2")}
    canary = r.decisions[1]
    assert len(canary.nodes) == 2 and canary.reason.startswith("shadow: all gates passed")
    assert [g.gate for g in canary.gates] == [
        "alert_ratio",
        "agreement",
        "score_shift",
        "latency_p99_ms",
        "error_rate",
    ]
    assert len(r.decisions[2].nodes) == 5 and set(canary.nodes) <= set(r.decisions[2].nodes)
    assert r.peak_acting == 5


def test_a_model_that_alerts_on_everything_is_rolled_back_in_shadow() -> None:
    f = fleet()
    r, _ = start("v1", "v2", f, POLICY, T0)
    r, t = drive(r, f, T0, bad=True)
    r, t = drive(r, f, t, bad=True)
    assert r.outcome == "rolled_back" and r.peak_acting == 0
    d = r.decisions[-1]
    assert d.kind == "rollback" and "alert_ratio" in d.reason and "FAILED" in d.reason
    assert set(desired(r, f).values()) == {NodeModels("v1")}


def test_without_shadow_a_bad_model_reaches_only_the_canary() -> None:
    f = fleet(20, groups=4)
    policy = RolloutPolicy(
        canary_fraction=0.1, steps=(0.5,), shadow_fraction=0.0, evidence=Evidence(min_windows=100)
    )
    r, (d,) = start("v1", "v2", f, policy, T0)
    assert (d.stage, len(d.nodes)) == ("canary", 2)
    assert len({f.group_of(n) for n in d.nodes}) == 2  # spread over groups
    acting = [n for n, m in desired(r, f).items() if m.act == "v2"]
    assert sorted(acting) == sorted(d.nodes)
    assert all(desired(r, f)[n] == NodeModels("v2", shadow="v1") for n in acting)
    r, _ = drive(r, f, T0, bad=True)
    assert r.outcome == "rolled_back" and r.peak_acting == 2


def test_errors_roll_back_at_once_and_slow_models_fail_the_latency_gate() -> None:
    f = fleet()
    r, _ = start("v1", "v2", f, POLICY, T0)
    r = observe(r, report(r.cohort[0], T0 + 10 * S, windows=5, errors=1))
    r, (d,) = tick(r, f, T0 + 10 * S)
    assert d.kind == "rollback" and d.reason == "shadow: challenger errors"
    r, _ = start("v1", "v2", f, POLICY, T0)
    r, _ = drive(r, f, T0, latency=25.0)
    assert r.outcome == "rolled_back"
    assert "latency_p99_ms 25 (limit <= 10) FAILED" in r.decisions[-1].reason


def test_missing_evidence_waits_then_times_out() -> None:
    f = fleet()
    policy = RolloutPolicy(
        canary_fraction=0.2, evidence=Evidence(min_windows=10_000), stage_timeout_s=60.0
    )
    r, _ = start("v1", "v2", f, policy, T0)
    r, _ = drive(r, f, T0)
    assert r.outcome == "running" and len(r.decisions) == 1
    r, (d,) = tick(r, f, T0 + 61 * S)
    assert d.kind == "rollback"
    assert "not enough evidence after 61 s (windows 1000 < 10000)" in d.reason


def test_min_duration_and_min_nodes_hold_the_gate() -> None:
    f = fleet()
    policy = RolloutPolicy(
        canary_fraction=0.2,
        shadow_fraction=0.0,
        evidence=Evidence(min_windows=100, min_nodes=2, min_duration_s=30),
    )
    r, _ = start("v1", "v2", f, policy, T0)
    r = observe(r, report(r.cohort[0], T0 + 10 * S, windows=500))
    assert tick(r, f, T0 + 40 * S)[1] == ()  # one node reported; two needed
    r = observe(r, report(r.cohort[1], T0 + 10 * S, windows=500))
    assert tick(r, f, T0 + 20 * S)[1] == ()  # 20 s < 30 s
    assert tick(r, f, T0 + 30 * S)[1][0].kind == "step"


def test_reports_that_do_not_belong_are_ignored() -> None:
    f = fleet()
    r, _ = start("v1", "v2", f, RolloutPolicy(canary_fraction=0.2, shadow_fraction=0.0), T0)
    outsider = next(n for n in f.ids if n not in r.cohort)
    inside = r.cohort[0]
    for m in (
        report(outsider, T0 + 10 * S),  # not in the cohort
        report(inside, T0 + 10 * S, version="v3"),  # another version
        EdgeMeasurement(inside, "v2", T0 - S, T0 + 5 * S, 10, 0, 0, 10),  # began before
    ):
        r = observe(r, m)
    assert r.tally.windows == 0 and r.ignored == 3
    r = observe(r, report(inside, T0 + 10 * S))
    r = observe(r, report(inside, T0 + 10 * S))  # the same report, resent
    assert r.tally.windows == 100 and r.ignored == 4


def test_start_refuses_what_cannot_work() -> None:
    with pytest.raises(RolloutError, match="'v1' is already the champion"):
        start("v1", "v1", fleet(), POLICY, T0)
    with pytest.raises(RolloutError, match=r"stage canary would hold 0\.2 of 3 nodes"):
        start("v1", "v2", fleet(3), POLICY, T0)
    with pytest.raises(RolloutError, match="none of the 10 nodes is online"):
        start("v1", "v2", fleet().with_online([]), POLICY, T0)
    with pytest.raises(RolloutError, match="no nodes"):
        start("v1", "v2", Fleet(()), POLICY, T0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"canary_fraction": 0.0}, r"canary_fraction: must be in \(0, 1\)"),
        ({"steps": (0.5, 0.4)}, r"steps\[1\]: 0.4 must be above 0.5"),
        ({"steps": (1.0,)}, r"steps\[0\]: 1.0 must be above 0.1 .* and below 1"),
        ({"shadow_fraction": 2.0}, "shadow_fraction: must be in"),
    ],
)
def test_policy_errors_name_the_field(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RolloutPolicy(**kwargs)  # type: ignore[arg-type]


def test_gate_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"gates\.min_agreement: must be a number >= 0"):
        Gates(min_agreement=-1)


def test_measurement_errors_name_the_node_and_field() -> None:
    with pytest.raises(ConfigError, match="from 'n1': challenger_alerts 11 exceeds windows 10"):
        EdgeMeasurement("n1", "v2", 0, 1, 10, 11, 0, 0)
    with pytest.raises(ConfigError, match="score_shift must be in"):
        EdgeMeasurement("n1", "v2", 0, 1, 10, 1, 0, 0, score_shift=1.5)


def test_cohort_size_rounds_down_and_order_ignores_listing_order() -> None:
    assert [cohort_size(0.3, n) for n in (3, 4, 10)] == [0, 1, 3]
    f = fleet(12, groups=3)
    shuffled = Fleet(tuple(reversed(f.nodes)))
    assert rollout_order(f, 7) == rollout_order(shuffled, 7)
    assert rollout_order(f, 7) != rollout_order(f, 8)
    assert sorted(rollout_order(f, 7)) == list(f.ids)
    assert len({f.group_of(n) for n in rollout_order(f, 7)[:3]}) == 3


# -- properties ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    n: int
    groups: int
    canary: float
    steps: tuple[float, ...]
    shadow: float
    bad: bool
    always_offline: tuple[str, ...]
    flaps: tuple[tuple[str, ...], ...]  # extra nodes offline in each period
    seed: int


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(2, 25))
    ids = [f"n{i:02d}" for i in range(n)]
    canary = draw(st.sampled_from([0.1, 0.2, 0.25, 0.34, 0.5]))
    if cohort_size(canary, n) < 1:
        canary = 0.5
    steps = tuple(s for s in draw(st.sampled_from([(), (0.5,), (0.6, 0.8)])) if s > canary)
    shadow = draw(st.sampled_from([0.0, 0.5, 1.0]))
    if shadow and cohort_size(shadow, n) < 1:
        shadow = 1.0
    k_off = draw(st.integers(0, n - 1))
    always_offline = tuple(draw(st.permutations(ids))[:k_off])
    flaps = tuple(
        tuple(draw(st.lists(st.sampled_from(ids), max_size=3, unique=True))) for _ in range(12)
    )
    return Scenario(
        n,
        draw(st.integers(1, 4)),
        canary,
        steps,
        shadow,
        draw(st.booleans()),
        always_offline,
        flaps,
        draw(st.integers(0, 1000)),
    )


def play(sc: Scenario, listing_reversed: bool = False) -> tuple[list[Rollout], Fleet]:
    base = fleet(sc.n, sc.groups)
    if listing_reversed:
        base = Fleet(tuple(reversed(base.nodes)))
    policy = RolloutPolicy(
        canary_fraction=sc.canary,
        steps=sc.steps,
        shadow_fraction=sc.shadow,
        evidence=Evidence(min_windows=150, min_nodes=1),
        seed=sc.seed,
    )
    online = [i for i in base.ids if i not in sc.always_offline]
    f = base.with_online(online)
    r, _ = start("v1", "v2", f, policy, T0)
    states, t = [r], T0
    for flap in sc.flaps:
        f = base.with_online(set(online) - set(flap))
        r, t = drive(r, f, t, bad=sc.bad)
        states.append(r)
    return states, base.with_online(base.ids)


@settings(max_examples=150)
@given(scenarios())
def test_rollout_guarantees(sc: Scenario) -> None:
    try:
        states, everyone = play(sc)
    except RolloutError as exc:
        assert "online" in str(exc)  # every node was offline at the start
        return
    final = states[-1]
    canary_cap = cohort_size(sc.canary, sc.n)
    canary_index = 1 if sc.shadow else 0
    for r in states:
        want = desired(r, everyone)
        acting = [n for n, m in want.items() if m.act == "v2"]
        if r.outcome == "running":
            assert len(acting) <= cohort_size(r.current.fraction, sc.n)
            if r.stage <= canary_index:
                assert len(acting) <= canary_cap
            # Nodes offline for the whole rollout are never in a cohort.
            assert all(want[n] == NodeModels("v1") for n in sc.always_offline)
        elif r.outcome == "rolled_back":
            assert all(m == NodeModels("v1") for m in want.values())
        else:
            assert all(m == NodeModels("v2") for m in want.values())
        assert r.peak_acting <= (
            sc.n if r.outcome == "promoted" else cohort_size(r.current.fraction, sc.n)
        )
    if sc.bad:
        assert final.outcome in ("rolled_back", "running")
        assert final.peak_acting <= canary_cap
    # Deterministic, whatever order the fleet was listed in.
    again, _ = play(sc, listing_reversed=True)
    assert [d.to_dict() for d in again[-1].decisions] == [d.to_dict() for d in final.decisions]


@settings(max_examples=60)
@given(scenarios())
def test_snapshots_restore_the_same_rollout_at_every_step(sc: Scenario) -> None:
    try:
        states, _ = play(sc)
    except RolloutError:
        return
    for r in states:
        assert restore(json.loads(json.dumps(snapshot(r)))) == r


def test_restore_names_what_is_wrong() -> None:
    r, _ = start("v1", "v2", fleet(), POLICY, T0)
    d = snapshot(r)
    with pytest.raises(ConfigError, match=r"schema must be 'edgeloop\.rollout/1'"):
        restore({**d, "schema": "x"})
    with pytest.raises(ConfigError, match="rollout: missing field 'tally'"):
        restore({k: v for k, v in d.items() if k != "tally"})
    with pytest.raises(ConfigError, match="stage: 7 is not a stage"):
        restore({**d, "stage": 7})

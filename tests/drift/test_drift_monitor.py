"""Drift judgement per node and fleet-wide, and the persistence rule that triggers retraining."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeloop.drift import (
    FLEET,
    DriftConfig,
    MonitorState,
    Sketch,
    SketchError,
    assess,
    quantile_edges,
    update,
)
from edgeloop.errors import ConfigError

NAMES = ("temp", "vib")
TRAIN = np.random.default_rng(0).normal(size=(20_000, 2))
REF = Sketch.build(NAMES, quantile_edges(TRAIN, 10), TRAIN)


def period(n: int, shift: tuple[float, float] = (0.0, 0.0), seed: int = 1) -> Sketch:
    x = np.random.default_rng(seed).normal(size=(n, 2)) + np.asarray(shift)
    return Sketch.empty(NAMES, REF.edges).update(x)


CFG = DriftConfig(metric="psi", threshold=0.2, min_samples=200, persistence=3)


def test_one_drifting_node_is_seen_per_node_and_feature() -> None:
    a = assess(REF, {"n2": period(1000, seed=2), "n1": period(1000, (0.0, 2.0), seed=3)}, 7, CFG)
    assert a.nodes == ("n1", "n2")
    assert a.node_drifted.tolist() == [[False, True], [False, False]]
    assert a.drifted_features("n1") == ("vib",) and a.drifted_features("n2") == ()
    assert a.verdicts()["n1"] is True and a.verdicts()["n2"] is False
    # Half the fleet moved: the merged distribution moved too (a bimodal mixture).
    assert a.verdicts()[FLEET] is True and a.drifted_features() == ("vib",)
    assert a.values("n1")["vib"] > 0.2 > a.values("n2")["vib"]


def test_too_few_samples_are_not_judged() -> None:
    a = assess(REF, {"n1": period(50, (3.0, 3.0))}, 0, CFG)
    assert not a.node_judged.any() and a.verdicts() == {"n1": None, FLEET: None}
    empty = assess(REF, {}, 0, CFG)
    assert empty.verdicts() == {FLEET: None} and empty.node_stats.psi.shape == (0, 2)


def test_min_features_requires_several_features_to_drift() -> None:
    cfg = DriftConfig(threshold=0.2, min_features=2)
    one = assess(REF, {"n1": period(1000, (0.0, 2.0))}, 0, cfg)
    both = assess(REF, {"n1": period(1000, (2.0, 2.0))}, 0, cfg)
    assert one.verdicts()["n1"] is False and both.verdicts()["n1"] is True


def run(verdicts: list[bool | None], cfg: DriftConfig = CFG) -> list[int]:
    """Feed a sequence of fleet verdicts (True drift, False calm, None no data); trigger periods."""
    state = MonitorState()
    fired: list[int] = []
    for p, v in enumerate(verdicts):
        if v is None:
            sketches = {"n1": period(20)}
        else:
            sketches = {"n1": period(1000, (0.0, 2.0) if v else (0.0, 0.0), seed=p)}
        state, triggers = update(state, assess(REF, sketches, p, cfg))
        fired += [t.period for t in triggers]
    return fired


def test_drift_must_persist_for_n_judged_periods() -> None:
    assert run([True, True, False, True, True, True, True]) == [5]
    # A period without enough data neither confirms nor breaks the streak.
    assert run([True, None, True, None, True]) == [4]
    assert run([True, True]) == []


def test_cooldown_suppresses_triggers_then_lets_them_through() -> None:
    cfg = DriftConfig(threshold=0.2, persistence=2, cooldown=3)
    assert run([True] * 10, cfg) == [1, 5, 9]
    assert run([True] * 6, DriftConfig(threshold=0.2, persistence=2)) == [1, 3, 5]


@given(st.lists(st.sampled_from([True, False, None]), max_size=12), st.integers(1, 4))
def test_triggers_follow_the_persistence_rule(verdicts: list[bool | None], n: int) -> None:
    cfg = DriftConfig(threshold=0.2, persistence=n)
    expected, streak = [], 0
    for p, v in enumerate(verdicts):
        streak = streak + 1 if v is True else (0 if v is False else streak)
        if streak >= n:
            expected.append(p)
            streak = 0
    assert run(verdicts, cfg) == expected


def test_replayed_or_old_periods_are_ignored() -> None:
    state = MonitorState()
    a = assess(REF, {"n1": period(1000, (0.0, 2.0))}, 5, DriftConfig(threshold=0.2, persistence=1))
    state, first = update(state, a)
    again, second = update(state, a)
    assert len(first) == 1 and second == () and again == state


def test_node_scope_triggers_for_the_drifting_node_only() -> None:
    cfg = DriftConfig(threshold=0.2, persistence=2, trigger_on="node")
    state = MonitorState()
    fired = []
    for p in range(3):
        sketches = {
            "n1": period(1000, (0.0, 2.0), seed=p),
            "n2": period(1000, seed=10 + p),
            "n3": period(1000, seed=20 + p),
        }
        state, t = update(state, assess(REF, sketches, p, cfg))
        fired += t
    assert [(t.period, t.scope) for t in fired] == [(1, "n1")]
    trig = fired[0]
    assert trig.features == ("vib",) and trig.values["vib"] > 0.2
    assert "on node n1 for 2 periods" in trig.reason and state.triggers == (trig,)


def test_bad_config_and_layouts_are_named() -> None:
    with pytest.raises(ConfigError, match=r"drift\.metric: unknown 'kl'"):
        DriftConfig(metric="kl")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"drift\.persistence: must be >= 1"):
        DriftConfig(persistence=0)
    with pytest.raises(ConfigError, match=r"drift\.threshold"):
        DriftConfig(threshold=float("nan"))
    other = Sketch.empty(("temp", "pressure"), REF.edges)
    with pytest.raises(SketchError, match=r"sketches\['n9'\]: names differ"):
        assess(REF, {"n9": other}, 0, CFG)
    with pytest.raises(ConfigError, match="scope: unknown 'n7'"):
        assess(REF, {}, 0, CFG).drifted_features("n7")

"""``edgeloop demo --scenario drift``: its plant really changes load regime, what the
scenario relies on is present, its checks name what a report fails to show, and (end to
end) the loop closes on its own: drift detected, a model retrained, canaried and promoted
with no human step, the offline gateway converging when it comes back.

The end-to-end run is the short version by default; ``EDGELOOP_SOAK=1`` runs the default
180-second scenario and also asserts the issue's false-alarm and recall figures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from edgeloop.node.config import parse_node_config
from edgeloop.scenarios import plan as planning
from edgeloop.scenarios.drift_scenario import (
    REPORT_KEYS,
    DriftOptions,
    check,
    floor_with_regime,
    missing_parts,
    run_drift,
)
from edgeloop.sim.build import build_sim
from edgeloop.telemetry.frame import SensorKind

SOAK = os.environ.get("EDGELOOP_SOAK") == "1"


def test_every_part_the_scenario_relies_on_is_in_this_checkout() -> None:
    assert missing_parts() == []


def test_the_gateways_floor_moves_to_the_new_load_regime() -> None:
    opts = DriftOptions(regime_at_s=10.0, base_level=0.7, regime_level=1.5)
    plan = planning.plan_floor(2, 2, 30.0, 0, seed=3, partition=None)
    floor = floor_with_regime(plan.gateways[0], plan, opts)
    cfg = parse_node_config(
        {
            "node_id": "gw1",
            "pipeline": "factory",
            "sources": [{"type": "sim", "seed": 1, "factory": floor}],
        }
    )
    sim = build_sim(floor, [], seed=1, start_ns=0)
    current = sim.catalog.indices_of_kind(SensorKind.CURRENT)
    assert cfg.sources[0].type == "sim" and len(current)

    def mean_current(seconds: int) -> float:
        vals = []
        for _ in range(seconds):
            frame = sim.step(1_000_000_000)
            keep = np.isin(frame.sensor, current)
            vals.append(frame.value[keep])
        return float(np.mean(np.concatenate(vals)))

    before = mean_current(9)
    mean_current(7)  # the ramp
    after = mean_current(9)
    # current = base + gain x load: 0.7 -> 1.5 moves it by ~0.8 x gain (gain ~6 A)
    assert after - before > 3.0, (before, after)


def report(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "missing": [],
        "promoted": True,
        "false_alarms_per_hour_peak": 3000.0,
        "false_alarms_per_hour_after": 900.0,
        "recall_after": 1.0,
        "offline_node": "gw4",
        "offline_node_converged_s": 1.5,
        "steps": [{"step": "promoted", "at_s": 50.0, "actor": "rollout"}],
    }
    return base | over


def test_check_names_what_a_report_does_not_show() -> None:
    assert check(report()) == []
    assert any("1/3" in p for p in check(report(false_alarms_per_hour_after=1001.0)))
    assert any("recall" in p for p in check(report(recall_after=0.9)))
    assert any("promoted" in p for p in check(report(promoted=False)))
    assert any("offline" in p for p in check(report(offline_node_converged_s=None)))
    assert any(
        "by hand" in p for p in check(report(steps=[{"step": "x", "at_s": 1, "actor": "bob"}]))
    )
    assert check(report(missing=["hub drift service"])) == ["missing: hub drift service"]


@pytest.mark.slow
def test_drift_is_detected_and_handled_by_the_hub_with_no_human_step(tmp_path: Path) -> None:
    """Short version: the chain drift -> retraining -> shadow rollout -> a gate decision
    runs on its own. Whether the first retrained model passes its gates depends on the few
    sample rows a small fleet sends in a few seconds (seen both ways here); when one is
    promoted, the offline gateway follows it. ``EDGELOOP_SOAK=1``: the default scenario,
    which must promote and show what the issue asks (``check``: fleet-wide false alarms
    after the promotion at most a third of the peak, recall after >= 0.95)."""
    opts = DriftOptions(workdir=tmp_path, live=False)
    if not SOAK:
        opts = DriftOptions(
            gateways=3,
            machines_per_gateway=3,
            duration_s=70.0,
            regime_at_s=15.0,
            faults=6,
            # After the change every machine's process sensors alarm for ~20 s (they
            # settle), which keeps its rows out of the samples: the short plant gathers a
            # hundred or two, not the 1250 the default bar (99.9 %) needs. A low bar, to
            # reach the gates; the figures are the soak run's.
            retrain_min_rows=100,
            retrain_quantile=0.98,
            workdir=tmp_path,
            live=False,
        )
    with open(os.devnull, "w") as sink:
        rep = run_drift(opts, Console(file=sink))
    text = json.dumps(rep["steps"])
    assert not rep.get("gateway_errors"), rep.get("gateway_errors")
    for key in REPORT_KEYS:
        assert key in rep, key
    assert rep["missing"] == []
    steps = [s["step"] for s in rep["steps"]]
    chain = ["regime_change", "drift_detected", "retrain_started", "rollout_start_shadow"]
    assert all(s in steps for s in chain), text
    assert [steps.index(s) for s in chain] == sorted(steps.index(s) for s in chain), text
    assert steps.index("drift_detected") > steps.index("regime_change")
    decided = [s for s in steps if s.startswith(("rollout_step", "rollout_rollback", "promoted"))]
    assert decided, text  # the hub's gates judged the shadow stage (or more)
    # No human step from the drift on: every actor is the hub's own.
    assert {s.get("actor") for s in rep["steps"]} <= {None, "drift", "rollout", "retrain"}, text
    if rep["promoted"] or SOAK:
        assert rep["promoted"], text
        # The offline gateway followed the final decision within a few reconcile rounds
        # of coming back (its process start included).
        assert rep["offline_node_converged_s"] is not None
        assert rep["offline_node_converged_s"] < 10.0
        # Every node ends on the hub's champion, a retrained one (a later retraining may
        # have replaced the first), or on the challenger of a rollout still running.
        allowed = {rep["final_champion"], rep["running_challenger"]}
        assert set(rep["final_acting"].values()) <= allowed, rep["final_acting"]
        assert rep["final_champion"] not in (None, "v1")
    if SOAK:  # the figures, fleet-wide: after <= peak / 3, recall >= 0.95
        assert check(rep) == [], rep

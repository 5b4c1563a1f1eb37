"""``edgeloop demo --scenario bad-model`` end to end: a hub and real gateway processes;
a model that alerts on every window is canaried on one node and rolled back by the
hub's gates from the measurements the canary sent; no more than the canary ever acts
on it, by the nodes' own reports, their logs, their documents and the stored events.

The short version runs in every ``make test``; ``EDGELOOP_SOAK=1`` runs the default.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.scenarios.bad_model import REPORT_KEYS, BadModelOptions, check, run_bad_model
from edgeloop.scenarios.fleet_run import acting_intervals, max_concurrent, swaps_from_log

SOAK = os.environ.get("EDGELOOP_SOAK") == "1"


@pytest.mark.slow
def test_a_model_that_alerts_on_everything_is_rolled_back_and_never_passes_the_canary(
    tmp_path: Path,
) -> None:
    opts = BadModelOptions(
        gateways=4 if SOAK else 3,
        machines_per_gateway=3 if SOAK else 2,
        duration_s=30.0 if SOAK else 18.0,
        canary_fraction=0.25 if SOAK else 0.34,
        workdir=tmp_path,
        live=False,
    )
    with open(os.devnull, "w") as sink:
        report = run_bad_model(opts, Console(file=sink))
    assert not report.get("gateway_errors"), report.get("gateway_errors")
    for key in REPORT_KEYS:
        assert key in report, key
    assert check(report) == [], report
    n = opts.gateways
    canary = math.floor(opts.canary_fraction * n)
    assert report["rolled_back"] is True
    assert "alert_ratio" in report["rollback_reason"]
    # Measured, not the policy: the nodes' reports saw the canary (and only it) on the
    # bad model, and each other record agrees on who acted on it.
    assert report["max_nodes_acting_on_bad_model"] == canary == report["canary_nodes"]
    assert report["max_fraction_acting_on_bad_model"] <= opts.canary_fraction
    assert report["max_nodes_acting_on_bad_model_by_logs"] == canary
    cohort = sorted(report["nodes_acting_on_bad_model_by_logs"])
    assert len(cohort) == canary
    assert report["nodes_acting_on_bad_model_by_documents"] == cohort
    assert set(report["nodes_with_bad_model_events"]) <= set(cohort)
    # The bad model alerted on every window it scored (its own measurements).
    assert report["bad_model_windows"] > 0
    assert report["bad_model_alerts"] == report["bad_model_windows"]
    # Every node ends on the champion; the steps came in order.
    assert set(report["final_acting"].values()) == {"v1"}
    names = [s["step"] for s in report["steps"]]
    for a, b in [
        ("fleet_converged_on_champion", "canary_started"),
        ("canary_started", "canary_acting_on_bad_model"),
        ("canary_acting_on_bad_model", "rolled_back"),
        ("rolled_back", "fleet_back_on_champion"),
    ]:
        at = {s["step"]: s["at_s"] for s in report["steps"]}
        assert names.index(a) < names.index(b) and at[a] <= at[b], report["steps"]


def test_acting_intervals_come_from_the_swaps_a_gateway_logged() -> None:
    log = "\n".join(
        [
            "2026-01-01 10:00:00,000 edgeloop.node.reconcile verified v1 (sha256:aa)",
            "2026-01-01 10:00:01,000 edgeloop.node.reconcile swapped to v1:act (generation 3)",
            "2026-01-01 10:00:05,500 edgeloop.node.reconcile swapped to bad:act, v1:shadow (g 4)",
            "2026-01-01 10:00:07,000 edgeloop.node.reconcile swapped to v1:act (generation 6)",
            "2026-01-01 10:00:08,000 edgeloop.node.reconcile swapped to bad:shadow, v1:act (g 7)",
        ]
    )
    swaps = swaps_from_log(log)
    assert [v for _, v in swaps] == ["v1", "bad", "v1", "v1"]
    iv = acting_intervals({"a": swaps, "b": swaps[:2]}, "bad", end=swaps[0][0] + 100)
    assert iv["a"] == [(swaps[1][0], swaps[2][0])]
    assert round(iv["a"][0][1] - iv["a"][0][0], 3) == 1.5
    assert iv["b"][0][1] == swaps[0][0] + 100  # still acting on it when its log ends
    assert max_concurrent(iv) == 2
    assert max_concurrent({"a": [(0.0, 1.0)], "b": [(1.0, 2.0)]}) == 1  # touching ≠ overlap


def test_the_cli_refuses_an_unknown_scenario(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["demo", "--scenario", "nope", "--report", str(tmp_path / "r")])
    assert res.exit_code == 2 and "scenario" in res.output
    assert not (tmp_path / "r").exists()

"""The embedded demo end to end: a hub, gateway processes, faults and a partition.

The short version runs in every ``make test``; ``EDGELOOP_SOAK=1`` runs the default
30-second demo with its full fault schedule.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from edgeloop.scenarios.factory_demo import DemoOptions, run_demo
from edgeloop.scenarios.report import REPORT_KEYS

SOAK = os.environ.get("EDGELOOP_SOAK") == "1"


@pytest.mark.slow
def test_demo_loses_nothing_counts_nothing_twice_and_catches_the_faults(tmp_path: Path) -> None:
    opts = DemoOptions(
        duration_s=30.0 if SOAK else 24.0,
        gateways=3,
        machines_per_gateway=6 if SOAK else 2,
        faults=12 if SOAK else 4,
        startup_s=4.0,
        workdir=tmp_path,
        live=False,
    )
    with open(os.devnull, "w") as sink:
        report = run_demo(opts, Console(file=sink))
    assert not report.get("gateway_errors"), report.get("gateway_errors")
    for key in REPORT_KEYS:
        assert key in report, key
    assert report["samples_ingested"] > 0
    assert report["samples_accounted"] == report["samples_ingested"]
    assert report["lost"] == 0
    assert report["duplicates"] == 0
    assert report["partitions"] == 1
    assert report["send_failures"] > 0  # the partition really cut the uplink
    assert report["faults_injected"] == opts.faults
    assert report["recall"] >= 0.95, report["missed_faults"]
    assert report["precision"] >= 0.90, report["false_events"]
    assert report["reduction"] >= 100
    assert report["gateways_drained"]


@pytest.mark.parametrize("preset", ["nab", "skab"])
def test_benchmark_presets_run_in_demo_gateways_unchanged(tmp_path: Path, preset: str) -> None:
    """Issue #3: the eval presets run in the demo's gateway processes as they are."""
    opts = DemoOptions(
        duration_s=12.0,
        gateways=1,
        machines_per_gateway=2,
        faults=1,
        pipeline=preset,
        partition=(0.4, 0.6),
        startup_s=3.0,
        workdir=tmp_path,
        live=False,
    )
    with open(os.devnull, "w") as sink:
        report = run_demo(opts, Console(file=sink))
    assert not report.get("gateway_errors"), report.get("gateway_errors")
    assert report["samples_ingested"] > 0
    assert report["samples_accounted"] == report["samples_ingested"]
    assert report["lost"] == 0 and report["duplicates"] == 0
    spec = (tmp_path / "pipeline.yaml").read_text()
    assert f"name: {preset}" in spec
    assert ("type: novelty" if preset == "nab" else "type: multivariate") in spec
    (stats_file,) = tmp_path.glob("*.stats.json")
    stats = json.loads(stats_file.read_text())
    # every process sample (nab) or machine time step (skab) was scored: 2 machines x 10 Hz
    assert stats["windows"] >= 2 * 10 * 10

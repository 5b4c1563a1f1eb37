"""The chaos matrix, quick-sized, against real Mosquitto, PostgreSQL and processes.

One run of every scenario (10 s of data each, three at a time) serves the tests below;
each asserts its scenario's row: nothing lost, nothing stored twice, nothing committed
out of order, evictions only where the disk budget forces them (summaries, the lowest
class present, never events), and that the fault really happened. ``EDGELOOP_SOAK=1``
runs the 40-second soak of the whole matrix (``@pytest.mark.slow``; by default that test
checks the quick matrix).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Broker
from edgeloop.chaos.runner import RunOptions, run_matrix
from edgeloop.chaos.scenarios import SCENARIOS, select

SOAK = os.environ.get("EDGELOOP_SOAK") == "1"
REQUIRED = ("scenario", "produced", "delivered", "evicted", "lost", "duplicates")
REQUIRED += ("order_violations", "drain_s")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    workdir = tmp_path_factory.mktemp("chaos")
    try:
        out = run_matrix(
            list(SCENARIOS), RunOptions(seed=1, quick=True, workdir=workdir, parallel=3)
        )
    except RuntimeError as exc:  # no broker or no PostgreSQL: say how to get them
        pytest.fail(str(exc), pytrace=False)
    yield {r["scenario"]: r for r in out}


def _clean(r: dict[str, Any]) -> None:
    """The promise every scenario keeps."""
    assert "error" not in r and "skipped" not in r, r
    for key in REQUIRED:
        assert key in r, key
    assert r["produced"] > 0 and r["delivered"] > 0
    why = {k: r.get(k) for k in ("lost", "ledger_missing_seqs", "unknown_upto_seq")}
    why |= {k: r.get(k) for k in ("ledger_rejected", "dead_letters", "timeline")}
    assert r["lost"] == 0, why
    assert r["duplicates"] == 0, r
    assert r["order_violations"] == 0, r
    assert set(r["gateway_exit_codes"].values()) == {0}, r  # every gateway drained
    assert r["ok"], r


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_scenario_loses_nothing_and_stores_nothing_twice(
    results: dict[str, dict[str, Any]], name: str
) -> None:
    r = results[name]
    _clean(r)
    budget = select([name])[0].evictions_expected
    ev = r["evicted_entries"]
    if budget:
        assert ev["summary"] > 0, r  # the budget really forced evictions
        assert r["evicted"]["summary"] > 0
        assert r["events_stored"] == r["events_forwarded"]  # events survive summaries
    else:
        assert sum(ev.values()) == 0, r
    assert ev["event"] == ev["alarm"] == 0, r  # the lowest class goes first
    assert (
        r["produced"]
        == r["delivered"] + sum(r["evicted"].values()) - r["evicted_delivered"] + r["rejected"]
    )


def test_partitions_really_cut_the_link_and_drain_after(
    results: dict[str, dict[str, Any]],
) -> None:
    for name in ("partition-short", "partition-long", "outbox-budget"):
        r = results[name]
        # Connections reset by the cut, or refused while it lasted (a gateway that had
        # not connected yet when the cut came).
        proxy = r["proxy"]["gw1"]
        assert proxy["resets"] + proxy["refused"] >= 1, r["proxy"]
        assert r["drain_s"] is not None and r["drain_s"] < 15, r
    assert results["slow-lossy-link"]["proxy"]["gw1"]["drops"] >= 1


def test_gateway_kill_restarts_and_replays_from_its_resume_point(
    results: dict[str, dict[str, Any]],
) -> None:
    r = results["gateway-kill"]
    assert r["gateway_starts"] == {"gw1": 2}
    kill = next(e for e in r["timeline"] if e["action"] == "kill_gateway")
    assert kill["mid_batch"], kill  # killed with a batch on the wire
    assert len(r["resumed_from_s"]) == 1 and 0 < r["resumed_from_s"][0] < kill["t_s"]


def test_hub_kill_leaves_the_other_replica_consuming(
    results: dict[str, dict[str, Any]],
) -> None:
    r = results["hub-kill"]
    assert r["hub_starts"] == {"hub0": 2, "hub1": 1}
    assert set(r["gateway_exit_codes"]) == {"gw1", "gw2"}


def test_bad_input_is_rejected_counted_and_dead_lettered(
    results: dict[str, dict[str, Any]],
) -> None:
    r = results["bad-input"]
    assert r["rejected"] > 0  # corrupt samples at the source, each with a reason
    forged = next(e for e in r["timeline"] if e["action"] == "forge")["forged"]
    assert forged == {"other_node": 1, "truncated": 1, "garbage": 1}
    # Each forgery dead-lettered once, with its reason (the tap never re-captures them).
    assert r["dead_letters"] == {"malformed": 2, "truncated": 1}, r["dead_letter_examples"]
    fields = sorted(e["field"] for e in r["dead_letter_examples"])
    assert fields == ["node", "payload", "payload"]
    replays = [e["replayed"] for e in r["timeline"] if e["action"] == "replay"]
    assert replays and all(n > 0 for n in replays)
    # Two replicas on one shared subscription: each committed part of the batches.
    assert set(r["hub_batches"]) == {"hub0", "hub1"}
    assert all(n is not None and n > 0 for n in r["hub_batches"].values()), r["hub_batches"]


def test_slow_hub_makes_the_broker_drop_and_nothing_is_lost(
    results: dict[str, dict[str, Any]],
) -> None:
    r = results["slow-hub"]
    assert r["broker_drops"] is not None and r["broker_drops"] >= 1, r


def test_cli_writes_one_object_per_scenario(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    cmd = [sys.executable, "-m", "edgeloop.cli.main", "chaos", "--quick", "--seed", "2"]
    cmd += ["--scenario", "partition-short", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["scenario"] for r in rows] == ["partition-short"]
    _clean(rows[0])
    assert "edgeloop chaos" in done.stdout


def test_scenarios_share_one_broker_without_meeting(mqtt_broker: Broker, tmp_path: Path) -> None:
    """The fallback without the binary: every scenario on one broker (the session's),
    at once; tenants, subscriptions and client ids keep them apart."""
    opts = RunOptions(
        seed=4,
        quick=True,
        workdir=tmp_path,
        parallel=3,
        broker=(mqtt_broker.host, mqtt_broker.port),
    )
    names = ["partition-short", "hub-kill", "broker-restart"]
    rows = {r["scenario"]: r for r in run_matrix(select(names), opts)}
    _clean(rows["partition-short"])
    _clean(rows["hub-kill"])
    assert rows["broker-restart"] == {
        "scenario": "broker-restart",
        "skipped": "needs a broker of its own (it restarts or reconfigures it)",
    }


def test_cli_names_the_scenarios_when_one_is_unknown() -> None:
    cmd = [sys.executable, "-m", "edgeloop.cli.main", "chaos", "--scenario", "meteor"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 2
    assert "meteor" in done.stderr and "partition-short" in done.stderr


@pytest.mark.slow
def test_soak_matrix(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The whole matrix clean: the 40-second runs with EDGELOOP_SOAK=1, else the quick
    matrix above (its short version, shared with the other tests of this module)."""
    if SOAK:
        rows = run_matrix(list(SCENARIOS), RunOptions(seed=3, workdir=tmp_path, parallel=2))
    else:
        rows = list(request.getfixturevalue("results").values())
    assert {r["scenario"] for r in rows} == {s.name for s in SCENARIOS}
    for r in rows:
        _clean(r)


def test_a_step_with_an_unknown_action_or_time_is_refused() -> None:
    from edgeloop.chaos.scenarios import Step

    with pytest.raises(ValueError, match="'meteor' is not one of"):
        Step(0.5, "meteor")
    with pytest.raises(ValueError, match="at must be in"):
        Step(1.5, "cut")
    with pytest.raises(ValueError, match=r"unknown scenario\(s\) \['nope'\]"):
        select(["nope"])
    assert [s.name for s in select(["slow-hub", "partition-short"])] == [
        "partition-short",
        "slow-hub",
    ]

"""Desired state, actual state, fleet status and rollouts over HTTP, on SQLite and
PostgreSQL: documents follow aliases, groups and pins; nodes that reconcile against the
API converge and show in sync; a bad challenger is rolled back within its canary; a
restarted hub resumes a rollout where it stood."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from edgeloop.desired import DesiredState
from edgeloop.hub.keys import hub_key
from edgeloop.hub.rollout_ticker import RolloutTicker
from edgeloop.hub.store import HubStore
from edgeloop.pipeline.spec import load_preset

from ._control_helpers import SEC, Clock, HttpNode, make_client, ok, register

FLEET = [f"gw{i:02d}" for i in range(10)]
POLICY = {
    "canary_fraction": 0.2,
    "steps": [0.5],
    "shadow_fraction": 0.0,
    "evidence": {"min_windows": 100, "min_nodes": 1},
    "gates": {"max_latency_p99_ms": 50.0},
}


def desired(client: Any, node: str) -> DesiredState:
    r = client.get(f"/v1/nodes/{node}/desired")
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == f'"{DesiredState.from_bytes(r.content).generation}"'
    return DesiredState.from_bytes(r.content)


def report(client: Any, node: str, group: str = "line-a") -> None:
    body = {"group": group, "generation": 0, "status": "converging"}
    ok(client.put(f"/v1/nodes/{node}/actual", json=body), 204)


def start_canary(
    client: Any, challenger: str, seed: int, policy: dict[str, Any] | None = None
) -> Any:
    """v1 champion of group line-a (``challenger`` in its shadow), the fleet reporting,
    then a rollout of ``challenger`` (seeded model) under ``policy``: the started rollout."""
    register(client, "v1", 1)
    register(client, challenger, seed, parent="v1")
    ok(client.post("/v1/models/v1/promote", json={"actor": "a"}))
    ok(client.put("/v1/groups/line-a", json={"act": "champion", "shadow": "challenger"}))
    for n in FLEET:
        report(client, n)
    body = {"challenger": challenger, "actor": "a", "policy": policy or POLICY}
    return ok(client.post("/v1/rollouts", json=body), 201)


def measurement(node: str, version: str, start_ns: int, *, bad: bool) -> dict[str, Any]:
    return {
        "node": node,
        "version": version,
        "period_start_ns": start_ns,
        "period_end_ns": start_ns + 60 * SEC,
        "windows": 200,
        "challenger_alerts": 200 if bad else 2,
        "champion_alerts": 2,
        "agreements": 2 if bad else 198,
        "score_shift": 0.6 if bad else 0.05,
        "latency_p99_ms": 1.0,
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_desired_state_follows_aliases_groups_and_pins(store: HubStore, clock: Clock) -> None:
    client = make_client(store, clock)
    register(client, "v1", 1)
    register(client, "v2", 2, parent="v1")
    ok(client.post("/v1/models/v1/promote", json={"actor": "a"}))
    ok(client.put("/v1/groups/line-a", json={"act": "champion", "pipeline": {"preset": "factory"}}))
    ok(client.put("/v1/groups/line-b", json={"act": "v2", "shadow": "champion"}))
    ok(client.put("/v1/fleet/nodes/gw1", json={"group": "line-a"}))
    ok(client.put("/v1/fleet/nodes/gw2", json={"group": "line-b"}))

    d1, d2 = desired(client, "gw1"), desired(client, "gw2")
    assert (d1.acting.version, d1.shadow) == ("v1", None)
    # The preset is resolved and validated by the hub: nodes get the spec, defaults filled.
    assert d1.pipeline == load_preset("factory").model_dump(mode="json")
    r = client.put("/v1/groups/line-c", json={"act": "v1", "pipeline": {"windows": 3}})
    assert r.status_code == 422 and "windows" in r.json()["error"]["detail"]
    assert (d2.acting.version, d2.shadow and d2.shadow.version) == ("v2", "v1")
    gen = d1.generation

    ok(client.post("/v1/models/v2/promote", json={"actor": "a"}))  # line-a follows champion
    d1 = desired(client, "gw1")
    assert d1.acting.version == "v2" and d1.generation > gen
    assert desired(client, "gw2").shadow is None  # shadowing the acting version is no shadow
    ok(client.post("/v1/rollback", json={"actor": "a"}))
    assert desired(client, "gw1").acting.version == "v1"

    gen = desired(client, "gw1").generation
    ok(client.put("/v1/fleet/nodes/gw1", json={"group": "line-b"}))  # moved to another group
    d1 = desired(client, "gw1")
    assert d1.acting.version == "v2" and d1.generation > gen
    ok(client.put("/v1/fleet/nodes/gw1", json={"group": "line-b", "pin_act": "v1"}))
    assert desired(client, "gw1").acting.version == "v1"  # a pin beats the group
    groups = ok(client.get("/v1/groups"))["groups"]
    assert [(g["group"], g["act"], g["revision"]) for g in groups] == [
        ("line-a", "champion", 1),
        ("line-b", "v2", 1),
    ]


def test_desired_state_errors_name_what_is_missing(store: HubStore) -> None:
    client = make_client(store, Clock())
    register(client, "v1", 1)
    r = client.get("/v1/nodes/ghost/desired")
    assert r.status_code == 404 and "not in the fleet" in r.json()["error"]["detail"]
    r = client.put("/v1/groups/line-a", json={"act": "champion"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "act"
    # A node nobody assigned yet is recorded and shows in the status, without a group.
    ok(client.put("/v1/nodes/gw9/actual", json={"generation": 0, "status": "converging"}), 204)
    (row,) = ok(client.get("/v1/fleet/status"))["nodes"]
    assert (row["node"], row["group"], row["desired_version"]) == ("gw9", None, None)
    assert client.get("/v1/nodes/gw9/desired").status_code == 404
    r = client.put("/v1/nodes/gw9/actual", json={"node": "gw8", "generation": 0, "status": "stale"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "node"
    r = client.put("/v1/nodes/gw1/actual", json={"generation": -1, "status": "converging"})
    assert r.status_code == 422
    # A node of a group without desired state gets a 404 saying what to set; it does not
    # hold up the other nodes' documents or the fleet status.
    ok(client.post("/v1/models/v1/promote", json={"actor": "a"}))
    ok(client.put("/v1/groups/line-a", json={"act": "champion"}))
    ok(client.put("/v1/fleet/nodes/gw2", json={"group": "line-a"}))
    ok(client.put("/v1/fleet/nodes/gw1", json={"group": "nowhere"}))
    r = client.get("/v1/nodes/gw1/desired")
    assert r.status_code == 404 and "PUT /v1/groups/nowhere" in r.json()["error"]["detail"]
    assert desired(client, "gw2").acting.version == "v1"
    rows = {n["node"]: n for n in ok(client.get("/v1/fleet/status"))["nodes"]}
    assert rows["gw1"]["desired_version"] is None and rows["gw2"]["desired_version"] == "v1"
    # An alias that a group acts on cannot be removed from under it.
    ok(client.put("/v1/aliases/stable", json={"version": "v1", "actor": "a"}))
    ok(client.put("/v1/groups/line-b", json={"act": "stable"}))
    r = client.delete("/v1/aliases/stable", params={"actor": "a"})
    assert r.status_code == 409 and "group line-b" in r.json()["error"]["detail"]
    r = client.put("/v1/fleet/nodes/gw1", json={"group": "g", "pin_act": "nope"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "pin_act"


def test_nodes_reconciling_over_http_converge_and_fleet_status_shows_drift(
    store: HubStore, clock: Clock
) -> None:
    client = make_client(store, clock)
    register(client, "v1", 1)
    register(client, "v2", 2, parent="v1")
    ok(client.post("/v1/models/v1/promote", json={"actor": "a"}))
    ok(client.put("/v1/groups/line-a", json={"act": "champion"}))
    nodes = [HttpNode(client, n, "line-a", chunk=1024) for n in ("gw1", "gw2")]
    for n in nodes:
        n.report()  # joins line-a
    status = ok(client.get("/v1/fleet/status"))
    assert status["in_sync"] == 0 and status["drifting"] == 2
    assert nodes[0].converge() <= 4
    status = ok(client.get("/v1/fleet/status"))
    by_node = {n["node"]: n for n in status["nodes"]}
    assert by_node["gw1"]["in_sync"] and by_node["gw1"]["actual_version"] == "v1"
    assert by_node["gw1"]["status"] == "converged"
    assert not by_node["gw2"]["in_sync"] and by_node["gw2"]["actual_version"] is None
    # Every byte was fetched once, in 1 KiB ranges (the artifact is ~3 KB).
    assert len(nodes[0].requests) == len(set(nodes[0].requests)) >= 3

    ok(client.post("/v1/models/v2/promote", json={"actor": "a"}))
    status = ok(client.get("/v1/fleet/status"))
    assert status["drifting"] == 2
    assert {n["desired_version"] for n in status["nodes"]} == {"v2"}
    for n in nodes:
        n.converge()
    status = ok(client.get("/v1/fleet/status"))
    assert status["in_sync"] == 2 and {n["actual_version"] for n in status["nodes"]} == {"v2"}
    assert nodes[0].state.previous is not None and nodes[0].state.previous.version == "v1"


def test_a_bad_challenger_is_rolled_back_within_its_canary(store: HubStore, clock: Clock) -> None:
    client = make_client(store, clock)
    started = start_canary(client, "bad", 3)
    assert started["stage"] == "canary" and len(started["acting"]) == 2
    assert ok(client.get("/v1/aliases"))["challenger"] == "bad"
    r = client.post("/v1/rollouts", json={"challenger": "bad", "actor": "a", "policy": POLICY})
    assert r.status_code == 409 and "already running" in r.json()["error"]["detail"]

    acting = [n for n in FLEET if desired(client, n).acting.version == "bad"]
    assert sorted(acting) == sorted(started["acting"])
    clock.advance(60)
    rec = ok(
        client.post(
            "/v1/rollouts/measurements",
            json=[measurement(n, "bad", started["started_ns"], bad=True) for n in acting],
        )
    )
    assert rec["outcome"] == "rolled_back" and rec["peak_acting"] == 2
    assert "alert" in rec["decisions"][-1]["reason"]
    # No node's document names the bad model any more; challenger alias cleared.
    for n in FLEET:
        assert "bad" not in {m.version for m in desired(client, n).models}
    assert "challenger" not in ok(client.get("/v1/aliases"))
    kinds = [(e["kind"], e["actor"]) for e in ok(client.get("/v1/deployments"))["events"]]
    assert ("rollout", "rollout") in kinds and ("alias_removed", "rollout") in kinds
    assert client.post("/v1/rollouts/tick").status_code == 404


def test_a_rollout_survives_a_hub_restart_and_promotes(
    db_url: str, clock: Clock, tmp_path: Path
) -> None:
    key = hub_key(tmp_path / "hub")
    store = HubStore.open(db_url)
    client = make_client(store, clock, key)
    register(client, "v1", 1)
    register(client, "v2", 2, parent="v1")
    ok(client.post("/v1/models/v1/promote", json={"actor": "a"}))
    ok(client.put("/v1/groups/line-a", json={"act": "champion"}))
    for n in FLEET[:-1]:
        report(client, n)
    ok(client.put(f"/v1/fleet/nodes/{FLEET[-1]}", json={"group": "line-a"}))  # never online
    started = ok(
        client.post("/v1/rollouts", json={"challenger": "v2", "actor": "a", "policy": POLICY}),
        201,
    )
    canary = started["acting"]
    assert FLEET[-1] not in canary
    clock.advance(60)
    after_canary = ok(
        client.post(
            "/v1/rollouts/measurements",
            json=[measurement(n, "v2", started["started_ns"], bad=False) for n in canary],
        )
    )
    assert after_canary["stage"] == "step-1" and len(after_canary["acting"]) == 5
    before = ok(client.get("/v1/rollouts"))
    store.close()

    store = HubStore.open(db_url)
    client = make_client(store, clock, hub_key(tmp_path / "hub"))
    assert ok(client.get("/v1/rollouts")) == before
    assert sorted(n for n in FLEET if desired(client, n).acting.version == "v2") == sorted(
        after_canary["acting"]
    )
    clock.advance(60)
    stage_start = after_canary["decisions"][-1]["at_ns"]
    done = ok(
        client.post(
            "/v1/rollouts/measurements",
            json=[measurement(n, "v2", stage_start, bad=False) for n in after_canary["acting"]],
        )
    )
    assert done["outcome"] == "promoted"
    assert ok(client.get("/v1/aliases"))["champion"] == "v2"
    # The node offline throughout follows the final decision when it reconnects.
    late = HttpNode(client, FLEET[-1], "line-a", chunk=1024)
    assert late.converge() <= 4 and late.state.active[0].version == "v2"
    events = ok(client.get("/v1/deployments"))["events"]
    assert [e["detail"]["decision"] for e in events if e["kind"] == "rollout"] == [
        "start",
        "step",
        "promote",
    ]
    assert events[-1]["kind"] == "promoted" and events[-1]["actor"] == "rollout"
    store.close()


def test_the_ticker_rolls_back_a_stage_that_gathers_no_evidence(
    store: HubStore, clock: Clock
) -> None:
    client = make_client(store, clock)
    register(client, "v1", 1)
    register(client, "v2", 2, parent="v1")
    ok(client.post("/v1/models/v1/promote", json={"actor": "a"}))
    ok(client.put("/v1/groups/line-a", json={"act": "champion"}))
    for n in FLEET:
        report(client, n)
    policy = {**POLICY, "stage_timeout_s": 300.0}
    ok(client.post("/v1/rollouts", json={"challenger": "v2", "actor": "a", "policy": policy}), 201)
    plane = client.app.state.control  # type: ignore[attr-defined]
    ticker = RolloutTicker(plane, every_s=0.01).start()
    try:
        clock.advance(301)  # no node ever sent a measurement
        deadline = time.monotonic() + 30
        while plane.rollouts()[-1].rollout.outcome == "running":
            assert time.monotonic() < deadline, "the ticker never judged the rollout"
            time.sleep(0.01)
    finally:
        ticker.stop()
    (rec,) = ok(client.get("/v1/rollouts"))["rollouts"]
    assert rec["outcome"] == "rolled_back"
    assert "not enough evidence after 301 s" in rec["decisions"][-1]["reason"]
    assert ticker.failures == 0

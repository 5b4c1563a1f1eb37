"""The hub's drift service on SQLite and PostgreSQL: sketches sent by nodes (the node's
own collector, through ``/v1/ingest``) are judged per period against the model's
reference; drift that persists triggers retraining once; streaks, cooldown and
undelivered triggers survive a restart; replays change nothing; bad sketches are
refused with the field named while the others are judged."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeloop.drift import DriftConfig, RetrainTrigger, Sketch
from edgeloop.hub.app import create_app
from edgeloop.hub.store import HubStore
from edgeloop.node.drift_sketches import SketchCollector
from edgeloop.outbox.base import Entry
from edgeloop.pipeline.types import Features, Scores
from edgeloop.security import PrivateKey

from ._control_helpers import NAMES, SEC, T0, Clock, ok, register, trained, windows
from .test_documents import send

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

PERIOD = 60 * SEC
CONFIG = DriftConfig(metric="psi", threshold=0.25, min_samples=100, persistence=3)
KEY = PrivateKey.generate()


def app_on(store: HubStore, clock: Clock, config: DriftConfig = CONFIG) -> TestClient:
    app = create_app(store, clock=clock, signing_key=KEY, drift_config=config)
    return TestClient(app)


def close(client: TestClient, store: HubStore | None = None) -> None:
    """Stop the app's retrain worker (drift triggers queue runs there), then the store."""
    client.app.state.retrain.close()  # type: ignore[attr-defined]
    client.close()
    if store is not None:
        store.close()


def reference(version: str = "v1") -> Sketch:
    ref = trained(version, 1)[1].drift_reference
    assert ref is not None
    return ref


def sketch_entry(
    node: str, seq: int, period: int, load: float, *, version: str = "v1", ref: Sketch | None = None
) -> Entry:
    """What a node's collector sends for one period of 300 windows at ``load``."""
    col = SketchCollector(node)
    start = T0 + period * PERIOD
    col.begin(version, "process", ref or reference(), start)
    x = windows(300, seed=1000 * seq + int(node[2:]), load=load)
    n = len(x)
    feats = Features(
        "process",
        NAMES,
        np.zeros(n, np.uint32),
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        x,
    )
    col(
        feats,
        Scores(
            np.full(n, 0.2, np.float32), 0.5, np.ones(n, np.float32), np.zeros(n, np.int32), "m"
        ),
    )
    new = col.take(start + PERIOD)
    assert new is not None
    return Entry(seq, new.priority, new.kind, new.payload, new.samples, new.created_ns)


def judge_period(client: TestClient, clock: Clock, period: int) -> Any:
    """Move the hub's clock past the period's end and grace, and judge."""
    clock.now_ns = T0 + (period + 1) * PERIOD + PERIOD // 2
    return ok(client.post("/v1/drift/judge", json={}))


def test_persistent_drift_is_judged_per_feature_and_triggers_retraining_once_across_a_restart(
    db_url: str,
) -> None:
    clock = Clock(T0)
    store = HubStore.open(db_url)
    client = app_on(store, clock)
    register(client, "v1", 1)
    # Periods 0-1 at the training load; 2-4 the plant runs twice as hard: temp.mean (its spread)
    # and current.mean (its level) move, temp.std and pressure.mean do not.
    loads = [1.0, 1.0, 2.0, 2.0, 2.0]
    seq = {"gw1": 0, "gw2": 0}
    for p in range(2):
        for node in seq:
            seq[node] += 1
            send(client, node, [sketch_entry(node, seq[node], p, loads[p])])
        judged = judge_period(client, clock, p)
        assert [j["verdicts"] for j in judged["judged"]] == [
            {"gw1": False, "gw2": False, "*": False}
        ]
    p = 2
    for node in seq:
        seq[node] += 1
        send(client, node, [sketch_entry(node, seq[node], p, loads[p])])
    judge_period(client, clock, p)
    status = ok(client.get("/v1/drift"))
    fleet = status["fleet"][0]
    assert (fleet["version"], fleet["period"], fleet["verdict"], fleet["streak"]) == (
        "v1",
        T0 // PERIOD + 2,
        "drifted",
        1,
    )
    assert set(fleet["drifted_features"]) == {"temp.mean", "current.mean"}
    assert fleet["values"]["current.mean"] > 0.25 > fleet["values"]["pressure.mean"]
    assert fleet["rows"]["temp.std"] == 600 and fleet["score_mean"] == pytest.approx(0.2)
    assert {n["scope"]: n["verdict"] for n in status["nodes"]} == {
        "gw1": "drifted",
        "gw2": "drifted",
    }
    assert status["triggers"] == 0 and status["last_trigger"] is None
    close(client, store)

    # A restart: the streak is in the database; the next two drifted periods trigger.
    store = HubStore.open(db_url)
    client = app_on(store, clock)
    got: list[RetrainTrigger] = []
    client.app.state.drift.on_trigger(got.append)  # type: ignore[attr-defined]
    for p in (3, 4):
        entries = {}
        for node in seq:
            seq[node] += 1
            entries[node] = sketch_entry(node, seq[node], p, loads[p])
            send(client, node, [entries[node]])
        judge_period(client, clock, p)
    assert len(got) == 1
    (trig,) = got
    assert trig.scope == "*" and trig.streak == 3 and trig.period == T0 // PERIOD + 4
    assert set(trig.features) == {"temp.mean", "current.mean"}
    assert "model v1" in trig.reason
    # Replays: the same batch again, judging again: nothing new, no second trigger.
    for node, entry in entries.items():
        assert send(client, node, [entry]).duplicates == 1
    assert judge_period(client, clock, 4)["judged"] == []
    status = ok(client.get("/v1/drift"))
    assert status["triggers"] == 1 and status["last_trigger"]["delivered_ns"] is not None
    assert status["fleet"][0]["streak"] == 0  # the streak restarts after a trigger
    history = ok(client.get("/v1/drift/history", params={"scope": "*"}))
    assert [h["verdict"] for h in history] == ["drifted"] * 3 + ["calm"] * 2
    metrics = client.get("/metrics").text
    assert "edgeloop_hub_drift_triggers_total 1.0" in metrics
    assert 'edgeloop_hub_drift{feature="current.mean",version="v1"}' in metrics
    close(client, store)


def test_a_trigger_committed_but_not_delivered_is_delivered_after_a_restart_and_cooldown_holds(
    db_url: str,
) -> None:
    clock = Clock(T0)
    cfg = DriftConfig(metric="psi", threshold=0.25, min_samples=100, persistence=1, cooldown=2)
    store = HubStore.open(db_url)
    client = app_on(store, clock, cfg)
    # As if the hub died between committing the trigger and delivering it: create_app
    # wires retraining to the triggers, so that listener is taken away here.
    client.app.state.drift._callbacks.clear()  # type: ignore[attr-defined]
    register(client, "v1", 1)
    send(client, "gw1", [sketch_entry("gw1", 1, 0, 2.0)])
    # Judged and committed, the hub stops before delivering (as when the ingest
    # observer judges: it never runs callbacks).
    clock.now_ns = T0 + PERIOD + PERIOD // 2
    drift = client.app.state.drift  # type: ignore[attr-defined]
    assert [len(j.triggers) for j in drift.judge_due(deliver=False)] == [1]
    assert ok(client.get("/v1/drift/triggers"))[0]["delivered_ns"] is None
    close(client, store)

    store = HubStore.open(db_url)
    client = app_on(store, clock, cfg)
    got: list[RetrainTrigger] = []
    client.app.state.drift.on_trigger(got.append)  # type: ignore[attr-defined]
    for p in (1, 2, 3):  # drifted every period: periods 1-2 are in the cooldown
        send(client, "gw1", [sketch_entry("gw1", p + 1, p, 2.0)])
        judge_period(client, clock, p)
    assert [t.period - T0 // PERIOD for t in got] == [0, 3]
    assert len(ok(client.get("/v1/drift/triggers"))) == 2
    close(client, store)


def test_bad_sketches_are_dead_lettered_or_refused_by_field_and_the_rest_is_judged(
    store: HubStore,
) -> None:
    clock = Clock(T0)
    client = app_on(store, clock, DriftConfig(metric="psi", min_samples=100, persistence=5))
    register(client, "v1", 1)
    good = sketch_entry("gw1", 1, 0, 1.0)
    doc = json.loads(good.payload)
    # Structurally wrong: dead-lettered at ingest, the field named, the batch's valid
    # entry kept.
    broken = json.dumps({**doc, "counts": doc["counts"][:2]}).encode()
    ack = send(client, "gw1", [good, Entry(2, good.priority, "sketch", broken, 0, good.created_ns)])
    assert (ack.accepted, ack.rejected) == (1, 1)
    (dead,) = ok(client.get("/v1/dead_letters"))
    assert dead["field"] == "sketch.counts" and dead["reason"] == "malformed"
    # Well-formed but wrong for the model: stored, refused when judged (by field).
    ref = reference()
    other_edges = Sketch.empty(ref.names, ref.edges * 1.5)
    wrong_edges = sketch_entry("gw2", 1, 0, 1.0, ref=other_edges)
    unknown = sketch_entry("gw3", 1, 0, 1.0, version="v9")
    forged = json.dumps({**doc, "node": "gw1"}).encode()
    send(client, "gw2", [wrong_edges])
    send(client, "gw3", [unknown])
    send(client, "gw4", [Entry(1, good.priority, "sketch", forged, 0, good.created_ns)])
    judged = judge_period(client, clock, 0)["judged"]
    assert [sorted(j["verdicts"]) for j in judged] == [["*", "gw1"]]
    status = ok(client.get("/v1/drift"))
    assert status["rejected"] == {"sketch.layout": 1, "sketch.version": 1, "sketch.node": 1}
    assert status["fleet"][0]["rows"]["temp.mean"] == 300
    assert "sketch_refused" not in status  # counted under their field only
    metrics = client.get("/metrics").text
    assert 'edgeloop_hub_drift_sketches_total{outcome="refused:sketch.layout"} 1.0' in metrics
    # A sketch that arrives after its period was judged is counted as late.
    send(client, "gw1", [sketch_entry("gw1", 3, 0, 1.0)])
    assert ok(client.get("/v1/drift"))["late"] == 1
    close(client)


def test_drift_status_cli_shows_the_fleet_and_nodes(store: HubStore) -> None:
    from typer.testing import CliRunner

    from edgeloop.cli.main import app as cli
    from edgeloop.hub.server import BackgroundServer

    clock = Clock(T0)
    app = create_app(store, clock=clock, signing_key=KEY, drift_config=CONFIG)
    with BackgroundServer(app) as server:
        client = TestClient(app)
        register(client, "v1", 1)
        send(client, "gw1", [sketch_entry("gw1", 1, 0, 2.0)])
        clock.now_ns = T0 + PERIOD + PERIOD // 2
        runner = CliRunner()
        res = runner.invoke(cli, ["drift", "status", "--hub", server.url, "--judge"])
        assert res.exit_code == 0, res.output
        assert "fleet" in res.output and "gw1" in res.output and "drifted" in res.output
        assert "current.mean" in res.output and "no retraining trigger yet" in res.output
        res = runner.invoke(cli, ["drift", "status", "--hub", server.url, "--json"])
        assert res.exit_code == 0, res.output
        data = json.loads(res.output)
        assert [s["scope"] for s in data["scopes"]] == ["*", "gw1"]
        assert data["fleet"][0]["streak"] == 1
        res = runner.invoke(cli, ["drift", "history", "--hub", server.url, "--scope", "gw1"])
        assert res.exit_code == 0, res.output
        assert "gw1" in res.output and "drifted" in res.output and "fleet" not in res.output
        res = runner.invoke(cli, ["drift", "history", "--hub", server.url, "--json"])
        assert [h["scope"] for h in json.loads(res.output)] == ["*", "gw1"]
        res = runner.invoke(cli, ["drift", "triggers", "--hub", server.url, "--json"])
        assert res.exit_code == 0 and json.loads(res.output) == []
        # Two more drifted periods: the third in a row triggers retraining.
        send(client, "gw1", [sketch_entry("gw1", 2, 1, 2.0), sketch_entry("gw1", 3, 2, 2.0)])
        clock.now_ns = T0 + 3 * PERIOD + PERIOD // 2
        res = runner.invoke(cli, ["drift", "status", "--hub", server.url, "--judge"])
        assert "1 retraining trigger(s)" in res.output and "psi above 0.25" in res.output
        res = runner.invoke(cli, ["drift", "triggers", "--hub", server.url])
        assert res.exit_code == 0, res.output
        assert "drift triggers (1)" in res.output and "current.mean" in res.output
        close(client)


def test_hub_serve_names_a_bad_drift_flag(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeloop.cli.main import app as cli

    res = CliRunner().invoke(
        cli,
        [
            "hub",
            "serve",
            "--db",
            f"sqlite:///{tmp_path / 'hub.db'}",
            "--data-dir",
            str(tmp_path),
            "--drift-metric",
            "mse",
        ],
    )
    assert res.exit_code == 2 and "drift.metric" in res.output, res.output


def test_a_first_start_judges_only_the_recent_periods(store: HubStore) -> None:
    clock = Clock(T0)
    client = app_on(store, clock)
    register(client, "v1", 1)
    # Sketches of long ago and of the last period arrive at a hub that never judged: the
    # first judgement (on their arrival) looks 10 periods back, 6 to 15.
    clock.now_ns = T0 + 16 * PERIOD + PERIOD // 2
    send(client, "gw1", [sketch_entry("gw1", 1, 0, 2.0), sketch_entry("gw1", 2, 15, 1.0)])
    assert judge_period(client, clock, 15)["judged"] == []  # judged on arrival already
    history = ok(client.get("/v1/drift/history"))
    assert {h["period"] - T0 // PERIOD for h in history} == {15}
    close(client)


def test_two_hub_replicas_judge_a_period_once_and_deliver_its_trigger_once(db_url: str) -> None:
    import threading

    cfg = DriftConfig(metric="psi", threshold=0.25, min_samples=100, persistence=1)
    clock = Clock(T0)
    stores = [HubStore.open(db_url), HubStore.open(db_url)]
    clients = [app_on(s, clock, cfg) for s in stores]
    register(clients[0], "v1", 1)
    send(clients[0], "gw1", [sketch_entry("gw1", 1, 0, 2.0)])
    send(clients[1], "gw2", [sketch_entry("gw2", 1, 0, 2.0)])
    got: list[tuple[int, RetrainTrigger]] = []
    services = [c.app.state.drift for c in clients]  # type: ignore[attr-defined]
    for i, svc in enumerate(services):
        svc.on_trigger(lambda t, i=i: got.append((i, t)))
    clock.now_ns = T0 + PERIOD + PERIOD // 2
    results: list[Any] = [None, None]
    go = threading.Barrier(2)

    def judge(i: int) -> None:
        go.wait()
        results[i] = services[i].judge_due()

    threads = [threading.Thread(target=judge, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(len(r) for r in results) == [0, 1]  # one replica judged the period
    assert len(got) == 1 and got[0][1].scope == "*"
    history = ok(clients[1].get("/v1/drift/history"))
    assert sorted(h["scope"] for h in history) == ["*", "gw1", "gw2"]
    for c, s in zip(clients, stores, strict=True):
        close(c, s)

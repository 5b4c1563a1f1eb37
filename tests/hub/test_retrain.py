"""Feedback and retraining on a real hub app and store (SQLite and PostgreSQL).

Operators label events (history kept; 404 unknown event, 422 bad label); nodes' curated
samples arrive as ``sample`` entries through ``POST /v1/ingest`` (bad ones dead-lettered
with the field named, the good ones beside them kept); a retrain builds its training set
from them, registers a version with lineage, fingerprint and metrics, and starts a
canary rollout; a retrain whose evaluation fails registers nothing and says why.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from edgeloop.hub.app import create_app
from edgeloop.hub.retrain import RetrainConfig, RetrainScheduler
from edgeloop.hub.store import HubStore
from edgeloop.node.samples import SampleCollector, encode_sample
from edgeloop.outbox.base import Entry
from edgeloop.pipeline.types import Features, Scores
from edgeloop.rollout import Evidence, Gates, RolloutPolicy
from edgeloop.security import PrivateKey

from ._control_helpers import NAMES, SEC, Clock, ok, register, windows
from .conftest import event, events_item
from .test_documents import send
from .test_fleet_api import FLEET, report

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

GROUP = "process"  # the window group of the models _control_helpers trains
CONFIG = RetrainConfig(
    min_rows=1000,
    holdout_fraction=0.25,
    quantile=0.99,
    max_holdout_alert_rate=0.05,
    policy=RolloutPolicy(
        canary_fraction=0.2,
        steps=(0.5,),
        shadow_fraction=0.0,
        evidence=Evidence(min_windows=100, min_nodes=1),
        gates=Gates(max_latency_p99_ms=50.0),
    ),
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def hub(store: HubStore, clock: Clock, config: RetrainConfig = CONFIG) -> Any:
    app = create_app(store, clock=clock, signing_key=PrivateKey.generate(), retrain_config=config)
    return TestClient(app)


def with_champion(client: Any) -> None:
    register(client, "v1", 1)  # trained on load 1.0
    ok(client.post("/v1/models/v1/promote", json={"actor": "alice"}))
    ok(client.put("/v1/groups/line-a", json={"act": "champion"}))
    for n in FLEET:
        report(client, n)


def sample_entry(node: str, seq: int, x: np.ndarray, start_ns: int, seed: int) -> Entry:
    """A node's real sample entry: the collector over one period of quiet windows."""
    c = SampleCollector(
        node,
        lambda: np.zeros(1, bool),
        np.zeros(1, np.int32),
        max_rows=500,
        max_bytes=256 * 1024,
        seed=seed,
    )
    c.begin("v1", GROUP, NAMES, start_ns)
    n = x.shape[0]
    t = np.zeros(n, np.int64)
    quiet = Scores(
        np.full(n, 0.05, np.float32), 0.5, np.ones(n, np.float32), np.full(n, -1, np.int32), "c"
    )
    c(Features(GROUP, NAMES, np.zeros(n, np.uint32), t, t, x), quiet)
    new = c.take(start_ns + 60 * SEC)
    assert new is not None
    return Entry(seq, new.priority, new.kind, new.payload, new.samples, new.created_ns)


def upload_samples(
    client: Any, clock: Clock, nodes: list[str], load: float, *, start_ns: int | None = None
) -> None:
    """Each node sends 3 periods of 500 windows of the plant at ``load``, the first
    starting at ``start_ns`` (default: the hub's time); then the clock moves on 200 s."""
    start = clock() if start_ns is None else start_ns
    for k, node in enumerate(nodes):
        x = windows(1500, 100 + k, load=load)
        entries = [
            sample_entry(node, p + 1, x[p * 500 : (p + 1) * 500], start + p * 60 * SEC, p)
            for p in range(3)
        ]
        ack = send(client, node, entries)
        assert ack.accepted == 3 and ack.rejected == 0
    clock.advance(200)
    for n in FLEET:  # the fleet is online when the retrain runs
        report(client, n)


def labelled_event(store: HubStore, seq: int, features: dict[str, float]) -> int:
    store.ingest("gw09", seq - 1, [events_item(seq, [event(features=features)])], {}, now_ns=1)
    return max(e.id for e in store.events(None, None, None, None, 10_000))


def feats(row: np.ndarray) -> dict[str, float]:
    return {n: float(v) for n, v in zip(NAMES, row, strict=True)}


def test_labels_keep_their_history_and_refuse_bad_input(store: HubStore, clock: Clock) -> None:
    client = hub(store, clock)
    eid = labelled_event(store, 1, {"rms": 1.0})
    first = ok(client.put(f"/v1/events/{eid}/label", json={"label": "true_alarm", "actor": "ann"}))
    clock.advance(5)
    body = {"label": "false_alarm", "actor": "bob", "note": "load change, not a fault"}
    second = ok(client.put(f"/v1/events/{eid}/label", json=body))
    assert (first["label"], second["label"]) == ("true_alarm", "false_alarm")
    assert second["at_ns"] - first["at_ns"] == 5 * SEC
    current = ok(client.get("/v1/labels"))["labels"]
    assert [(x["event_id"], x["label"], x["actor"]) for x in current] == [
        (eid, "false_alarm", "bob")
    ]
    history = ok(client.get("/v1/labels", params={"history": "true", "event_id": eid}))
    assert [x["label"] for x in history["labels"]] == ["true_alarm", "false_alarm"]
    assert ok(client.get("/v1/labels", params={"label": "true_alarm"}))["labels"] == []
    bad = client.put(f"/v1/events/{eid}/label", json={"label": "maybe", "actor": "ann"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "label"
    missing = client.put(f"/v1/events/{eid + 99}/label", json={"label": "true_alarm", "actor": "a"})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "event"
    assert len(ok(client.get("/v1/labels", params={"history": "true"}))["labels"]) == 2


def test_bad_sample_documents_are_dead_lettered_naming_the_field(
    store: HubStore, clock: Clock
) -> None:
    client = hub(store, clock)
    good = sample_entry("gw01", 1, windows(50, 1), clock(), 0)
    doc = json.loads(good.payload)
    bad_shape = {**doc, "shape": [50, 3]}
    nan = encode_sample(
        node="gw01",
        version="v1",
        group=GROUP,
        names=NAMES,
        period_start_ns=0,
        period_end_ns=SEC,
        rows=np.full((2, 4), np.nan, np.float32),
    )
    entries = [
        good,
        Entry(2, good.priority, "sample", json.dumps(bad_shape).encode(), 0, 0),
        Entry(3, good.priority, "sample", nan, 0, 0),
    ]
    ack = send(client, "gw01", entries)
    assert (ack.accepted, ack.rejected) == (1, 2)
    dead = ok(client.get("/v1/dead_letters", params={"node": "gw01"}))
    assert sorted((d["field"], d["reason"]) for d in dead) == [
        ("sample.data", "non_finite"),
        ("sample.shape", "malformed"),
    ]
    kept = ok(client.get("/v1/documents", params={"kind": "sample"}))
    assert [d["seq"] for d in kept] == [1]


def test_retrain_registers_a_version_from_node_samples_and_starts_a_canary(
    store: HubStore, clock: Clock
) -> None:
    client = hub(store, clock)
    with_champion(client)
    # The plant's load went up: what is normal now is what the champion alerts on.
    upload_samples(client, clock, FLEET[:4], load=1.4)
    fresh = windows(400, 999, load=1.4)
    false_id = labelled_event(store, 1, feats(fresh[0]))
    true_id = labelled_event(store, 2, feats(np.array([200.0, 5.0, 30.0, 80.0])))
    ok(client.put(f"/v1/events/{false_id}/label", json={"label": "false_alarm", "actor": "o"}))
    ok(client.put(f"/v1/events/{true_id}/label", json={"label": "true_alarm", "actor": "o"}))

    result = ok(client.post("/v1/retrain", json={"reason": "load changed", "actor": "ann"}), 201)
    assert result["outcome"] == "rolled_out", result
    version, m = result["version"], result["metrics"]
    assert result["parent"] == "v1"
    assert m["holdout_alert_rate"] <= CONFIG.max_holdout_alert_rate
    # The champion alerts on the new normal; the retrained model does not.
    assert m["champion_holdout_alert_rate"] > 0.2 > m["holdout_alert_rate"]
    assert (m["labelled_true"], m["labelled_false"]) == (1, 1)
    assert m["true_alarm_recall"] == 1.0 and m["false_alarm_cleared"] == 1.0
    assert m["train_rows"] + m["holdout_rows"] == 4 * 1500

    shown = ok(client.get(f"/v1/models/{version}"))
    assert shown["lineage"] == [version, "v1"]
    assert shown["aliases"] == ["challenger"]
    data = shown["manifest"]["training_data"]
    assert data["source_nodes"] == FLEET[:4]
    assert data["n_rows"] == m["train_rows"] and data["sha256"] == result["dataset"]["sha256"]
    assert data["end_ns"] - data["start_ns"] == 3 * 60 * SEC
    assert shown["manifest"]["metrics"] == m
    assert shown["manifest"]["input_schema"]["feature_names"] == list(NAMES)
    # The edge format was measured, not assumed: fp32 vs int8 on the held-back rows, and
    # the registered artifact is the variant the measurement chose.
    q = shown["manifest"]["quantisation"]
    assert q["metric"] == "alert_agreement" and q["fp32_bytes"] > 0 and q["int8_bytes"] > 0
    as_good = q["int8_quality"] >= q["fp32_quality"]
    gains = q["int8_bytes"] < q["fp32_bytes"] or q["int8_us"] < q["fp32_us"]
    assert q["chosen"] == ("int8" if as_good and gains else "fp32")
    chosen_bytes = q["int8_bytes"] if q["chosen"] == "int8" else q["fp32_bytes"]
    assert shown["manifest"]["size"] == chosen_bytes

    (rollout,) = ok(client.get("/v1/rollouts"))["rollouts"]
    assert (rollout["id"], rollout["challenger"]) == (result["rollout_id"], version)
    assert rollout["stage"] == "canary" and len(rollout["acting"]) == 2
    (run,) = ok(client.get("/v1/retrain/runs"))["runs"]
    assert (run["outcome"], run["version"], run["actor"], run["reason"]) == (
        "rolled_out",
        version,
        "ann",
        "load changed",
    )
    assert run["rollout_id"] == rollout["id"] and run["detail"]["metrics"] == m
    assert run["finished_ns"] is not None


def test_retrain_whose_evaluation_fails_registers_nothing(store: HubStore, clock: Clock) -> None:
    client = hub(store, clock)
    with_champion(client)
    upload_samples(client, clock, FLEET[:4], load=1.4)
    # An operator says a window of the new normal was a true alarm: a model trained on
    # the new normal cannot flag it, so the evaluation fails and nothing is registered.
    eid = labelled_event(store, 1, feats(windows(1, 7, load=1.4)[0]))
    ok(client.put(f"/v1/events/{eid}/label", json={"label": "true_alarm", "actor": "o"}))
    before = ok(client.get("/v1/models"))["versions"]

    result = ok(client.post("/v1/retrain", json={"reason": "try", "actor": "ann"}), 201)
    assert result["outcome"] == "refused" and result["version"] is None
    assert "labelled true alarms" in result["why"], result["why"]
    assert result["metrics"]["true_alarm_recall"] == 0.0
    assert ok(client.get("/v1/models"))["versions"] == before
    assert ok(client.get("/v1/rollouts"))["rollouts"] == []
    # Too little data is refused too, and says how much there was.
    later = ok(client.post("/v1/retrain", json={"since_ns": clock() + SEC, "actor": "ann"}), 201)
    assert later["outcome"] == "refused" and "0 usable sample rows" in later["why"]
    runs = ok(client.get("/v1/retrain/runs"))["runs"]
    assert [r["outcome"] for r in runs] == ["refused", "refused"]
    assert runs[0]["detail"]["why"] == result["why"]


def test_a_second_run_while_one_is_in_progress_is_refused(store: HubStore, clock: Clock) -> None:
    client = hub(store, clock)
    service: Any = client.app.state.retrain  # type: ignore[attr-defined]
    service._running.acquire()
    try:
        r = client.post("/v1/retrain", json={"actor": "ann"})
        assert r.status_code == 409 and r.json()["error"]["reason"] == "busy"
    finally:
        service._running.release()
    done = ok(client.post("/v1/retrain", json={"actor": "ann"}), 201)
    assert done["outcome"] == "refused" and "no champion" in done["why"]


def test_scheduled_runs_are_recorded(store: HubStore, clock: Clock) -> None:
    client = hub(store, clock)
    scheduler = RetrainScheduler(client.app.state.retrain, 0.05).start()
    deadline = time.monotonic() + 20
    while scheduler.runs < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    scheduler.stop()
    client.app.state.retrain.close()
    runs = ok(client.get("/v1/retrain/runs"))["runs"]
    assert len(runs) >= 2
    assert {(r["actor"], r["outcome"], r["reason"]) for r in runs} == {
        ("schedule", "refused", "schedule: every 0.05 s")
    }


def test_a_run_reads_the_newest_documents(store: HubStore, clock: Clock) -> None:
    client = hub(store, clock, replace(CONFIG, max_documents=4, min_rows=5000))
    with_champion(client)
    start = clock()
    upload_samples(client, clock, FLEET[:4], load=1.4)  # 3 periods of 500 rows per node
    result = ok(client.post("/v1/retrain", json={"actor": "ann"}), 201)
    assert result["outcome"] == "refused" and "2000 usable sample rows" in result["why"]
    data = result["dataset"]
    # The 4 newest of 12 documents: every node's last period.
    assert (data["documents"], data["rows"]) == (4, 2000)
    assert data["source_nodes"] == FLEET[:4]
    assert data["start_ns"] == start + 2 * 60 * SEC and data["end_ns"] == start + 3 * 60 * SEC


def test_too_few_rows_for_the_quantile_after_the_holdout_are_refused_not_failed(
    store: HubStore, clock: Clock
) -> None:
    # 2000 rows pass min_rows 1000, but 0.9995 needs 2000 to fit after a 0.25 holdout
    # (2667 in all): the run is refused, saying why, rather than failing in fit_model.
    client = hub(store, clock, replace(CONFIG, max_documents=4, quantile=0.9995))
    with_champion(client)
    upload_samples(client, clock, FLEET[:4], load=1.4)
    result = ok(client.post("/v1/retrain", json={"actor": "ann"}), 201)
    assert result["outcome"] == "refused", result
    assert "2000 usable sample rows" in result["why"] and "need 2667" in result["why"]
    assert "quantile 0.9995 needs 2000 after the 0.25 holdout" in result["why"]


def test_a_queued_run_runs_in_the_worker_thread(store: HubStore, clock: Clock) -> None:
    client = hub(store, clock)
    with_champion(client)
    upload_samples(client, clock, FLEET[:4], load=1.4)
    r = client.post("/v1/retrain", json={"actor": "ann", "reason": "queued", "wait": False})
    assert r.status_code == 202
    deadline = time.monotonic() + 60
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = ok(client.get("/v1/retrain/runs"))["runs"]
        if runs and runs[0]["outcome"] != "running":
            break
        time.sleep(0.05)
    client.app.state.retrain.close()
    assert [(r["reason"], r["outcome"]) for r in runs] == [("queued", "rolled_out")]


def test_a_run_abandoned_by_a_dead_hub_blocks_until_stale_then_is_marked_failed(
    store: HubStore, clock: Clock
) -> None:
    client = hub(store, clock, replace(CONFIG, stale_s=600))
    service = client.app.state.retrain
    service._begin("died with its hub", "ann")  # a run whose hub was killed mid-run
    clock.advance(60)
    r = client.post("/v1/retrain", json={"actor": "bob"})
    assert r.status_code == 409 and "in progress" in r.json()["error"]["detail"]
    clock.advance(600)
    done = ok(client.post("/v1/retrain", json={"actor": "bob"}), 201)
    assert done["outcome"] == "refused"
    first, second = ok(client.get("/v1/retrain/runs"))["runs"]
    assert (first["outcome"], first["detail"]["why"]) == (
        "failed",
        "abandoned: still running after 600 s",
    )
    assert (second["actor"], second["outcome"]) == ("bob", "refused")

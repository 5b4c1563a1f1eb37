"""Drift that persists starts a retraining run with no human step: ``create_app`` wires
``DriftService.on_trigger`` to ``RetrainService.submit`` (the worker thread, not the
request or ingest path that judged the period). The run trains from the drift's onset
(the streak's first period), kept while one champion acts (``hub/drift_onset.py``)."""

from __future__ import annotations

import doctest
import time
import warnings
from dataclasses import replace
from typing import Any

from edgeloop.drift import DriftConfig, RetrainTrigger
from edgeloop.hub import drift_onset
from edgeloop.hub.app import create_app
from edgeloop.hub.drift_onset import DriftOnset, onset_ns
from edgeloop.hub.retrain import RetrainConfig
from edgeloop.hub.store import HubStore
from edgeloop.security import PrivateKey

from ._control_helpers import SEC, T0, Clock, ok
from .test_documents import send
from .test_drift_service import PERIOD, judge_period, sketch_entry
from .test_fleet_api import FLEET, report
from .test_retrain import CONFIG, upload_samples, with_champion

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

DRIFT = DriftConfig(metric="psi", threshold=0.25, min_samples=100, persistence=2)
P0 = T0 // PERIOD  # the period index of T0 (T0 is a period boundary)


def drift_hub(store: HubStore, clock: Clock, config: RetrainConfig = CONFIG) -> tuple[Any, Any]:
    app = create_app(
        store,
        clock=clock,
        signing_key=PrivateKey.generate(),
        drift_config=DRIFT,
        retrain_config=config,
    )
    return app, TestClient(app)


def drift_periods(client: Any, clock: Clock, periods: range) -> None:
    """gw1 and gw2 send sketches of the plant at load 1.6 (drifted from v1's 1.0) for
    each period; the hub judges each."""
    for p in periods:
        for node in ("gw1", "gw2"):
            send(client, node, [sketch_entry(node, p + 1, p, 1.6)])
        for n in FLEET:
            report(client, n)
        judge_period(client, clock, p)


def finished_runs(client: Any, n: int) -> list[dict[str, Any]]:
    """The runs once ``n`` of them finished (a minute at most)."""
    deadline = time.monotonic() + 60
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = ok(client.get("/v1/retrain/runs"))["runs"]
        if len(runs) >= n and all(r["outcome"] != "running" for r in runs):
            break
        time.sleep(0.05)
    assert len(runs) == n, runs
    return runs


def test_persistent_drift_starts_a_retraining_run_on_the_data_since_its_onset(
    store: HubStore,
) -> None:
    # The samples come first: judging a period whose sketches are in happens at the
    # hub's time, so the clock must stay behind the drift periods while they arrive.
    clock = Clock(T0 - 600 * SEC)
    app, client = drift_hub(store, clock)
    with_champion(client)
    upload_samples(client, clock, FLEET[4:8], load=1.0)  # the old regime, before the onset
    upload_samples(client, clock, FLEET[:4], load=1.6, start_ns=T0)  # the drifted periods
    assert clock() < T0
    drift_periods(client, clock, range(2))  # two drifted periods: the streak's persistence
    (run,) = finished_runs(client, 1)
    # Its rollout is deciding: the champion still drifts, but a further trigger starts no
    # run (another model could not be rolled out now, only registered).
    drift_periods(client, clock, range(2, 4))
    time.sleep(0.5)
    assert len(ok(client.get("/v1/retrain/runs"))["runs"]) == 1
    assert ok(client.get("/v1/drift"))["triggers"] == 2
    app.state.retrain.close()
    assert run["actor"] == "drift" and run["reason"].startswith("drift: ")
    assert run["outcome"] == "rolled_out", run["detail"]
    data = run["detail"]["dataset"]
    assert data["since_ns"] == T0 and data["since_from"] == "drift onset"
    # Only the drifted regime: periods 0 and 1 of the four nodes (period 2 ends after the
    # run's time); none of the old regime's documents, within window_s as they are.
    assert data["source_nodes"] == FLEET[:4]
    assert (data["documents"], data["start_ns"]) == (8, T0)
    assert data["until_ns"] - T0 < CONFIG.window_s * SEC
    (rollout,) = ok(client.get("/v1/rollouts"))["rollouts"]
    assert rollout["challenger"] == run["version"] and rollout["champion"] == "v1"


def test_triggers_against_one_champion_keep_the_first_onset_a_new_champion_a_new_one(
    store: HubStore,
) -> None:
    clock = Clock(T0 - 300 * SEC)
    app, client = drift_hub(store, clock, replace(CONFIG, start_rollout=False))
    with_champion(client)
    upload_samples(client, clock, FLEET[:4], load=1.6, start_ns=T0)
    drift_periods(client, clock, range(2))  # trigger 1: onset period 0
    first = finished_runs(client, 1)[-1]
    assert first["outcome"] == "registered", first["detail"]
    drift_periods(client, clock, range(2, 4))  # trigger 2: its own streak began at period 2
    second = finished_runs(client, 2)[-1]
    assert second["outcome"] == "registered", second["detail"]
    assert second["detail"]["dataset"]["since_ns"] == T0  # still the first onset
    assert second["detail"]["dataset"]["documents"] == 12
    ok(client.post(f"/v1/models/{first['version']}/promote", json={"actor": "alice"}))
    drift_periods(client, clock, range(4, 6))  # trigger 3, against the new champion
    third = finished_runs(client, 3)[-1]
    app.state.retrain.close()
    data = third["detail"]["dataset"]
    assert (data["since_ns"], data["since_from"]) == (T0 + 4 * PERIOD, "drift onset")
    # Every sample predates this onset: nothing to train on, and the run says so.
    assert third["outcome"] == "refused" and third["detail"]["why"].startswith("data: 0 ")
    assert third["parent"] is None and data["documents"] == 0
    assert ok(client.get("/v1/drift"))["triggers"] == 3


def trigger(period: int, streak: int) -> RetrainTrigger:
    return RetrainTrigger(period, "*", streak, ("temp.mean",), {"temp.mean": 0.4}, "drift")


def test_the_onset_is_kept_while_one_champion_acts() -> None:
    assert onset_ns(trigger(P0 + 1, 2), PERIOD) == T0
    o = DriftOnset(PERIOD)
    assert o.since("v1", trigger(P0 + 1, 2)) == T0
    assert o.since("v1", trigger(P0 + 5, 3)) == T0  # a later streak, same champion
    assert o.since("v2", trigger(P0 + 7, 2)) == T0 + 6 * PERIOD  # promoted: new onset
    # A rollback to v1 is a new acting period too: its old onset is not reused.
    assert o.since("v1", trigger(P0 + 9, 2)) == T0 + 8 * PERIOD
    assert o.since(None, trigger(P0 + 11, 2)) == T0 + 10 * PERIOD  # no champion at all


def test_the_onset_docstring_examples_run() -> None:
    result = doctest.testmod(drift_onset)
    assert result.failed == 0 and result.attempted == 10  # imports and calls

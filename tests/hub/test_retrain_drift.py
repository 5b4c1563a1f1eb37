"""Drift that persists starts a retraining run with no human step: ``create_app`` wires
``DriftService.on_trigger`` to ``RetrainService.submit`` (the worker thread, not the
request or ingest path that judged the period)."""

from __future__ import annotations

import time
import warnings
from typing import Any

from edgeloop.drift import DriftConfig
from edgeloop.hub.app import create_app
from edgeloop.hub.store import HubStore
from edgeloop.security import PrivateKey

from ._control_helpers import SEC, T0, Clock, ok
from .test_documents import send
from .test_drift_service import judge_period, sketch_entry
from .test_fleet_api import FLEET, report
from .test_retrain import CONFIG, upload_samples, with_champion

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


def test_persistent_drift_starts_a_retraining_run(store: HubStore) -> None:
    # The samples come first (periods before T0): judging a period whose sketches are in
    # happens at the hub's time, so the clock must not run ahead of the drift periods.
    clock = Clock(T0 - 300 * SEC)
    app = create_app(
        store,
        clock=clock,
        signing_key=PrivateKey.generate(),
        drift_config=DriftConfig(metric="psi", threshold=0.25, min_samples=100, persistence=2),
        retrain_config=CONFIG,
    )
    client: Any = TestClient(app)
    with_champion(client)
    upload_samples(client, clock, FLEET[:4], load=1.6)
    for p in (0, 1):  # two drifted periods: the streak reaches persistence
        for node in ("gw1", "gw2"):
            send(client, node, [sketch_entry(node, p + 1, p, 1.6)])
        for n in FLEET:
            report(client, n)
        judge_period(client, clock, p)
    deadline = time.monotonic() + 60
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = ok(client.get("/v1/retrain/runs"))["runs"]
        if runs and runs[-1]["outcome"] != "running":
            break
        time.sleep(0.05)
    app.state.retrain.close()
    assert len(runs) == 1, runs
    (run,) = runs
    assert run["actor"] == "drift" and run["reason"].startswith("drift: ")
    assert run["outcome"] == "rolled_out", run["detail"]
    (rollout,) = ok(client.get("/v1/rollouts"))["rollouts"]
    assert rollout["challenger"] == run["version"] and rollout["champion"] == "v1"
    assert ok(client.get("/v1/drift"))["triggers"] == 1

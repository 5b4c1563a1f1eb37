"""Drift end to end: a real gateway process whose simulated plant changes its load regime
sends per-period sketches of its acting model's features; a real hub judges the periods
after the change drifted for the features the load moves (vibration level: std, rms,
peak-to-peak, the shaft band) and not for the others, and triggers retraining.

``python -m edgeloop.node --config gw.yaml`` as a human starts it; the hub is
``create_app`` on a SQLite file with its drift ticker running, as ``hub serve`` runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from edgeloop.drift import DriftConfig, RetrainTrigger
from edgeloop.hub.app import create_app
from edgeloop.hub.drift_service import DriftService
from edgeloop.hub.drift_ticker import DriftTicker
from edgeloop.hub.keys import hub_key
from edgeloop.hub.server import BackgroundServer
from edgeloop.hub.store import HubStore
from edgeloop.learn import fit_model, to_onnx
from edgeloop.node.build import resolve_spec
from edgeloop.pipeline.pipeline import Pipeline
from edgeloop.registry import describe
from edgeloop.sim.build import build_sim, resolve_floor

GROUP = "vibration"
DETECTOR = "pca_t2q_vibration"
FLOOR = {"n_machines": 3, "gateway": "gw1", "seed": 3}
PERIOD_S = 4.0
SHIFT_S, RAMP_S, RUN_S = 9.0, 1.0, 20.0
MOVED = {"std", "rms", "p2p", "band_0"}  # the vibration level follows the load
STILL = {"mean"} | {f"band_{i}" for i in range(1, 8)}  # the signal's mean, higher bands
# (kurtosis and crest move somewhat with the load and are noisy over ~70 windows: the
# test asserts neither way on them.)
CONFIG = DriftConfig(metric="psi", threshold=0.8, min_samples=40, persistence=2)
RUN = r"""
import sys
from edgeloop.node.main import cli
sys.exit(cli(["--config", sys.argv[1], "--duration", sys.argv[3], "--start-ns", sys.argv[4],
              "--stats-out", sys.argv[2]]))
"""


def run_gateway(cfg: dict[str, Any], tmp: Path, start_ns: int) -> dict[str, Any]:
    """The gateway as a human starts it, its simulated plant starting at ``start_ns``."""
    path, stats = tmp / "gw1.yaml", tmp / "stats.json"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(path), str(stats), str(RUN_S), str(start_ns)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(stats.read_text())
    return result


@cache
def model() -> tuple[bytes, dict[str, Any]]:
    """The gateway's own floor at its usual load, one simulated minute: the training data."""
    spec = resolve_spec("factory").model_copy(update={"detectors": ()})
    sim = build_sim(resolve_floor({"generate": FLOOR}), [], seed=1, start_ns=0)
    pipe = Pipeline.from_spec(spec, sim.catalog)
    rows: list[np.ndarray] = []
    names: tuple[str, ...] = ()
    for _ in range(60):
        for f in pipe.process(sim.step(10**9), sim.now_ns).features:
            if f.group == GROUP:
                rows.append(f.values)
                names = f.names
    x = np.concatenate(rows)
    fitted = fit_model(x, names, seed=1, quantile=0.995, group=GROUP, variance=0.9)
    data = to_onnx(fitted)
    manifest = describe(
        fitted,
        data,
        x,
        version="v1",
        preset="factory",
        start_ns=0,
        end_ns=60 * 10**9,
        source_nodes=("gw1",),
        creator="test",
        created_ns=1,
    )
    return data, manifest.to_dict()


def test_a_gateway_whose_plant_changes_its_load_regime_is_judged_drifted_on_the_moved_features(
    tmp_path: Path,
) -> None:
    data, manifest = model()
    spec: dict[str, Any] = resolve_spec("factory").model_dump(mode="json")
    (tmp_path / "v1.onnx").write_bytes(data)
    spec["detectors"].append(
        {"group": GROUP, "type": "onnx", "name": DETECTOR, "model": str(tmp_path / "v1.onnx")}
    )
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    store = HubStore.open(f"sqlite:///{tmp_path / 'hub.db'}")
    app = create_app(
        store, signing_key=hub_key(tmp_path / "hub"), drift_config=CONFIG, drift_period_s=PERIOD_S
    )
    drift: DriftService = app.state.drift
    got: list[RetrainTrigger] = []
    drift.on_trigger(got.append)
    ticker = DriftTicker(drift, every_s=0.5).start()
    with BackgroundServer(app) as server:
        hub = httpx.Client(base_url=server.url, timeout=10)
        (tmp_path / "hub.pem").write_text(hub.get("/v1/keys").json()["keys"][0]["pem"])
        assert hub.put(f"/v1/artifacts/{manifest['artifact']}", content=data).status_code == 201
        assert hub.post("/v1/models", json={"manifest": manifest, "actor": "t"}).status_code == 201
        assert hub.post("/v1/models/v1/promote", json={"actor": "t"}).status_code == 200
        assert hub.put("/v1/groups/line-a", json={"act": "champion"}).status_code == 200
        load = {"regimes": [[0, 0.7], [SHIFT_S, 1.5]], "ramp_s": RAMP_S}
        cfg: dict[str, Any] = {
            "node_id": "gw1",
            "pipeline": str(tmp_path / "pipeline.yaml"),
            "outbox": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
            "uplink": {"kind": "http", "url": server.url},
            "models": {
                "dir": str(tmp_path / "models"),
                "trusted_keys": [str(tmp_path / "hub.pem")],
                "fleet_group": "line-a",
                "reconcile_every_s": 0.5,
                "measure_every_s": PERIOD_S,
            },
            "sources": [
                {
                    "type": "sim",
                    "seed": 5,
                    "tick_s": 0.1,
                    "factory": {"generate": {**FLOOR, "load": load}},
                }
            ],
        }
        # The plant starts once the interpreter is surely up: its time 0 is known.
        started_ns = time.time_ns() + 4 * 10**9
        stats = run_gateway(cfg, tmp_path, started_ns)
        assert [s["version"] for s in stats["models"]["active"]] == ["v1"]
        # Judge what is left (the last periods) as the ticker would a few seconds later.
        drift.judge_due(time.time_ns() + int(2 * PERIOD_S * 1e9))
        history = hub.get("/v1/drift/history", params={"scope": "gw1"}).json()
        status = hub.get("/v1/drift").json()
        hub.close()
    ticker.stop()
    app.state.retrain.close()  # the trigger queued a retraining run: let it end
    store.close()

    shift_ns = started_ns + int((SHIFT_S + RAMP_S) * 1e9)
    judged = [h for h in history if h["verdict"] != "unjudged"]
    before = [h for h in judged if h["period_end_ns"] <= started_ns + int(SHIFT_S * 1e9)]
    after = [h for h in judged if h["period_start_ns"] >= shift_ns]
    assert before and after, history
    for h in before:
        assert not set(h["drifted_features"]) & (MOVED | STILL), h
    for h in after:
        assert set(h["drifted_features"]) >= MOVED, h
        assert not set(h["drifted_features"]) & STILL, h
        assert h["rows"]["std"] >= CONFIG.min_samples
    # Persisting drift triggered retraining, handed to the callback once.
    assert len(got) >= 1 and set(got[0].features) >= MOVED, got
    assert status["last_trigger"]["delivered_ns"] is not None
    assert status["rejected"] == {}

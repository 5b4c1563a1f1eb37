"""A real gateway process (``edgeloop.node``) against a real hub: it reports, gets its
desired state, downloads the hub-signed model by ranges, verifies it against the hub's
served key, swaps, and the hub's fleet status shows it in sync. Offline while a new
champion is promoted, it converges on the next start."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import yaml

from edgeloop.hub.app import create_app
from edgeloop.hub.keys import hub_key
from edgeloop.hub.server import BackgroundServer
from edgeloop.hub.store import HubStore
from edgeloop.learn import fit_model, to_onnx
from edgeloop.node.build import resolve_spec
from edgeloop.registry import describe
from edgeloop.scenarios.plan import plan_floor
from edgeloop.scenarios.training import normal_features

GROUP = "vibration"
DETECTOR = "pca_t2q_vibration"
RUN = r"""
import sys
from edgeloop.node.main import cli
sys.exit(cli(["--config", sys.argv[1], "--duration", "6", "--stats-out", sys.argv[2]]))
"""


@cache
def model(version: str, quantile: float, variance: float) -> tuple[bytes, dict[str, Any]]:
    plan = plan_floor(1, 6, 60.0, 0, seed=1, partition=None)
    names, x = normal_features(plan, "factory", 60.0, seed=1)[GROUP]
    fitted = fit_model(x, names, seed=1, quantile=quantile, group=GROUP, variance=variance)
    data = to_onnx(fitted)
    manifest = describe(
        fitted,
        data,
        x,
        version=version,
        preset="factory",
        start_ns=0,
        end_ns=60 * 10**9,
        source_nodes=("gw1",),
        creator="test",
        created_ns=1,
    )
    return data, manifest.to_dict()


def publish(hub: httpx.Client, version: str, quantile: float, variance: float) -> None:
    data, manifest = model(version, quantile, variance)
    assert hub.put(f"/v1/artifacts/{manifest['artifact']}", content=data).status_code == 201
    r = hub.post("/v1/models", json={"manifest": manifest, "actor": "test"})
    assert r.status_code == 201, r.text
    r = hub.post(f"/v1/models/{version}/promote", json={"actor": "test"})
    assert r.status_code == 200, r.text


def run_gateway(cfg: dict[str, Any], tmp: Path) -> dict[str, Any]:
    path, stats = tmp / "gw1.yaml", tmp / "stats.json"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(path), str(stats)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(stats.read_text())["models"])


def test_a_gateway_converges_on_the_hubs_champion_and_again_after_being_offline(
    tmp_path: Path,
) -> None:
    # The spec starts on a model of its own (v0), unknown to the hub.
    spec: dict[str, Any] = resolve_spec("factory").model_dump(mode="json")
    (tmp_path / "v0.onnx").write_bytes(model("v0", 0.999, 0.95)[0])
    spec["detectors"].append(
        {"group": GROUP, "type": "onnx", "name": DETECTOR, "model": str(tmp_path / "v0.onnx")}
    )
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    key = hub_key(tmp_path / "hub")
    store = HubStore.open(f"sqlite:///{tmp_path / 'hub.db'}")
    with BackgroundServer(create_app(store, signing_key=key)) as server:
        hub = httpx.Client(base_url=server.url, timeout=10)
        (tmp_path / "hub.pem").write_text(hub.get("/v1/keys").json()["keys"][0]["pem"])
        publish(hub, "v1", 0.995, 0.9)
        assert hub.put("/v1/groups/line-a", json={"act": "champion"}).status_code == 200
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
                "chunk_bytes": 1024,
            },
            "sources": [
                {
                    "type": "sim",
                    "seed": 3,
                    "tick_s": 0.1,
                    "factory": {"generate": {"n_machines": 3, "gateway": "gw1", "seed": 3}},
                }
            ],
        }
        first = run_gateway(cfg, tmp_path)
        assert first["status"] == "converged", first
        assert [s["version"] for s in first["active"]] == ["v1"]
        (row,) = hub.get("/v1/fleet/status").json()["nodes"]
        assert (row["node"], row["group"], row["actual_version"]) == ("gw1", "line-a", "v1")
        assert row["in_sync"] and row["status"] == "converged"

        # Offline, a new champion is promoted; the next start converges on it, keeping v1.
        publish(hub, "v2", 0.99, 0.85)
        (row,) = hub.get("/v1/fleet/status").json()["nodes"]
        assert not row["in_sync"] and row["desired_version"] == "v2"
        second = run_gateway(cfg, tmp_path)
        assert [s["version"] for s in second["active"]] == ["v2"], second
        assert second["previous"]["version"] == "v1"
        (row,) = hub.get("/v1/fleet/status").json()["nodes"]
        assert row["in_sync"] and row["actual_version"] == "v2"
        # Telemetry went to the same hub's ingest.
        assert hub.get("/v1/stats").json()["overall"]["entries"] > 0
        hub.close()
    store.close()

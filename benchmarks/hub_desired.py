"""Control-plane reads: ``GET /v1/nodes/{node}/desired`` and ``GET /v1/fleet/status``
against a fleet of ``--nodes`` nodes (in-process ASGI client, SQLite file in a temp dir).

Every node reports once (joining one group on ``champion``); then ``--requests`` desired
documents are fetched round-robin and the fleet status ``--status`` times. Reported:
median and p90 latency of each, in ms (wall time of the request, one client thread).

    .venv/bin/python benchmarks/hub_desired.py --nodes 10
    .venv/bin/python benchmarks/hub_desired.py --nodes 1000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from edgeloop.hub.app import create_app
from edgeloop.hub.store import HubStore
from edgeloop.registry import DataFingerprint, InputSchema, Manifest, artifact_id
from edgeloop.security import PrivateKey

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


def _ms(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--status", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = HubStore.open(f"sqlite:///{Path(tmp) / 'hub.db'}")
        c = TestClient(create_app(store, signing_key=PrivateKey.generate()))
        data = b"stand-in model bytes: the hub never parses an artifact" * 100
        m = Manifest(
            version="v1",
            artifact=artifact_id(data),
            size=len(data),
            kind="pca_t2q",
            input_schema=InputSchema(("a", "b"), "factory"),
            training_data=DataFingerprint("0" * 64, 0, 1, ("gw0",), 10),
        )
        c.put(f"/v1/artifacts/{m.artifact}", content=data)
        c.post("/v1/models", json={"manifest": m.to_dict(), "actor": "bench"})
        c.post("/v1/models/v1/promote", json={"actor": "bench"})
        c.put("/v1/groups/g", json={"act": "champion"})
        for i in range(a.nodes):
            body = {"group": "g", "generation": 0, "status": "converging"}
            c.put(f"/v1/nodes/gw{i}/actual", json=body)
        desired = []
        for i in range(a.requests):
            t = time.perf_counter()
            r = c.get(f"/v1/nodes/gw{i % a.nodes}/desired")
            desired.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
        status = []
        for _ in range(a.status):
            t = time.perf_counter()
            c.get("/v1/fleet/status")
            status.append(time.perf_counter() - t)
        store.close()
    print(
        f"nodes={a.nodes}: desired median {statistics.median(desired) * 1e3:.2f} ms, "
        f"p90 {_ms(desired, 0.9):.2f} ms; fleet status median "
        f"{statistics.median(status) * 1e3:.1f} ms, p90 {_ms(status, 0.9):.1f} ms"
    )


if __name__ == "__main__":
    main()

"""Builders of the model and fleet API tests: real ONNX artifacts, their manifests, a
hub app on a real store, and a node that reconciles against it over HTTP."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from edgeloop.desired import (
    ActualState,
    DesiredState,
    Download,
    LocalArtifact,
    Report,
    Swap,
    Verify,
    add_range,
    reconcile,
)
from edgeloop.hub.app import create_app
from edgeloop.hub.store import HubStore
from edgeloop.learn import fit_model, to_onnx
from edgeloop.registry import Manifest, describe
from edgeloop.security import PrivateKey, PublicKey, Signature, trust, verify_artifact

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 fork for its TestClient (see tests/hub/test_app.py).
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

NAMES = ("temp.mean", "temp.std", "pressure.mean", "current.mean")
T0 = 1_764_000_000_000_000_000
SEC = 1_000_000_000


class Clock:
    """A hub clock the test moves by hand."""

    def __init__(self, now_ns: int = T0) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += int(seconds * SEC)


def windows(n: int, seed: int, load: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    x = np.column_stack(
        [
            60 + 5 * load * z[:, 0],
            0.5 + 0.05 * np.abs(z[:, 1]),
            3 + 0.2 * z[:, 0],
            10 * load + z[:, 1],
        ]
    )
    return x.astype(np.float32)


@functools.cache
def trained(version: str, seed: int, parent: str | None = None) -> tuple[bytes, Manifest]:
    """A real model: fitted, exported to ONNX, described by its manifest."""
    x = windows(2000, seed)
    model = fit_model(x, NAMES, quantile=0.99, group="process")
    data = to_onnx(model)
    manifest = describe(
        model,
        data,
        x,
        version=version,
        preset="factory",
        start_ns=T0,
        end_ns=T0 + 3600 * SEC,
        source_nodes=["gw1", "gw2"],
        creator="test",
        created_ns=T0 + seed,
        metrics={"recall": 0.9 + seed / 100},
        parent=parent,
    )
    return data, manifest


def make_client(store: HubStore, clock: Clock, key: PrivateKey | None = None) -> TestClient:
    return TestClient(create_app(store, clock=clock, signing_key=key or PrivateKey.generate()))


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


def register(client: TestClient, version: str, seed: int, parent: str | None = None) -> Any:
    data, manifest = trained(version, seed, parent)
    client.put(f"/v1/artifacts/{manifest.artifact}", content=data)
    return ok(
        client.post("/v1/models", json={"manifest": manifest.to_dict(), "actor": "alice"}), 201
    )


def served_keys(client: TestClient) -> dict[str, PublicKey]:
    keys = ok(client.get("/v1/keys"))["keys"]
    return dict(trust(PublicKey.from_pem(k["pem"].encode()) for k in keys))


class HttpNode:
    """A node's reconcile loop against the hub API: the pure ``desired.reconcile`` plans,
    this executor downloads the planned ranges over HTTP, verifies with the served key,
    swaps, and reports its actual state (``PUT /v1/nodes/{node}/actual``)."""

    def __init__(self, client: TestClient, node: str, group: str, chunk: int = 4096) -> None:
        self.client, self.node, self.group, self.chunk = client, node, group, chunk
        self.state = ActualState(node)
        self.blobs: dict[str, bytearray] = {}
        self.requests: list[tuple[str, int, int]] = []
        self.trusted = served_keys(client)

    def report(self, status: str = "converging", detail: str = "") -> None:
        slot: Callable[[Any], dict[str, Any]] = lambda s: {  # noqa: E731
            "version": s.version,
            "artifact": s.artifact,
            "size": s.size,
            "mode": s.mode,
        }
        st = self.state
        # The node adapter's document (edgeloop.node.reconcile.Reconciler.actual_doc).
        body = {
            "schema": "edgeloop.actual/1",
            "node": self.node,
            "group": self.group,
            "generation": st.generation,
            "status": status,
            "detail": detail,
            "active": [slot(s) for s in st.active],
            "previous": None if st.previous is None else slot(st.previous),
            "pipeline_digest": st.pipeline_digest,
            "artifacts": [
                {
                    "artifact": a.artifact,
                    "size": a.size,
                    "held": sum(e - s for s, e in a.held),
                    "verified": a.verified,
                    "failures": a.failures,
                    "last_error": a.last_error,
                }
                for a in st.artifacts.values()
            ],
            "refused": [],
        }
        ok(self.client.put(f"/v1/nodes/{self.node}/actual", json=body), 204)

    def desired(self) -> DesiredState:
        r = self.client.get(f"/v1/nodes/{self.node}/desired")
        assert r.status_code == 200, r.text
        return DesiredState.from_bytes(r.content)

    def step(self) -> str:
        """One reconcile round; returns the reported status."""
        doc = self.desired()
        status = "converging"
        for action in reconcile(doc, self.state, chunk_size=self.chunk):
            if isinstance(action, Download):
                self._download(action, doc)
            elif isinstance(action, Verify):
                self._verify(action)
            elif isinstance(action, Swap):
                self.state = ActualState(
                    self.node,
                    action.generation,
                    action.models,
                    action.keep,
                    action.pipeline_digest,
                    self.state.artifacts,
                )
            elif isinstance(action, Report):
                status = action.status
        self.report(status)
        return status

    def converge(self, rounds: int = 5) -> int:
        for i in range(1, rounds + 1):
            if self.step() == "converged":
                return i
        raise AssertionError(f"{self.node} did not converge in {rounds} rounds")

    def _download(self, action: Download, doc: DesiredState) -> None:
        size = next(m.size for m in doc.models if m.artifact == action.artifact)
        blob = self.blobs.setdefault(action.artifact, bytearray(size))
        local = self.state.artifacts.get(action.artifact) or LocalArtifact(action.artifact, size)
        held = local.held
        for start, end in action.ranges:
            r = self.client.get(
                f"/v1/artifacts/{action.artifact}", headers={"Range": f"bytes={start}-{end - 1}"}
            )
            assert r.status_code == 206, r.text
            assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
            assert r.headers["etag"] == f'"{action.artifact}"'
            self.requests.append((action.artifact, start, end))
            blob[start:end] = r.content
            held = add_range(held, start, end)
        self._put(LocalArtifact(action.artifact, size, held))

    def _verify(self, action: Verify) -> None:
        manifest = self.client.get(f"/v1/models/{action.version}/manifest")
        assert manifest.status_code == 200, manifest.text
        sig = ok(self.client.get(f"/v1/models/{action.version}/signature"))
        local = self.state.artifacts[action.artifact]
        verify_artifact(
            manifest.content,
            Signature.from_dict(sig),
            self.trusted,
            bytes(self.blobs[action.artifact]),
        )
        self._put(LocalArtifact(local.artifact, local.size, local.held, verified=True))

    def _put(self, local: LocalArtifact) -> None:
        arts = {**self.state.artifacts, local.artifact: local}
        s = self.state
        self.state = ActualState(
            s.node, s.generation, s.active, s.previous, s.pipeline_digest, arts
        )

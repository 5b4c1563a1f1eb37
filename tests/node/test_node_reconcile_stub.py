"""Shared pieces of the model-delivery tests (no tests here): a stub hub and signed models.

:class:`StubHub` is a real HTTP/1.1 server (asyncio streams, its own thread) serving the
documented shapes: ``GET /v1/nodes/{node}/desired`` (a ``DesiredState`` as the
``desired`` package serialises it; 404 for a node without one), ``GET /v1/artifacts/{id}``
honouring ``Range`` (206 + ``Content-Range``), ``GET /v1/models/{version}`` (JSON with the
signed manifest bytes as ``manifest_text`` and the ``signature``, as the hub's registry
API answers), ``PUT /v1/nodes/{node}/actual`` (recorded). It can cut the link in
the middle of an artifact body (``cut_after``: the next responses stop after that many
body bytes and the connection is aborted) and serve corrupted bytes (``corrupt``).

:func:`signed_models` trains real PCA T²+Q models on simulated normal windows of the
factory pipeline's ``vibration`` group, exports them to ONNX and signs their manifests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edgeloop.desired import DesiredState, ModelSlot
from edgeloop.learn.export import to_onnx
from edgeloop.learn.train import fit_model
from edgeloop.node.build import resolve_spec
from edgeloop.registry import describe
from edgeloop.scenarios.plan import plan_floor
from edgeloop.scenarios.training import normal_features
from edgeloop.security import PrivateKey, Signature, save_public_key

GROUP = "vibration"
DETECTOR = "pca_t2q_vibration"


@dataclass
class Published:
    version: str
    data: bytes
    manifest: bytes
    signature: Signature

    @property
    def artifact(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def slot(self, mode: str = "act") -> ModelSlot:
        return ModelSlot(self.version, self.artifact, len(self.data), mode)  # type: ignore[arg-type]


@cache
def _features() -> tuple[tuple[str, ...], np.ndarray]:
    plan = plan_floor(1, 6, 60.0, 0, seed=1, partition=None)
    return normal_features(plan, "factory", 60.0, seed=1)[GROUP]


@cache
def hub_key() -> PrivateKey:
    return PrivateKey.generate()


@cache
def signed_models() -> dict[str, Published]:
    """v0 (what the spec runs at start), v1, v2 (trained with other settings) and ``bad``
    (v1 with threshold 0: it alerts on every window), all signed by :func:`hub_key`."""
    names, x = _features()
    out = {}
    for version, quantile, variance, threshold in (
        ("v0", 0.999, 0.95, None),
        ("v1", 0.995, 0.9, None),
        ("v2", 0.99, 0.85, None),
        ("bad", 0.995, 0.9, 0.0),
    ):
        model = fit_model(x, names, seed=1, quantile=quantile, group=GROUP, variance=variance)
        if threshold is not None:
            model = replace(model, threshold=threshold)
        data = to_onnx(model)
        manifest = describe(
            model,
            data,
            x,
            version=version,
            preset="factory",
            start_ns=0,
            end_ns=30 * 10**9,
            source_nodes=("gw1",),
            creator="test",
            created_ns=1,
        )
        mb, sig = hub_key().sign_manifest(manifest)
        out[version] = Published(version, data, mb, sig)
    return out


def write_spec(tmp: Path) -> Path:
    """The factory pipeline with v0 as its ONNX detector (as a trained demo spec)."""
    spec: dict[str, Any] = resolve_spec("factory").model_dump(mode="json")
    model = tmp / "v0.onnx"
    model.write_bytes(signed_models()["v0"].data)
    spec["detectors"].append(
        {"group": GROUP, "type": "onnx", "name": DETECTOR, "model": str(model), "params": {}}
    )
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def trusted_key_file(tmp: Path) -> Path:
    path = tmp / "hub.pem"
    save_public_key(path, hub_key().public_key)
    return path


def desired(node: str, generation: int, act: str, shadow: str | None = None) -> DesiredState:
    m = signed_models()
    slots = (m[act].slot(),) + ((m[shadow].slot("shadow"),) if shadow else ())
    return DesiredState(node, generation, slots, {})


_RANGE = re.compile(r"bytes=(\d+)-(\d+)$")


@dataclass
class StubHub:
    """A tiny hub on loopback (see the module docstring)."""

    models: dict[str, Published] = field(default_factory=dict)
    desired: dict[str, DesiredState] = field(default_factory=dict)
    cut_after: list[int | None] = field(default_factory=list)  # None: serve the range whole
    corrupt: set[str] = field(default_factory=set)
    signatures: dict[str, Signature] = field(default_factory=dict)
    actual: list[dict[str, Any]] = field(default_factory=list)
    ranges: list[tuple[str, int, int, bool]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def publish(self, *published: Published) -> None:
        for p in published:
            self.models[p.version] = p

    def __enter__(self) -> StubHub:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await reader.readline()).decode()
            headers = {}
            while (h := await reader.readline()) not in (b"\r\n", b""):
                k, _, v = h.decode().partition(":")
                headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            method, path, _ = line.split(" ", 2)
            self.requests.append(f"{method} {path}")
            await self._answer(method, path, headers, body, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> None:
        parts = path.strip("/").split("/")
        if method == "GET" and parts[:2] == ["v1", "nodes"] and parts[3:] == ["desired"]:
            doc = self.desired.get(parts[2])
            if doc is None:
                return await _reply(writer, 404, b'{"detail":"no desired state"}')
            return await _reply(writer, 200, doc.canonical_bytes())
        if method == "PUT" and parts[:2] == ["v1", "nodes"] and parts[3:] == ["actual"]:
            self.actual.append(json.loads(body))
            return await _reply(writer, 204, b"")
        if method == "GET" and parts[:2] == ["v1", "models"] and len(parts) == 3:
            p = self.models.get(parts[2])
            if p is None:
                return await _reply(writer, 404, b"{}")
            sig = self.signatures.get(p.version, p.signature)
            doc = {
                "version": p.version,
                "artifact": p.artifact,
                "manifest_text": p.manifest.decode(),
                "signature": sig.to_dict(),
            }
            return await _reply(writer, 200, json.dumps(doc).encode())
        if method == "GET" and parts[:2] == ["v1", "artifacts"]:
            art = parts[2]
            p = next((q for q in self.models.values() if q.artifact == art), None)
            if p is None:
                return await _reply(writer, 404, b"{}")
            data = bytearray(p.data)
            if art in self.corrupt:
                data[len(data) // 2] ^= 0xFF
            m = _RANGE.match(headers.get("range", ""))
            if m is None:
                return await _reply(writer, 200, bytes(data))
            start, end = int(m.group(1)), int(m.group(2)) + 1
            piece = bytes(data[start:end])
            cut = self.cut_after.pop(0) if self.cut_after else None
            self.ranges.append((art, start, end, cut is not None))
            extra = {"Content-Range": f"bytes {start}-{end - 1}/{len(data)}"}
            if cut is None:
                return await _reply(writer, 206, piece, extra)
            await _reply(writer, 206, piece[:cut], extra, length=len(piece))
            await asyncio.sleep(0.05)
            writer.transport.abort()  # the link drops mid-body
            return None
        return await _reply(writer, 404, b"{}")


async def _reply(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    length: int | None = None,
) -> None:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body) if length is None else length}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()

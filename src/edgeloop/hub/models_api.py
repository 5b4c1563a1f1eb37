"""The model registry's HTTP API: artifacts, versions, aliases, deployment events, keys.

Registering is two requests: ``PUT /v1/artifacts/{id}`` with the model's bytes (content
addressed, idempotent: the id must be ``sha256:`` of the body), then ``POST /v1/models``
with the manifest naming that artifact; the hub signs the canonical manifest with its
key. ``GET /v1/artifacts/{id}`` serves the bytes with HTTP ranges (``206`` and
``Content-Range`` for ``Range: bytes=a-b``, ``ETag`` = the artifact id), so a node
resumes an interrupted download with the same chunk requests. ``GET /v1/keys`` serves the
public key nodes trust.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from edgeloop.hub.api_common import (
    HANDLED,
    Actor,
    Name,
    error,
    error_responses,
    event_out,
    from_exception,
)
from edgeloop.hub.control import ControlPlane
from edgeloop.hub.desired_docs import NotFound, version_of
from edgeloop.registry import ModelRegistry, ModelVersion, artifact_id

OCTET = "application/octet-stream"
MAX_ARTIFACT_BYTES = 256 * 1024 * 1024
"""Artifacts above this are refused (413)."""

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RegisterIn(BaseModel):
    """A version to register: its manifest (``Manifest.to_dict`` form) and who asks."""

    manifest: dict[str, Any]
    actor: Actor
    reason: str = ""


class ActorIn(BaseModel):
    """Who does it, and why."""

    actor: Actor
    reason: str = ""


class AliasIn(ActorIn):
    """Point an alias at a version (or at what another alias names)."""

    version: str


def version_out(reg: ModelRegistry, v: ModelVersion, *, full: bool = False) -> dict[str, Any]:
    """A version for the API: summary, or (``full``) manifest, signature, lineage, history."""
    m = v.manifest
    out: dict[str, Any] = {
        "version": m.version,
        "artifact": m.artifact,
        "size": m.size,
        "kind": m.kind,
        "preset": m.input_schema.preset,
        "parent": m.parent,
        "creator": m.creator,
        "created_ns": m.created_ns,
        "registered_ns": v.registered_ns,
        "aliases": sorted(a for a, t in reg.aliases.items() if t == m.version),
        "metrics": dict(m.metrics),
        "signature": v.signature.to_dict(),
    }
    if full:
        out["manifest"] = m.to_dict()
        out["manifest_text"] = v.manifest_bytes.decode("utf-8")
        out["lineage"] = list(reg.lineage(m.version))
        out["history"] = [event_out(e) for e in reg.history(m.version)]
    return out


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of a single ``bytes=`` range, clipped to ``size``; ``None`` if it
    cannot be satisfied or is not one range of this form."""
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    a, b = match.groups()
    if a == "" and b == "":
        return None
    if a == "":  # the last b bytes
        n = int(b)
        return (max(0, size - n), size) if n > 0 and size > 0 else None
    start = int(a)
    end = size if b == "" else min(size, int(b) + 1)
    if start >= size or end <= start:
        return None
    return start, end


def models_router(plane: ControlPlane) -> APIRouter:
    """Routes of the registry API over ``plane``."""
    r = APIRouter(tags=["models"], responses=error_responses())

    def guarded(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except HANDLED as exc:
            return from_exception(exc)

    @r.get("/v1/keys")
    def keys() -> dict[str, Any]:
        """The public key(s) nodes trust: id, algorithm and PEM."""
        pub = plane.key.public_key
        return {
            "keys": [{"key_id": pub.key_id, "algorithm": "ed25519", "pem": pub.to_pem().decode()}]
        }

    @r.put(
        "/v1/artifacts/{artifact}",
        status_code=201,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {OCTET: {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def put_artifact(artifact: Name, request: Request) -> Any:
        """Upload an artifact's bytes under their id (``sha256:<hex>`` of the body)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_ARTIFACT_BYTES:
            return error(413, "body", "oversized", f"{declared} > {MAX_ARTIFACT_BYTES}")
        data = await request.body()
        if len(data) > MAX_ARTIFACT_BYTES:
            return error(413, "body", "oversized", f"{len(data)} > {MAX_ARTIFACT_BYTES}")
        actual = artifact_id(data)
        if actual != artifact:
            return error(
                422, "artifact", "hash_mismatch", f"the body hashes to {actual}, not {artifact}"
            )
        known = plane.models.artifact(artifact) is not None
        if not known:
            plane.put_artifact(data)
        body = {"artifact": artifact, "size": len(data), "created": not known}
        return JSONResponse(body, status_code=200 if known else 201)

    @r.get(
        "/v1/artifacts/{artifact}",
        response_class=Response,
        responses={200: {"content": {OCTET: {}}}, 206: {"content": {OCTET: {}}}, 416: {}},
    )
    def get_artifact(artifact: Name, request: Request) -> Response:
        """The artifact's bytes; one ``Range: bytes=...`` gives a ``206`` with that range."""
        info = plane.models.artifact(artifact)
        if info is None:
            return error(404, "artifact", "unknown", f"no artifact {artifact}")
        etag = f'"{info.id}"'
        headers = {"ETag": etag, "Accept-Ranges": "bytes"}
        wanted = request.headers.get("range")
        if_range = request.headers.get("if-range")
        if wanted is None or (if_range is not None and if_range.strip() != etag):
            data = plane.models.read_artifact(info, 0, info.size)
            return Response(data, media_type=OCTET, headers=headers)
        span = parse_range(wanted, info.size)
        if span is None:
            return Response(
                status_code=416,
                headers={**headers, "Content-Range": f"bytes */{info.size}"},
                content=f"range {wanted!r}: not one satisfiable byte range of {info.size}",
            )
        start, end = span
        data = plane.models.read_artifact(info, start, end)
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
        return Response(data, status_code=206, media_type=OCTET, headers=headers)

    @r.post("/v1/models", status_code=201)
    def register(body: RegisterIn) -> Any:
        """Register (and sign) a version whose artifact was uploaded."""

        def run() -> Any:
            v = plane.register(body.manifest, body.actor, body.reason)
            return JSONResponse(version_out(plane.registry(), v, full=True), status_code=201)

        return guarded(run)

    @r.get("/v1/models")
    def list_models() -> dict[str, Any]:
        """Every version (registration order), the aliases and the champion history."""
        reg = plane.registry()
        return {
            "versions": [version_out(reg, v) for v in reg.versions.values()],
            "aliases": dict(sorted(reg.aliases.items())),
            "champions": list(reg.champions),
        }

    @r.get("/v1/models/diff")
    def diff(a: Annotated[str, Query()], b: Annotated[str, Query()]) -> Any:
        """Manifest differences from ``a`` to ``b`` (versions or aliases)."""

        def run() -> Any:
            reg = plane.registry()
            va, vb = version_of(reg, a, "a"), version_of(reg, b, "b")
            changes = reg.diff(va, vb)
            return {
                "a": va,
                "b": vb,
                "changes": [
                    {"path": c.path, "before": c.before, "after": c.after} for c in changes
                ],
            }

        return guarded(run)

    @r.get("/v1/models/{ref}")
    def show(ref: Name) -> Any:
        """A version (or the one an alias names): manifest, signature, lineage, history."""

        def run() -> Any:
            reg = plane.registry()
            return version_out(reg, reg.versions[version_of(reg, ref)], full=True)

        return guarded(run)

    @r.get(
        "/v1/models/{ref}/manifest",
        response_class=Response,
        responses={200: {"content": {"application/json": {}}}},
    )
    def manifest_bytes(ref: Name) -> Response:
        """The signed manifest bytes, exactly (canonical JSON): what a node verifies."""
        reg = plane.registry()
        try:
            v = reg.versions[version_of(reg, ref)]
        except NotFound as exc:
            return from_exception(exc)
        return Response(v.manifest_bytes, media_type="application/json")

    @r.get("/v1/models/{ref}/signature")
    def signature(ref: Name) -> Any:
        """The version's signature (``Signature.to_dict``: algorithm, key id, base64)."""

        def run() -> Any:
            reg = plane.registry()
            return reg.versions[version_of(reg, ref)].signature.to_dict()

        return guarded(run)

    @r.post("/v1/models/{ref}/promote")
    def promote(ref: Name, body: ActorIn) -> Any:
        """Make a version the champion (a deployment event)."""
        return guarded(
            lambda: {"events": [event_out(e) for e in plane.promote(ref, body.actor, body.reason)]}
        )

    @r.post("/v1/rollback")
    def rollback(body: ActorIn) -> Any:
        """Return ``champion`` to the previous champion (a deployment event)."""
        return guarded(
            lambda: {"events": [event_out(e) for e in plane.rollback(body.actor, body.reason)]}
        )

    @r.get("/v1/aliases")
    def aliases() -> dict[str, str]:
        """Alias → version."""
        return dict(sorted(plane.registry().aliases.items()))

    @r.put("/v1/aliases/{alias}")
    def set_alias(alias: Name, body: AliasIn) -> Any:
        """Point an alias at a version (``champion`` moves only by promote/rollback: 409)."""
        return guarded(
            lambda: {
                "events": [
                    event_out(e)
                    for e in plane.set_alias(alias, body.version, body.actor, body.reason)
                ]
            }
        )

    @r.delete("/v1/aliases/{alias}")
    def remove_alias(alias: Name, actor: Annotated[str, Query(min_length=1)]) -> Any:
        """Remove an alias."""
        return guarded(lambda: {"events": [event_out(e) for e in plane.remove_alias(alias, actor)]})

    @r.get("/v1/deployments")
    def deployments(version: str | None = None, kind: str | None = None) -> Any:
        """The deployment history, oldest first (of one version or alias, of one kind)."""

        def run() -> Any:
            reg = plane.registry()
            if version is not None and not (version in reg.versions or version in reg.aliases):
                raise NotFound(f"version: no version or alias {version!r}")
            events = reg.history(version)
            return {"events": [event_out(e) for e in events if kind is None or e.kind == kind]}

        return guarded(run)

    return r


__all__ = ["MAX_ARTIFACT_BYTES", "models_router", "parse_range", "version_out"]

"""What the model and fleet APIs share: the error body and the mapping of errors to HTTP.

Every non-2xx JSON answer is ``{"error": {"field", "reason", "detail"}}`` (as the ingest
API's). Statuses: 404 an unknown version, alias, artifact, node or rollout; 409 a command
the current state refuses (alias conflicts, a version registered twice, no previous
champion, a rollout already running); 422 a bad manifest, policy or measurement.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from fastapi.responses import JSONResponse
from pydantic import Field

from edgeloop.errors import ConfigError, ModelError
from edgeloop.hub.desired_docs import NotFound
from edgeloop.registry import DeploymentEvent, ManifestError, RegistryError
from edgeloop.rollout import RolloutError
from edgeloop.security import VerificationError

Name = Annotated[str, Path(min_length=1, max_length=256)]
"""A version, alias, node or group name in a path."""

Actor = Annotated[str, Field(min_length=1, max_length=256)]


def error_responses() -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of the error statuses, with the ingest API's ``ErrorOut``
    (one schema for every error body)."""
    from edgeloop.hub.app import ErrorOut  # the app module is loaded: it calls the routers

    return {
        404: {"model": ErrorOut, "description": "unknown version, alias, artifact or node"},
        409: {"model": ErrorOut, "description": "refused in the current state"},
        422: {"model": ErrorOut, "description": "invalid input"},
    }


def error(status: int, field: str, reason: str, detail: str = "") -> JSONResponse:
    """A JSON error response."""
    return JSONResponse(
        status_code=status, content={"error": {"field": field, "reason": reason, "detail": detail}}
    )


def from_exception(exc: Exception) -> JSONResponse:
    """The response for an error of the control plane (see the module docstring)."""
    text = str(exc)
    head, sep, _ = text.partition(": ")
    field = head if sep and len(head) <= 80 and " " not in head else ""
    if isinstance(exc, NotFound):
        return error(404, field, "unknown", text)
    if isinstance(exc, ManifestError | VerificationError):
        return error(422, field or "manifest", "invalid", text)
    if isinstance(exc, RolloutError | RegistryError):
        return error(409, field, "conflict", text)
    if isinstance(exc, ConfigError):
        return error(422, field, "invalid", text)
    raise exc


HANDLED = (ModelError, ConfigError)
"""Exceptions :func:`from_exception` turns into responses."""


def event_out(e: DeploymentEvent) -> dict[str, Any]:
    """A deployment event for the API: a ``registered`` event's manifest text is left
    out (``GET /v1/models/{version}`` has it)."""
    d = e.to_dict()
    if e.kind == "registered":
        d["detail"] = {"signature": d["detail"].get("signature")}
    return d


__all__ = [
    "HANDLED",
    "Actor",
    "Name",
    "error",
    "error_responses",
    "event_out",
    "from_exception",
]

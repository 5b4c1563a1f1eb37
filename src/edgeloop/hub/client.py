"""A small synchronous client of the hub's model and fleet APIs (httpx).

Used by ``edgeloop models`` and ``edgeloop fleet``; errors come back as
:class:`HubError` carrying the hub's error body (field, reason, detail).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from edgeloop.errors import EdgeloopError
from edgeloop.registry import artifact_id


class HubError(EdgeloopError):
    """The hub answered with an error, or could not be reached.

    Attributes:
        status: the HTTP status (0: no answer).
        field, reason, detail: the hub's error body, when it sent one.
    """

    def __init__(self, status: int, field: str, reason: str, detail: str) -> None:
        self.status, self.field, self.reason, self.detail = status, field, reason, detail
        where = f" ({field})" if field else ""
        super().__init__(f"{status or 'no answer'} {reason}{where}: {detail}")


class HubClient:
    """JSON requests to a hub at ``url`` (e.g. ``http://127.0.0.1:8000``)."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
    ) -> Any:
        """Send a request; return the decoded JSON body (``None`` when empty).

        Raises:
            HubError: the hub is unreachable, or answered 4xx/5xx.
        """
        try:
            r = self._http.request(method, path, json=json, params=params, content=content)
        except httpx.HTTPError as exc:
            raise HubError(0, "", "unreachable", f"{self.url}: {exc}") from exc
        if r.status_code >= 400:
            try:
                body = r.json().get("error") or {}
            except ValueError:
                body = {}
            if not isinstance(body, dict):  # e.g. FastAPI's own 422 list of details
                body = {"detail": str(body)}
            raise HubError(
                r.status_code,
                str(body.get("field", "")),
                str(body.get("reason", r.reason_phrase)),
                str(body.get("detail", "") or r.text[:500]),
            )
        if not r.content:
            return None
        return r.json()

    def get(self, path: str, **params: Any) -> Any:
        """``GET path?params`` (``None`` values left out)."""
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any) -> Any:
        """``POST path`` with a JSON body."""
        return self.request("POST", path, json=body)

    def put(self, path: str, body: Any) -> Any:
        """``PUT path`` with a JSON body."""
        return self.request("PUT", path, json=body)

    def register(
        self, artifact: bytes, manifest: Mapping[str, Any], actor: str, reason: str = ""
    ) -> Any:
        """Upload an artifact (``PUT /v1/artifacts/{id}``, idempotent) and register the
        version its manifest describes (``POST /v1/models``); the hub signs it. Returns
        the registered version (manifest text, signature, lineage, history)."""
        self.request("PUT", f"/v1/artifacts/{artifact_id(artifact)}", content=artifact)
        return self.post(
            "/v1/models", {"manifest": dict(manifest), "actor": actor, "reason": reason}
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["HubClient", "HubError"]

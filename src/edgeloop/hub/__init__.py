"""The hub: the root node's store and API (ingest idempotent on (node, seq), queries).

``HubStore`` is usable on its own (no HTTP, no codec); ``create_app`` and
``IngestService`` (imported lazily: they need FastAPI and the codec) put the wire in
front of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeloop._lazy import lazy_exports
from edgeloop.hub.store import (
    HubStore,
    IngestItem,
    IngestReport,
    NodeInfo,
    StoredEvent,
    StoredSummary,
)

if TYPE_CHECKING:
    from edgeloop.hub.app import IngestService, create_app

__all__ = [
    "HubStore",
    "IngestItem",
    "IngestReport",
    "IngestService",
    "NodeInfo",
    "StoredEvent",
    "StoredSummary",
    "create_app",
]


__getattr__, __dir__ = lazy_exports(
    "edgeloop.hub", {"IngestService": "app", "create_app": "app"}, globals()
)

"""Document entries: small JSON documents a node sends beside its telemetry.

Besides summaries, events and raw frames, nodes send *documents* through the same
outbox and uplink (so they get the same delivery promise: sequence numbers, the ledger,
end-to-end acks): a shadow model's measurement per period (``measurement``,
``edgeloop.node.shadow``), drift sketches of features and scores per period
(``sketch``), curated samples of normal windows for retraining (``sample``). Each kind
has a decoder here; the hub stores the payload as it arrived in ``node_documents``
(``schema.NodeDocument``, keyed like the ledger by (node, epoch, seq)) and, after the
commit, hands the decoded documents to the services that observe the kind
(``IngestService.observe``: the rollout for measurements, the drift service for
sketches).

A decoder takes the payload bytes and returns a :class:`Document`, or raises
:class:`~edgeloop.errors.TelemetryError` (or :class:`~edgeloop.errors.ConfigError`)
naming what is wrong; the entry is then dead-lettered like any undecodable entry.
Observers are called at least once per stored document (a redelivered batch calls them
again), so they must be idempotent on (node, the document's own key) — the rollout
ignores a repeated (node, period end). The stored rows are the record: a service that
missed a call (a hub killed between the commit and the call) reads them back with
``HubStore.documents``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edgeloop.errors import ConfigError, RejectReason, TelemetryError

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
"""A document payload above this is refused (documents are summaries, not bulk data)."""


@dataclass(frozen=True, slots=True)
class Document:
    """A decoded document entry.

    Attributes:
        kind: the entry kind (``measurement``, ``sketch``, ``sample``, ...).
        t_ns: the document's own time (a period's end), for queries by time.
        body: the JSON object.
    """

    kind: str
    t_ns: int
    body: Mapping[str, Any]


DocumentDecoder = Callable[[bytes], Document]


def json_object(kind: str, payload: bytes, schema: str) -> dict[str, Any]:
    """Parse ``payload`` as a JSON object whose ``schema`` field is ``schema``.

    Raises:
        TelemetryError: too large, not UTF-8 JSON, not an object, or another schema.
    """
    if len(payload) > MAX_DOCUMENT_BYTES:
        raise TelemetryError(
            f"{kind}.payload",
            RejectReason.OVERSIZED,
            f"{len(payload)} bytes > {MAX_DOCUMENT_BYTES}",
        )
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TelemetryError(
            f"{kind}.payload", RejectReason.MALFORMED, f"not JSON: {exc}"
        ) from None
    if not isinstance(doc, dict):
        raise TelemetryError(
            f"{kind}.payload", RejectReason.MALFORMED, f"not a JSON object: {type(doc).__name__}"
        )
    if doc.get("schema") != schema:
        raise TelemetryError(
            f"{kind}.schema",
            RejectReason.MALFORMED,
            f"schema {doc.get('schema')!r:.100}, expected {schema!r}",
        )
    return doc


def time_field(kind: str, doc: Mapping[str, Any], name: str) -> int:
    """``doc[name]`` as an int64 nanosecond time (the document's ``t_ns``).

    Raises:
        TelemetryError: missing, not an integer, or outside int64.
    """
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise TelemetryError(
            f"{kind}.{name}", RejectReason.MALFORMED, f"not an int64 ns time: {value!r:.100}"
        )
    return value


def _measurement(payload: bytes) -> Document:
    from edgeloop.node.shadow import KIND_MEASUREMENT, MEASUREMENT_SCHEMA, measurement_for

    doc = json_object(KIND_MEASUREMENT, payload, MEASUREMENT_SCHEMA)
    t_ns = time_field(KIND_MEASUREMENT, doc, "period_end_ns")
    for side in ("shadow", "acting"):
        if not isinstance(doc.get(side), str) or not doc[side]:
            raise TelemetryError(
                f"{KIND_MEASUREMENT}.{side}", RejectReason.MALFORMED, "missing version name"
            )
    try:  # every field the rollout reads must be there and of its type
        measurement_for(doc, str(doc["shadow"]))
        measurement_for(doc, str(doc["acting"]))
    except ConfigError as exc:
        raise TelemetryError(
            f"{KIND_MEASUREMENT}.payload", RejectReason.MALFORMED, str(exc)
        ) from None
    return Document(KIND_MEASUREMENT, t_ns, doc)


def _sample(payload: bytes) -> Document:
    from edgeloop.node.samples import KIND_SAMPLE, SAMPLE_SCHEMA, sample_rows

    doc = json_object(KIND_SAMPLE, payload, SAMPLE_SCHEMA)
    t_ns = time_field(KIND_SAMPLE, doc, "period_end_ns")
    sample_rows(doc)  # shape, names, finite values: the field is named
    return Document(KIND_SAMPLE, t_ns, doc)


def _sketch(payload: bytes) -> Document:
    from edgeloop.drift.document import KIND_SKETCH, SKETCH_SCHEMA, parse_sketch_document
    from edgeloop.drift.sketch import SketchError

    doc = json_object(KIND_SKETCH, payload, SKETCH_SCHEMA)
    t_ns = time_field(KIND_SKETCH, doc, "period_end_ns")
    try:  # shapes and types; the edges are checked against the model's reference when judged
        parse_sketch_document(doc)
    except SketchError as exc:
        field, _, detail = str(exc).partition(": ")
        raise TelemetryError(field, RejectReason.MALFORMED, detail) from None
    return Document(KIND_SKETCH, t_ns, doc)


DOCUMENT_DECODERS: dict[str, DocumentDecoder] = {
    "measurement": _measurement,
    "sketch": _sketch,
    "sample": _sample,
}
"""Decoder of each document kind. A new kind adds its decoder here (and a service that
observes it, registered in ``edgeloop.hub.app.create_app``)."""

__all__ = [
    "DOCUMENT_DECODERS",
    "MAX_DOCUMENT_BYTES",
    "Document",
    "DocumentDecoder",
    "json_object",
    "time_field",
]

"""The hub's HTTP API (FastAPI): ingest of encoded batches, then queries over the store.

``POST /v1/ingest`` takes the bytes of ``codec.encode_batch`` and answers the bytes of
``codec.encode_ack`` — only after the store committed the batch. A 5xx answer means
nothing was acknowledged (the node keeps the entries and sends them again); a 400 means
the batch itself cannot be decoded (it is dead-lettered). An entry whose payload cannot
be decoded does not fail the batch: it is dead-lettered, counted as ``rejected`` in the
ack, and its seq is recorded so the watermark passes it.

:class:`IngestService` is the same receive path without HTTP: ``IngestService(store).handle``
is the handler of an ``InProcTransport``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from edgeloop.drift import DriftConfig, RetrainTrigger
from edgeloop.errors import RejectReason, TelemetryError
from edgeloop.hub.control import ControlPlane
from edgeloop.hub.documents import DOCUMENT_DECODERS, Document
from edgeloop.hub.drift_api import drift_router
from edgeloop.hub.drift_onset import DriftOnset
from edgeloop.hub.drift_service import DriftService, registry_references
from edgeloop.hub.feedback_api import feedback_router
from edgeloop.hub.fleet_api import fleet_router
from edgeloop.hub.labels import LabelStore
from edgeloop.hub.models_api import models_router
from edgeloop.hub.retrain import RetrainConfig, RetrainService
from edgeloop.hub.schema import KIND_EVENTS, KIND_FRAME, KIND_SUMMARIES, Decoded
from edgeloop.hub.store import (
    HubStore,
    IngestItem,
    NodeInfo,
    StoredDeadLetter,
    StoredDocument,
    StoredEvent,
    StoredSummary,
)
from edgeloop.outbox.base import Entry
from edgeloop.security import PrivateKey
from edgeloop.telemetry import codec
from edgeloop.transport.base import Ack

OCTET = "application/octet-stream"
MAX_BODY_BYTES = 64 * 1024 * 1024
"""Request bodies above this are refused (413) before they are read into memory."""

_DECODERS: dict[str, Callable[[bytes], Decoded]] = {
    KIND_SUMMARIES: codec.decode_summaries,
    KIND_EVENTS: codec.decode_events,
    KIND_FRAME: codec.decode_frame,
    **DOCUMENT_DECODERS,
}

log = logging.getLogger(__name__)

DocumentObserver = Callable[[str, Sequence[Document]], None]
"""Called after a commit with the sending node and the documents of one kind the batch
carried (at least once per document: a redelivered batch calls it again)."""


# -- the receive path ---------------------------------------------------------------------
class IngestMetrics:
    """Prometheus instruments of ingest, in their own registry (several apps per process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.batches = Counter(
            "edgeloop_hub_ingest_batches",
            "Batches received, by outcome (ok, bad_batch, store_error).",
            ["outcome"],
            registry=r,
        )
        self.entries = Counter(
            "edgeloop_hub_ingest_entries", "Entries accepted and stored.", registry=r
        )
        self.duplicates = Counter(
            "edgeloop_hub_ingest_duplicates", "Entries skipped as already stored.", registry=r
        )
        self.rejects = Counter(
            "edgeloop_hub_ingest_rejects",
            "Entries or batches dead-lettered, by reason.",
            ["reason"],
            registry=r,
        )
        self.observer_errors = Counter(
            "edgeloop_hub_document_observer_errors",
            "Document observers that failed after a commit, by kind (the documents stay stored).",
            ["kind"],
            registry=r,
        )
        self.latency = Histogram(
            "edgeloop_hub_ingest_seconds",
            "Time to decode, store and commit one batch.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )


class IngestService:
    """Decode a batch, ingest it in one transaction, acknowledge after the commit.

    Args:
        store: the hub store.
        clock: hub clock in ns (injected: tests and the simulator use simulated time).
        metrics: where to count; a fresh :class:`IngestMetrics` by default.
    """

    def __init__(
        self,
        store: HubStore,
        *,
        clock: Callable[[], int] = time.time_ns,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics or IngestMetrics()
        self._observers: dict[str, list[DocumentObserver]] = defaultdict(list)

    def observe(self, kind: str, observer: DocumentObserver) -> None:
        """Call ``observer(node, documents)`` after each commit of a batch carrying
        documents of ``kind`` (``edgeloop.hub.documents``). Its failure is logged and
        counted, never turned into a refused batch: the documents are stored already."""
        if kind not in DOCUMENT_DECODERS:
            raise ValueError(f"not a document kind: {kind!r}; known: {sorted(DOCUMENT_DECODERS)}")
        self._observers[kind].append(observer)

    def _notify(self, node: str, items: Sequence[IngestItem]) -> None:
        by_kind: dict[str, list[Document]] = defaultdict(list)
        for item in items:
            if isinstance(item.decoded, Document) and item.kind in self._observers:
                by_kind[item.kind].append(item.decoded)
        for kind, docs in by_kind.items():
            for observer in self._observers[kind]:
                try:
                    observer(node, docs)
                except Exception:
                    self.metrics.observer_errors.labels(kind).inc()
                    log.exception("observer of %s documents from node %s failed", kind, node)

    def handle(self, data: bytes) -> bytes:
        """Encoded batch in, encoded ack out (the ``InProcTransport`` handler).

        Raises:
            TelemetryError: the batch cannot be decoded (it was dead-lettered).
            sqlalchemy.exc.SQLAlchemyError: the store failed; nothing is acknowledged.
        """
        return codec.encode_ack(self.ingest(data))

    def ingest(self, data: bytes, *, sender: str | None = None) -> Ack:
        """Decode and store one encoded batch; returns the ack (after commit).

        Args:
            data: the encoded batch.
            sender: the node the batch came from as far as the transport knows (e.g.
                the node level of the MQTT topic it was published on). A batch naming
                another node is refused as forged (dead-lettered, field ``node``).

        Raises: as :meth:`handle`.
        """
        m = self.metrics
        start = time.perf_counter()
        now_ns = self.clock()
        try:
            batch = codec.decode_batch(data)
            if sender is not None and batch.node != sender:
                raise TelemetryError(
                    "node",
                    RejectReason.MALFORMED,
                    f"forged sender: a batch of node {batch.node!r:.200} arrived on the "
                    f"channel of node {sender!r:.200}",
                )
            items = [_item(i, e) for i, e in enumerate(batch.entries)]
            report = self.store.ingest_report(
                batch.node,
                batch.after_seq,
                items,
                batch.status,
                now_ns,
                sent_ns=batch.sent_ns,
                epoch=batch.epoch,
            )
        except TelemetryError as exc:
            # The batch as a whole is unusable: keep it for inspection, refuse it.
            self.store.dead_letter(sender, exc.reason.value, exc.field, exc.detail, data, now_ns)
            m.batches.labels("bad_batch").inc()
            m.rejects.labels(exc.reason.value).inc()
            raise
        except Exception:
            m.batches.labels("store_error").inc()
            raise
        ack = report.ack
        if self._observers:
            self._notify(batch.node, items)
        m.batches.labels("ok").inc()
        m.entries.inc(ack.accepted)
        m.duplicates.inc(ack.duplicates)
        for reason, count in report.rejects.items():
            m.rejects.labels(reason).inc(count)
        m.latency.observe(time.perf_counter() - start)
        return ack


def _item(i: int, entry: Entry) -> IngestItem:
    """Decode one entry's payload by kind; a failure becomes a rejected item, not an error."""
    decoder = _DECODERS.get(entry.kind)
    error: TelemetryError | None = None
    decoded: Decoded | None = None
    try:
        if decoder is None:
            raise TelemetryError(
                f"entries[{i}].kind",
                RejectReason.MALFORMED,
                f"unknown kind {entry.kind!r}; expected one of {sorted(_DECODERS)}",
            )
        decoded = decoder(entry.payload)
    except TelemetryError as exc:
        error = exc
    except Exception as exc:  # a decoder bug must not turn one entry into a poison batch
        error = TelemetryError(
            f"entries[{i}].payload", RejectReason.MALFORMED, f"{type(exc).__name__}: {exc}"
        )
    # The blob is stored (a frame, a document's body) or dead-lettered.
    keep = error is not None or entry.kind == KIND_FRAME or entry.kind in DOCUMENT_DECODERS
    return IngestItem(
        seq=entry.seq,
        priority=int(entry.priority),
        kind=entry.kind,
        samples=entry.samples,
        size=entry.size,
        decoded=decoded,
        error=error,
        payload=entry.payload if keep else b"",
    )


# -- response models ----------------------------------------------------------------------
# Query endpoints answer with the store's own records (frozen dataclasses): one
# definition of each record, which FastAPI validates and documents as it is.
NodeOut = NodeInfo
EventOut = StoredEvent
SummaryOut = StoredSummary
DeadLetterOut = StoredDeadLetter
DocumentOut = StoredDocument


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorBody(_Out):
    field: str
    reason: str
    detail: str = ""


class ErrorOut(_Out):
    """Every non-2xx JSON answer: what was wrong, which field, why."""

    error: ErrorBody


class CountsOut(_Out):
    samples: int
    events: int
    entries: int
    rejected: int
    duplicates: int
    bytes: int
    batches: int
    dead_letters: int


class StatsOut(_Out):
    nodes: dict[str, CountsOut]
    overall: CountsOut
    duplicate_summary_samples: int


class HealthOut(_Out):
    status: str


def _error(status: int, field: str, reason: str, detail: str = "") -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"field": field, "reason": reason, "detail": detail}}
    )


# -- the app ------------------------------------------------------------------------------
Limit = Annotated[int, Query(ge=1, le=100_000)]


def create_app(
    store: HubStore,
    *,
    clock: Callable[[], int] = time.time_ns,
    max_body_bytes: int = MAX_BODY_BYTES,
    signing_key: PrivateKey | None = None,
    drift_config: DriftConfig | None = None,
    drift_period_s: float = 60.0,
    retrain_config: RetrainConfig | None = None,
) -> FastAPI:
    """The hub's FastAPI app over ``store`` (tables must exist: ``store.create_all()``).

    ``app.state.ingest`` is the :class:`IngestService` (its ``metrics.registry`` is the
    one ``/metrics`` exposes); ``app.state.control`` the
    :class:`~edgeloop.hub.control.ControlPlane` behind the model and fleet APIs. It signs
    with ``signing_key`` (``edgeloop.hub.keys.hub_key``); without one, with a key made
    for this app only (tests, embedded use: versions it signs are not trusted after a
    restart). ``app.state.retrain`` is the :class:`~edgeloop.hub.retrain.RetrainService`
    (``retrain_config``) behind labels and ``POST /v1/retrain``.
    """
    app = FastAPI(
        title="edgeloop hub",
        version="1",
        summary="Ingest from edge nodes (idempotent on node, seq) and query what they sent.",
    )
    service = IngestService(store, clock=clock)
    app.state.ingest = service
    app.state.store = store
    plane = ControlPlane(store, signing_key or PrivateKey.generate(), clock=clock)
    app.state.control = plane
    service.observe("measurement", plane.observe_documents)
    app.include_router(models_router(plane))
    app.include_router(fleet_router(plane))
    # Drift monitoring (edgeloop.hub.drift_service): sketches judged per period.
    drift = DriftService(
        store,
        registry_references(plane.registry),
        drift_config,
        period_s=drift_period_s,
        clock=clock,
        registry=service.metrics.registry,
    )
    app.state.drift = drift
    service.observe("sketch", drift.observe_documents)
    app.include_router(drift_router(drift))
    # Feedback and retraining (edgeloop.hub.retrain): labels, runs, POST /v1/retrain.
    retrain = RetrainService(plane, retrain_config)
    app.state.retrain = retrain
    app.include_router(feedback_router(LabelStore(store), retrain))

    onset = DriftOnset(drift.period_ns, max_age_ns=int(retrain.config.window_s * 1e9))

    def retrain_on_drift(trigger: RetrainTrigger) -> None:
        # Queued in the retrain worker: the trigger may come from an ingest observer.
        # The data starts at the drift's onset (kept while the champion acts, at most
        # window_s old), not window_s back: a model trained on both regimes drifts from
        # the new one again.
        if plane.rollouts(running_only=True):
            # A rollout is deciding already (the champion drifts until it is replaced):
            # another model now could not be rolled out, and would only be registered.
            log.info("drift trigger while a rollout runs: no retraining (%s)", trigger.reason)
            return
        since = onset.since(plane.registry().champion, trigger)
        retrain.submit(
            f"drift: {trigger.reason}", "drift", since_ns=since, since_from="drift onset"
        )

    drift.on_trigger(retrain_on_drift)

    @app.post(
        "/v1/ingest",
        response_class=Response,
        responses={
            200: {"content": {OCTET: {}}, "description": "codec.encode_ack(ack), after commit"},
            400: {"model": ErrorOut, "description": "the batch cannot be decoded"},
            413: {"model": ErrorOut},
            503: {"model": ErrorOut, "description": "store failure: nothing acknowledged"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {OCTET: {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def ingest(request: Request) -> Response:
        """Store a batch (``codec.encode_batch`` bytes); reply with the encoded ack."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return _error(
                413, "body", RejectReason.OVERSIZED.value, f"{declared} > {max_body_bytes}"
            )
        data = await request.body()
        if len(data) > max_body_bytes:
            return _error(
                413, "body", RejectReason.OVERSIZED.value, f"{len(data)} > {max_body_bytes}"
            )
        try:
            ack = await run_in_threadpool(service.ingest, data)
        except TelemetryError as exc:
            return _error(400, exc.field, exc.reason.value, exc.detail)
        except SQLAlchemyError as exc:
            return _error(503, "store", "unavailable", type(exc).__name__)
        return Response(codec.encode_ack(ack), media_type=OCTET)

    @app.get("/v1/nodes", response_model=list[NodeOut])
    def list_nodes() -> Any:
        """Every node that ever sent a batch, with its watermark and latest status."""
        return store.nodes()

    @app.get("/v1/nodes/{node_id}", response_model=NodeOut, responses={404: {"model": ErrorOut}})
    def get_node(node_id: Annotated[str, Path(max_length=256)]) -> Any:
        """One node."""
        info = store.node(node_id)
        if info is None:
            return _error(404, "node", "unknown", f"no node {node_id!r}")
        return info

    @app.get("/v1/events", response_model=list[EventOut])
    def list_events(
        node: str | None = None,
        machine: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: Limit = 1000,
    ) -> Any:
        """Events with ``since_ns <= t_start_ns < until_ns``, oldest first."""
        return store.events(node, machine, since_ns, until_ns, limit)

    @app.get(
        "/v1/events/{event_id}/raw",
        response_class=Response,
        responses={
            200: {"content": {OCTET: {}}, "description": "codec.encode_frame bytes"},
            404: {"model": ErrorOut},
        },
    )
    def event_raw(event_id: int) -> Response:
        """The raw samples captured around an event, as an encoded frame."""
        raw = store.event_raw(event_id)
        if raw is None:
            return _error(404, "event", "unknown", f"no raw context for event {event_id}")
        return Response(raw[0], media_type=OCTET)

    @app.get("/v1/summaries", response_model=list[SummaryOut])
    def list_summaries(
        node: str | None = None,
        sensor: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: Limit = 10_000,
    ) -> Any:
        """Summary rows with ``since_ns <= t0_ns < until_ns``, oldest first."""
        return store.summaries(node, sensor, since_ns, until_ns, limit)

    @app.get(
        "/v1/documents", response_model=list[DocumentOut], responses={422: {"model": ErrorOut}}
    )
    def list_documents(
        kind: str,
        node: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: Limit = 1000,
    ) -> Any:
        """Document entries of one kind (``measurement``, ...) with
        ``since_ns <= t_ns < until_ns``, oldest first."""
        if kind not in DOCUMENT_DECODERS:
            return _error(422, "kind", "unknown", f"known kinds: {sorted(DOCUMENT_DECODERS)}")
        return store.documents(kind, node, since_ns, until_ns, limit)

    @app.get("/v1/dead_letters", response_model=list[DeadLetterOut])
    def list_dead_letters(node: str | None = None, limit: Limit = 100) -> Any:
        """Most recent dead letters first (without payloads)."""
        return store.dead_letters(node, limit)

    @app.get("/v1/stats", response_model=StatsOut)
    def stats() -> Any:
        """Accounting per node and overall (see ``HubStore.totals``)."""
        totals = store.totals()
        totals["duplicate_summary_samples"] = store.duplicate_summary_samples()
        return totals

    @app.get("/healthz", response_model=HealthOut, responses={503: {"model": ErrorOut}})
    def healthz() -> Any:
        """``ok`` when the store answers."""
        try:
            store.ping()
        except SQLAlchemyError as exc:
            return _error(503, "store", "unavailable", type(exc).__name__)
        return {"status": "ok"}

    @app.get("/metrics", response_class=Response)
    def metrics() -> Response:
        """Prometheus text exposition of the ingest counters and latency histogram."""
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


__all__ = ["IngestMetrics", "IngestService", "create_app"]

"""The hub's MQTT ingest: consume uplinks from a shared subscription, commit, then ack.

Several hub processes run one :class:`MqttIngest` each with the same ``group``: the
broker splits ``$share/<group>/edgeloop/+/+/uplink`` between them, so each message goes to
one of them. Every message takes the same path as ``POST /v1/ingest``:

0. In order: a batch whose ``after_seq`` (from the correlation data) is above the
   (node, epoch) watermark is not committed — an earlier batch of the node was lost on
   the way (Mosquitto drops QoS 1 messages for a subscriber that fell behind) or is
   still with another replica. Its ack carries the watermark only, and the node, which
   keeps several batches in flight, resends from there. So the hub never commits seq
   k+1 of a (node, epoch) before k. The watermark is known from this replica's own acks;
   only a batch ahead of it costs a read of the store (another replica may have moved it).
1. ``IngestService.ingest(payload, sender=<node of the topic>)`` decodes the batch and
   commits it in one transaction, idempotent on (node, epoch, seq): a batch redelivered
   by the broker, resent by the node, or taken by two replicas is stored once.
2. Only then the ack (the (node, epoch) watermark, ``codec.encode_ack``) is published to
   the node's ``.../ack`` topic with the request's correlation data.
3. Only then the broker gets its PUBACK (paho ``manual_ack``): a hub that dies before
   its commit leaves the message with the broker, and the node resends anyway when its
   ack does not come.

Rejects never crash the consumer: a payload over ``max_payload_bytes``, a batch that
does not decode or has another schema version, a node publishing a batch of another
node (forged sender) — each is dead-lettered with its reason and field, counted
(``rejected`` here and the service's Prometheus counters), and answered on the
sender's ack topic with an ``edgeloop-error`` user property, so the node can see why.
A store failure acknowledges nothing (the node resends) and is counted.

Processing runs in one worker thread, not in paho's network thread, so keep-alives flow
while a commit takes long; the broker sends at most ``max_pending`` unacknowledged
messages (MQTT v5 receive maximum), which bounds the work queue.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.exc import SQLAlchemyError

from edgeloop.errors import RejectReason, TelemetryError, TransportError
from edgeloop.hub.app import MAX_BODY_BYTES, IngestService
from edgeloop.telemetry import codec
from edgeloop.transport.base import Ack
from edgeloop.transport.mqtt_publish_decode import install as install_publish_decode
from edgeloop.transport.mqtt_session import (
    ERROR_PROPERTY,
    FIELD_PROPERTY,
    Correlation,
    connect_properties,
    correlation_of,
    new_client,
    publish_properties,
)
from edgeloop.transport.topics import NodeTopics, check_name, parse_node_topic, shared_uplink_filter

MAX_MARKS = 100_000
"""(node, epoch) watermarks a replica remembers (beyond, it forgets and reads the store)."""


class IngestPath(Protocol):
    """The hub's receive path as the consumer uses it; :class:`StoreIngest` adapts an
    :class:`IngestService` (the default), a benchmark may plug in one that only decodes."""

    def ingest(self, data: bytes, *, sender: str | None = None) -> Ack:
        """Decode and commit an encoded batch; its ack. Raises like ``IngestService``."""
        ...

    def watermark(self, node: str, epoch: int) -> int | None:
        """The committed watermark of (node, epoch), ``None`` for an epoch never seen."""
        ...

    def refuse(self, node: str | None, reason: str, field: str, detail: str, data: bytes) -> None:
        """Dead-letter and count a payload refused before it reached ``ingest``."""
        ...


class StoreIngest:
    """:class:`IngestPath` over the hub's :class:`IngestService` and its store."""

    def __init__(self, service: IngestService) -> None:
        self.service = service

    def ingest(self, data: bytes, *, sender: str | None = None) -> Ack:
        return self.service.ingest(data, sender=sender)

    def watermark(self, node: str, epoch: int) -> int | None:
        for inc in self.service.store.incarnations(node):
            if inc.epoch == epoch:
                return inc.watermark
        return None

    def refuse(self, node: str | None, reason: str, field: str, detail: str, data: bytes) -> None:
        service = self.service
        service.store.dead_letter(node, reason, field, detail, data, service.clock())
        service.metrics.batches.labels("bad_batch").inc()
        service.metrics.rejects.labels(reason).inc()


@dataclass(frozen=True, slots=True)
class _Delivery:
    topic: str
    payload: bytes
    mid: int
    qos: int
    correlation: bytes | None
    connection: int  # which connection brought it: packet ids are per connection


class MqttIngest:
    """One hub replica's consumer of the shared uplink subscription.

    Args:
        service: the hub's receive path: an :class:`IngestService` (its store, clock and
            metrics), or any :class:`IngestPath`.
        host, port: the broker.
        group: shared-subscription group; replicas of one hub use the same group.
        instance: this replica's name, part of the client id (unique per replica).
        tenant: consume one tenant only (default: every tenant).
        session_expiry_s: how long the broker keeps this replica's session while it is
            disconnected. Default 0: Mosquitto keeps routing a share of the messages to
            a disconnected shared subscriber with a live session (measured here: a
            replica stopped with a 300 s session still took 10 of 20 messages), so a
            dead replica would hold part of the load until its session expires. Without
            a session, only live replicas get messages; what a dying replica had not
            committed, its nodes resend (their ack never came).
        max_pending: messages the broker sends before this replica acknowledges them.
        max_payload_bytes: larger payloads are dead-lettered as ``oversized``.

    Attributes:
        received, stored, acks_published: messages taken, batches committed and acks
            sent; ``rejected`` counts refused batches by reason; ``store_errors`` the
            batches not stored because the store failed; ``out_of_order`` the batches
            not committed because an earlier one was missing; ``errors`` anything else.
    """

    def __init__(
        self,
        service: IngestService | IngestPath,
        host: str,
        port: int,
        *,
        group: str = "hub",
        instance: str = "0",
        tenant: str | None = None,
        keepalive_s: int = 15,
        session_expiry_s: int = 0,
        max_pending: int = 32,
        max_payload_bytes: int = MAX_BODY_BYTES,
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 5.0,
    ) -> None:
        check_name("group", group)
        check_name("instance", instance)
        self.service = service
        self.path: IngestPath = (
            StoreIngest(service) if isinstance(service, IngestService) else service
        )
        self._marks: dict[tuple[str, int], int] = {}  # worker thread only
        self.host, self.port = host, port
        self.filter = shared_uplink_filter(group, tenant)
        self.client_id = f"edgeloop-hub-{group}-{instance}"
        self._keepalive = keepalive_s
        self._session_expiry = session_expiry_s
        self._max_pending = max_pending
        self._max_payload = max_payload_bytes
        self._queue: queue.SimpleQueue[_Delivery | None] = queue.SimpleQueue()
        self._subscribed = threading.Event()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        install_publish_decode()  # uplinks are large: parse them without copying
        client = new_client(self.client_id, manual_ack=True)
        lo, hi = reconnect_min_s, reconnect_max_s
        client.reconnect_delay_set(min_delay=lo, max_delay=hi)  # type: ignore[arg-type]
        client.max_queued_messages_set(4 * max_pending)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        self._client = client
        self._connection = 0
        self.last_error = ""
        self.received = 0
        self.stored = 0
        self.acks_published = 0
        self.rejected: Counter[str] = Counter()
        self.store_errors = 0
        self.out_of_order = 0
        self.errors = 0

    # -- lifecycle ------------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> MqttIngest:
        """Connect, subscribe, and wait until the broker granted the subscription.

        Raises:
            TransportError: not subscribed within ``timeout_s`` (reason named).
        """
        self._worker = threading.Thread(target=self._work, name=self.client_id, daemon=True)
        self._worker.start()
        self._client.connect_async(
            self.host,
            self.port,
            keepalive=self._keepalive,
            clean_start=False,
            properties=connect_properties(self._session_expiry, self._max_pending),
        )
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.stop()
            why = self.last_error or "no answer"
            raise TransportError(
                f"hub ingest: not subscribed to {self.filter!r} on {self.host}:{self.port} "
                f"after {timeout_s:g} s ({why})"
            )
        return self

    def stop(self) -> None:
        """Disconnect and stop the worker after the message it is processing."""
        self._client.disconnect()
        self._client.loop_stop()
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(30)
            self._worker = None

    def __enter__(self) -> MqttIngest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- paho callbacks (network thread) --------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason.getName()}"
            return
        self._connection += 1
        client.subscribe(self.filter, qos=1)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        bad = [r.getName() for r in reasons if r.is_failure]
        if bad:
            self.last_error = f"subscription refused: {', '.join(bad)}"
            return
        self._subscribed.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        self.last_error = f"disconnected: {reason.getName()}"

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(
            _Delivery(
                msg.topic,
                bytes(msg.payload),
                msg.mid,
                msg.qos,
                correlation_of(msg.properties),
                self._connection,
            )
        )

    # -- the worker ---------------------------------------------------------------------
    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._process(item)
            except Exception as exc:  # never let one message stop the consumer
                with self._lock:
                    self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                # After the commit and the ack: only now may the broker forget it. A
                # message of an earlier connection is not acknowledged: its packet id may
                # name another message now (the broker redelivers or the node resends).
                if item.connection == self._connection:
                    self._client.ack(item.mid, item.qos)

    def _process(self, item: _Delivery) -> None:
        with self._lock:
            self.received += 1
        try:
            tenant, node, _ = parse_node_topic(item.topic)
        except ValueError as exc:
            self._reject(None, None, item, RejectReason.MALFORMED.value, "topic", str(exc))
            return
        topics = NodeTopics(tenant, node)
        if len(item.payload) > self._max_payload:
            detail = f"{len(item.payload)} > {self._max_payload} bytes"
            self._reject(topics, node, item, RejectReason.OVERSIZED.value, "payload", detail)
            return
        corr = Correlation.unpack(item.correlation)
        try:
            behind = None if corr is None else self._ahead_of(node, corr)
            if behind is not None:
                with self._lock:
                    self.out_of_order += 1
                self._publish_ack(topics, item, Ack(node, behind))
                return
            ack = self.path.ingest(item.payload, sender=node)
        except TelemetryError as exc:  # dead-lettered and counted by the service
            with self._lock:
                self.rejected[exc.reason.value] += 1
            self._reply_error(topics, item, exc.reason.value, exc.field, exc.detail)
            return
        except SQLAlchemyError as exc:
            with self._lock:
                self.store_errors += 1
            self.last_error = f"store: {type(exc).__name__}"
            return  # nothing committed, nothing acknowledged: the node sends it again
        with self._lock:
            self.stored += 1
        if corr is not None:
            self._remember(node, corr.epoch, ack.upto_seq)
        self._publish_ack(topics, item, ack)

    def _ahead_of(self, node: str, corr: Correlation) -> int | None:
        """The watermark a batch is ahead of (it must not be committed yet), or ``None``.

        Watermarks only go up, so one known to be at or past ``after_seq`` stays so; a
        batch ahead of the remembered one asks the store (another replica may have
        committed the missing batch). An epoch never seen is left to the store.
        """
        key = (node, corr.epoch)
        mark = self._marks.get(key)
        if mark is not None and corr.after_seq <= mark:
            return None
        mark = self.path.watermark(node, corr.epoch)
        if mark is None:
            return None
        self._remember(node, corr.epoch, mark)
        return None if corr.after_seq <= mark else mark

    def _remember(self, node: str, epoch: int, mark: int) -> None:
        marks = self._marks
        if len(marks) >= MAX_MARKS and (node, epoch) not in marks:
            marks.clear()  # rare: a fleet this large re-reads watermarks once
        marks[(node, epoch)] = max(mark, marks.get((node, epoch), 0))

    def _publish_ack(self, topics: NodeTopics, item: _Delivery, ack: Ack) -> None:
        info = self._client.publish(
            topics.ack,
            codec.encode_ack(ack),
            qos=1,
            properties=publish_properties(item.correlation),
        )
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            with self._lock:
                self.acks_published += 1

    def _reject(
        self,
        topics: NodeTopics | None,
        node: str | None,
        item: _Delivery,
        reason: str,
        field: str,
        detail: str,
    ) -> None:
        self.path.refuse(node, reason, field, f"{item.topic}: {detail}", item.payload)
        with self._lock:
            self.rejected[reason] += 1
        if topics is not None:
            self._reply_error(topics, item, reason, field, detail)

    def _reply_error(
        self, topics: NodeTopics, item: _Delivery, reason: str, field: str, detail: str
    ) -> None:
        props = publish_properties(
            item.correlation, user={ERROR_PROPERTY: reason, FIELD_PROPERTY: field}
        )
        self._client.publish(topics.ack, detail.encode()[:4096], qos=1, properties=props)

    def stats(self) -> dict[str, Any]:
        """Counters for status reports and tests."""
        with self._lock:
            return {
                "received": self.received,
                "stored": self.stored,
                "acks_published": self.acks_published,
                "rejected": dict(self.rejected),
                "store_errors": self.store_errors,
                "out_of_order": self.out_of_order,
                "errors": self.errors,
            }


__all__ = ["MAX_MARKS", "IngestPath", "MqttIngest", "StoreIngest"]

"""MQTT v5 uplink: batches published at QoS 1 on a persistent session, released by the
hub's application ack, never by the broker's PUBACK.

Topics (see :mod:`edgeloop.transport.topics`): the node publishes encoded batches
(``codec.encode_batch``, the same bytes as over HTTP) on ``edgeloop/<tenant>/<node>/uplink``
and subscribes to ``.../ack``, where the hub publishes, *after its commit*, the
watermark of (node, epoch). ``.../presence`` holds ``online`` (retained) while the node is
connected; the broker publishes the last will ``offline`` (retained) when the
connection dies, and :meth:`MqttTransport.close` asks for it on a clean disconnect.

Delivery, step by step:

1. ``send`` publishes the batch with correlation data (epoch, last seq, send id,
   after_seq) and waits for the broker's PUBACK: one hop, so the broker holds it. A
   PUBACK saying no one subscribes to the uplink (no hub consuming) is a :class:`LinkDown`.
2. The hub commits and publishes an :class:`Ack` with the same correlation data. A batch
   that arrives ahead of the hub's watermark (``after_seq`` above it: an earlier batch
   was lost or is still with another hub replica) is not committed; its ack carries the
   watermark only.
3. ``receive`` yields that ack, its ``answers_seq`` set to the batch's last seq (so the
   node sees a batch the hub did not take and resends from the watermark). Acks of
   another epoch (they must never release entries of this outbox), of a send already
   answered, or without our correlation data are dropped and counted (``stale_acks``);
   yielded watermarks never go down.

A lost connection is a :class:`LinkDown` for ``send`` (pending PUBACKs fail at once).
paho reconnects in the background (exponential back-off, jittered per client) and resumes
the session (``clean_start`` False, ``session_expiry_s``): QoS 1 messages it had not
had acknowledged go again, acks queued for the node while it was away are delivered.
Redelivery is harmless: the hub is idempotent on (node, epoch, seq).

What is in flight is bounded: at most ``max_inflight`` publishes await their PUBACK
(paho refuses more than 65,535 unacknowledged QoS 1 messages; this bound is far lower).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edgeloop.errors import ConfigError, LinkDown, TelemetryError, TransportError
from edgeloop.telemetry import codec
from edgeloop.transport.base import Batch, Message
from edgeloop.transport.mqtt_publish_decode import install as install_publish_decode
from edgeloop.transport.mqtt_session import (
    ERROR_PROPERTY,
    FIELD_PROPERTY,
    NO_MATCHING_SUBSCRIBERS,
    Correlation,
    connect_properties,
    correlation_of,
    new_client,
    publish_properties,
    publish_size,
    user_properties,
)
from edgeloop.transport.topics import NodeTopics

PAHO_MAX_INFLIGHT = 65_535
"""paho refuses QoS 1 publishes beyond this many unacknowledged messages."""
MAX_PENDING_SENDS = 4096
"""Sends awaiting their application ack that the transport remembers (oldest forgotten)."""
_CONTROL_SLOTS = 8  # QoS 1 presence and state messages besides the uplink


_DISCONNECT_WITH_WILL = ReasonCode(PacketTypes.DISCONNECT, identifier=0x04)
"""MQTT v5 reason 0x04: a clean disconnect after which the broker publishes the will."""


class MqttTransport:
    """Uplink of one node through an MQTT v5 broker.

    Args:
        host, port: the broker.
        tenant, node: the topic levels ``edgeloop/<tenant>/<node>/...``; ``node`` must
            be the ``Batch.node`` of every batch sent.
        client_id: MQTT client id; stable across restarts so the session resumes
            (default ``edgeloop-<tenant>-<node>``).
        timeout_s: how long ``send`` waits for the broker (first connection, PUBACK).
        keepalive_s: MQTT keep-alive; a silent broker is declared lost after 1.5x.
        session_expiry_s: how long the broker keeps the session (subscription, queued
            acks) after the connection is lost.
        max_inflight: uplink publishes awaiting a PUBACK, at most (1..65,527: paho's
            65,535 less a few for presence and state).
        max_payload_bytes: larger encoded batches are refused (``TransportError``);
            keep it at or below the broker's ``message_size_limit``.
        reconnect_min_s, reconnect_max_s: paho's reconnect back-off bounds.

    Attributes:
        bytes_sent: MQTT PUBLISH bytes of every uplink attempt (header, topic,
            properties, payload), retransmissions by the caller included.
        batches_sent, stale_acks, refusals, disconnects: counters; ``last_refusal`` is
            the hub's reason for the last batch it refused (dead-lettered).
    """

    def __init__(
        self,
        host: str,
        port: int,
        tenant: str,
        node: str,
        *,
        client_id: str | None = None,
        timeout_s: float = 5.0,
        keepalive_s: int = 15,
        session_expiry_s: int = 3600,
        max_inflight: int = 20,
        max_payload_bytes: int = 64 * 1024 * 1024,
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 5.0,
    ) -> None:
        top = PAHO_MAX_INFLIGHT - _CONTROL_SLOTS
        if not 1 <= max_inflight <= top:
            raise ConfigError(f"max_inflight: must be in 1..{top} (got {max_inflight})")
        if not 0 < port < 65536:
            raise ConfigError(f"port: must be in 1..65535 (got {port})")
        if timeout_s <= 0 or keepalive_s <= 0 or session_expiry_s < 0:
            raise ConfigError("timeout_s, keepalive_s must be > 0 and session_expiry_s >= 0")
        self.topics = NodeTopics(tenant, node)
        self.node = node
        self.host, self.port = host, port
        self.client_id = client_id or f"edgeloop-{tenant}-{node}"
        self._timeout = timeout_s
        self._keepalive = keepalive_s
        self._session_expiry = session_expiry_s
        self._max_inflight = max_inflight
        self._max_payload = max_payload_bytes
        self._reconnect = (reconnect_min_s, reconnect_max_s)
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._acks: asyncio.Queue[Message] | None = None
        self._pubacks: dict[int, asyncio.Future[ReasonCode]] = {}
        self._pending: collections.OrderedDict[bytes, Correlation] = collections.OrderedDict()
        self._epoch: int | None = None
        self._high = 0  # highest watermark yielded for the current epoch
        self._send_id = 0
        self._ever_connected = False
        self._closed = False
        self.last_error = ""
        self.last_refusal = ""
        self.bytes_sent = 0
        self.batches_sent = 0
        self.stale_acks = 0
        self.refusals = 0
        self.disconnects = 0

    @property
    def where(self) -> str:
        return f"mqtt://{self.host}:{self.port}/{self.topics.uplink}"

    @property
    def inflight(self) -> int:
        """Publishes awaiting their PUBACK now (at most ``max_inflight``)."""
        return len(self._pubacks)

    @property
    def send_concurrency(self) -> int:
        """How many ``send`` calls may overlap (the node's uplink reads it): concurrent
        sends are published in call order, and at most ``max_inflight`` await their
        PUBACK; a batch that still reaches the hub ahead of an earlier one is not
        committed there (see the module docstring), so overlapping is safe."""
        return self._max_inflight

    @property
    def connected(self) -> bool:
        """True while the MQTT connection is up (as last reported by paho)."""
        return self._connected is not None and self._connected.is_set()

    # -- lifecycle ------------------------------------------------------------------
    def _start(self) -> None:
        """Create the client and its network thread on first use (idempotent)."""
        if self._closed:
            raise LinkDown(f"{self.where}: transport closed")
        loop = asyncio.get_running_loop()
        if self._client is not None:
            if loop is not self._loop:
                raise TransportError(f"{self.where}: used from another event loop")
            return
        self._loop = loop
        self._connected = asyncio.Event()
        self._slots = asyncio.Semaphore(self._max_inflight)
        self._acks = asyncio.Queue()
        install_publish_decode()
        client = new_client(self.client_id)
        # paho's own bounds leave room for presence and state next to the uplink; a
        # publish whose PUBACK timed out keeps its place until the broker answers.
        client.max_inflight_messages_set(self._max_inflight + _CONTROL_SLOTS)
        client.max_queued_messages_set(self._max_inflight + _CONTROL_SLOTS)
        # paho backs off exponentially but without jitter: scale the bounds per client
        # (0.5-1.5x, stable per client id) so a fleet coming back does not stampede.
        # Its back-off arithmetic is plain float math; its annotation says int.
        jitter = 0.5 + random.Random(self.client_id).random()
        lo, hi = (x * jitter for x in self._reconnect)
        client.reconnect_delay_set(min_delay=lo, max_delay=hi)  # type: ignore[arg-type]
        client.will_set(self.topics.presence, b"offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        client.connect_async(
            self.host,
            self.port,
            keepalive=self._keepalive,
            clean_start=False,
            properties=connect_properties(self._session_expiry),
        )
        self._client = client
        client.loop_start()

    async def connect(self) -> None:
        """Start the client and wait for the broker (at most ``timeout_s``).

        Raises:
            LinkDown: not connected in time (the client keeps trying in the background).
        """
        self._start()
        assert self._connected is not None
        try:
            await asyncio.wait_for(self._connected.wait(), self._timeout)
        except TimeoutError:
            why = f": {self.last_error}" if self.last_error else ""
            raise LinkDown(f"{self.where}: not connected after {self._timeout:g} s{why}") from None

    async def close(self) -> None:
        """Disconnect cleanly (the broker publishes the ``offline`` will) and stop the
        network thread. Idempotent; ``send`` raises :class:`LinkDown` afterwards."""
        if self._closed:
            return
        self._closed = True
        client = self._client
        if client is not None:
            if client.is_connected():
                client.disconnect(reasoncode=_DISCONNECT_WITH_WILL)
            await asyncio.to_thread(client.loop_stop)
        self._fail_pubacks("transport closed")

    # -- send -----------------------------------------------------------------------
    async def send(self, batch: Batch) -> None:
        """Publish ``batch`` at QoS 1 and wait until the broker has it (PUBACK).

        The entries are released only by the hub's ack, which :meth:`receive` yields.

        Raises:
            LinkDown: not connected, no PUBACK within ``timeout_s``, the connection was
                lost meanwhile, or no hub subscribes to the uplink.
            TransportError: the batch belongs to another node, is over
                ``max_payload_bytes``, or the broker refused it (reason named).
        """
        if self._closed:
            raise LinkDown(f"{self.where}: transport closed")
        if batch.node != self.node:
            raise TransportError(
                f"{self.where}: batch of node {batch.node!r} on the uplink of {self.node!r}"
            )
        if not self.connected:
            if self._ever_connected:
                raise LinkDown(f"{self.where}: connection lost ({self.last_error or 'down'})")
            await self.connect()
        assert self._client is not None and self._slots is not None and self._loop is not None
        payload = codec.encode_batch(batch)
        if len(payload) > self._max_payload:
            raise TransportError(
                f"{self.where}: encoded batch of {len(payload)} bytes is over "
                f"max_payload_bytes={self._max_payload}; claim smaller batches"
            )
        last = batch.entries[-1].seq if batch.entries else batch.after_seq
        if batch.epoch != self._epoch:
            self._epoch, self._high = batch.epoch, 0
            self._pending.clear()
        self._send_id += 1
        corr = Correlation(batch.epoch, last, self._send_id, batch.after_seq)
        key = corr.pack()
        async with self._slots:
            if not self.connected:
                raise LinkDown(f"{self.where}: connection lost ({self.last_error or 'down'})")
            info = self._client.publish(
                self.topics.uplink, payload, qos=1, properties=publish_properties(key)
            )
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                # NO_CONN: paho keeps the message and sends it after reconnecting (the
                # hub dedupes it); QUEUE_SIZE: the in-flight bound is reached.
                raise LinkDown(f"{self.where}: publish failed: {mqtt.error_string(info.rc)}")
            fut: asyncio.Future[ReasonCode] = self._loop.create_future()
            self._pubacks[info.mid] = fut
            self._remember(key, corr)
            self.batches_sent += 1
            self.bytes_sent += publish_size(len(self.topics.uplink), len(key), len(payload))
            try:
                reason = await asyncio.wait_for(fut, self._timeout)
            except TimeoutError:
                raise LinkDown(f"{self.where}: no PUBACK within {self._timeout:g} s") from None
            finally:
                self._pubacks.pop(info.mid, None)
        if reason.is_failure:
            raise TransportError(f"{self.where}: broker refused the batch: {reason.getName()}")
        if reason.value == NO_MATCHING_SUBSCRIBERS:
            raise LinkDown(f"{self.where}: no hub subscribes to the uplink (batch not stored)")

    def _remember(self, key: bytes, corr: Correlation) -> None:
        self._pending[key] = corr
        while len(self._pending) > MAX_PENDING_SENDS:
            self._pending.popitem(last=False)

    async def publish_state(self, state: dict[str, Any]) -> None:
        """Publish the node's reported state (JSON, retained, QoS 1) on ``.../state``.

        Raises:
            LinkDown: not connected.
        """
        if not self.connected:
            raise LinkDown(f"{self.where}: not connected")
        assert self._client is not None
        body = json.dumps(state, default=str, sort_keys=True).encode()
        info = self._client.publish(self.topics.state, body, qos=1, retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise LinkDown(f"{self.where}: state publish failed: {mqtt.error_string(info.rc)}")

    # -- receive --------------------------------------------------------------------
    async def receive(self) -> AsyncIterator[Message]:
        """The hub's acks for this node, in order, with never-decreasing watermarks."""
        self._start()
        assert self._acks is not None
        while True:
            yield await self._acks.get()

    def _on_ack(self, payload: bytes, props: Any) -> None:
        """Runs on the event loop: filter an ack message, queue it for ``receive``."""
        key = correlation_of(props)
        corr = Correlation.unpack(key)
        if key is None or corr is None or key not in self._pending:
            self.stale_acks += 1  # another epoch, already answered, or not from our hub
            return
        user = user_properties(props)
        if ERROR_PROPERTY in user:
            del self._pending[key]
            self.refusals += 1
            detail = payload.decode("utf-8", "replace")
            field = user.get(FIELD_PROPERTY, "?")
            self.last_refusal = f"{field}: {user[ERROR_PROPERTY]} ({detail})"
            return
        try:
            ack = codec.decode_ack(payload)
        except TelemetryError as exc:
            self.stale_acks += 1
            self.last_error = f"undecodable ack: {exc}"
            return
        if ack.node != self.node or corr.epoch != self._epoch:
            self.stale_acks += 1
            return
        del self._pending[key]
        for k in [k for k, c in self._pending.items() if c.last_seq <= ack.upto_seq]:
            del self._pending[k]  # answered by this watermark too
        # Acks may overtake each other: watermarks never go down. ``answers_seq`` above
        # the watermark says the hub did not commit this batch (an earlier one is missing).
        self._high = max(self._high, ack.upto_seq)
        ack = replace(ack, upto_seq=self._high, answers_seq=corr.last_seq)
        assert self._acks is not None
        self._acks.put_nowait(ack)

    # -- paho callbacks (network thread) --------------------------------------------
    def _call(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closed meanwhile
            loop.call_soon_threadsafe(fn, *args)

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason.getName()}"
            return
        client.subscribe(self.topics.ack, qos=1)
        client.publish(self.topics.presence, b"online", qos=1, retain=True)
        self._call(self._set_connected, True, "")

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        self._call(self._set_connected, False, f"disconnected: {reason.getName()}")

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        self.last_error = f"cannot reach the broker at {self.host}:{self.port}"

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        self._call(self._resolve_puback, mid, reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.topics.ack:
            self._call(self._on_ack, bytes(msg.payload), msg.properties)

    # -- on the event loop ----------------------------------------------------------
    def _set_connected(self, up: bool, why: str) -> None:
        assert self._connected is not None
        if up:
            self._ever_connected = True
            self.last_error = ""
            self._connected.set()
            return
        if self._connected.is_set():
            self.disconnects += 1
        self._connected.clear()
        self.last_error = why
        self._fail_pubacks(why)

    def _resolve_puback(self, mid: int, reason: ReasonCode) -> None:
        fut = self._pubacks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(reason)

    def _fail_pubacks(self, why: str) -> None:
        pubacks, self._pubacks = self._pubacks, {}
        for fut in pubacks.values():
            if not fut.done():
                fut.set_exception(LinkDown(f"{self.where}: {why}"))

    def stats(self) -> dict[str, Any]:
        """Counters for status reports."""
        return {
            "connected": self.connected,
            "batches_sent": self.batches_sent,
            "bytes_sent": self.bytes_sent,
            "stale_acks": self.stale_acks,
            "refusals": self.refusals,
            "disconnects": self.disconnects,
            "last_error": self.last_error,
        }


__all__ = ["MAX_PENDING_SENDS", "PAHO_MAX_INFLIGHT", "MqttTransport"]

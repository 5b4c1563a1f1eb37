"""MQTT source: sensors publish to a node through a broker (MQTT v5, paho-mqtt).

The node subscribes to ``edgeloop/<tenant>/<node>/sensors/#`` (configurable) on a
persistent session and turns each message into samples (JSON records or sensor blocks,
:mod:`edgeloop.node.sensor_payload`). Frames reach the node loop like those of the HTTP
push source; bad payloads are rejected with a reason naming the topic and the field and
counted by the core (its reject counters travel upstream), valid samples beside them kept.

Delivery (QoS 1, the default):

* paho's network thread puts each message on a bounded queue; the node loop decodes
  what is queued and merges it into one frame (about ``max_frame_rows`` samples at most).
* The PUBACK is **manual** and never comes before the message's frame went through the
  node core (``NodeCore.process``) and the outbox append of what that produced has
  returned (the source is asked for its next frame only then). With ``ack: covered``
  (the default) it waits further, until the message's samples are in summary rows the
  outbox has committed (the core's resume point has passed its newest sample): a
  message is acknowledged only once a kill -9 can no longer lose it. A message held
  longer than ``hold_s``, or while more than half of ``receive_maximum`` are held (the
  broker would stop sending), is acknowledged anyway and counted (``acked_early``).
  With ``ack: handover`` it goes right after the hand-over; a kill -9 then loses the
  acknowledged samples still in the core's open summary periods.
* What is never acknowledged is delivered again by the broker on the same session,
  after a crash or a lost connection.
* The broker sends at most ``receive_maximum`` unacknowledged messages (MQTT v5 flow
  control), so the queue between the threads never holds more than that many QoS 1
  messages: a slow node slows the broker's delivery, and the broker queues the rest for
  the session. QoS 0 messages have no flow control: beyond the queue's bound they are
  dropped and counted (``dropped_qos0``).
* The session outlives the connection by ``session_expiry_s`` (``clean_start`` False
  with a stable client id): what sensors publish while the node is down is queued by
  the broker (up to its ``max_queued_messages``) and delivered when the node is back.
* After a reconnect the broker redelivers what was not acknowledged, marked DUP; samples
  of a DUP message at or before the newest timestamp this process already handed to the
  core for that sensor are dropped (``redelivered_samples``), not counted twice.
* A sensor block that starts after where the sensor's previous block ended is counted
  (``block_gaps``, ``block_gap_samples``): samples lost before the node, e.g. by a
  broker whose session queue overflowed (Mosquitto drops silently beyond
  ``max_queued_messages``).
* A lost connection is retried by paho with exponential back-off
  (``reconnect_min_s``..``reconnect_max_s``, jittered per client); :meth:`status`
  (node status and its uplink) shows ``connected``, ``disconnects`` and ``last_error``.

A clean stop flushes the core into the outbox and acknowledges everything handed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from edgeloop.errors import ConfigError, RejectReason
from edgeloop.node.sensor_payload import PayloadDecoder, block_period
from edgeloop.telemetry.frame import Frame, SensorCatalog
from edgeloop.telemetry.validate import MAX_PAYLOAD_BYTES, RejectRecord
from edgeloop.transport.mqtt_session import connect_properties, new_client

__all__ = ["MqttSource", "Progress", "Tls"]

Progress = Callable[[], tuple[int, int | None]]
"""The core's summary entries produced so far and its resume point (see ``ack``)."""

QOS0_SLACK = 1024
"""Queue room for QoS 0 messages beyond ``receive_maximum`` (dropped when it is full)."""
_NEVER = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS files: the CA that signed the broker's certificate, and the node's own
    certificate and key for mutual TLS (both or neither)."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(slots=True)
class _Message:
    gen: int  # connection generation it arrived on: its packet id means nothing on another
    mid: int
    qos: int
    dup: bool
    topic: str
    payload: bytes  # empty when over max_payload_bytes (not kept)
    size: int
    newest_ns: int | None = None  # newest sample time of the message, once decoded
    handed_at: float = 0.0  # time.monotonic() when handed to the core
    entries_at: int = 0  # summary entries the core had produced before it was handed over


class MqttSource:
    """Frames from sensors publishing over MQTT; an async iterator of :class:`Frame`.

    Args:
        catalog: the node's sensors.
        host, port: the broker.
        topic: the subscription filter.
        client_id: stable across restarts so the session (and what the broker queued)
            resumes.
        qos: subscription QoS (0 or 1).
        session_expiry_s: how long the broker keeps the session after a disconnect
            (0: clean start every time, nothing queued while down).
        keepalive_s: MQTT keep-alive.
        receive_maximum: unacknowledged messages the broker may send (flow control).
        sensor_levels, max_payload_bytes: see :class:`PayloadDecoder`.
        max_frame_rows: most samples merged into one frame.
        reconnect_min_s, reconnect_max_s: back-off bounds of reconnects.
        on_reject: called in the loop with the rejects of each bad message
            (``NodeCore.reject``: counted, sent upstream).
        ack: ``covered`` (PUBACK once the message's samples are in committed summary
            rows, per ``progress``) or ``handover`` (once its frame went through the
            core and the outbox append).
        progress: the core's summary entries produced so far and its resume point
            (``NodeCore.counters.summary_entries``, ``NodeCore.resume_ns``); without it
            ``covered`` acts as ``handover``.
        hold_s: longest a message waits for its cover before it is acknowledged anyway.
        tls: CA file and optional client certificate and key (mutual TLS).
        username, password: broker credentials.
    """

    def __init__(
        self,
        catalog: SensorCatalog,
        host: str,
        port: int,
        topic: str,
        client_id: str,
        *,
        qos: int = 1,
        session_expiry_s: int = 3600,
        keepalive_s: int = 15,
        receive_maximum: int = 1024,
        sensor_levels: int = 1,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        max_frame_rows: int = 200_000,
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 10.0,
        on_reject: Callable[[list[RejectRecord]], None] | None = None,
        ack: str = "covered",
        progress: Progress | None = None,
        hold_s: float = 10.0,
        tls: Tls | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if ack not in ("covered", "handover"):
            raise ValueError(f"ack: 'covered' or 'handover' (got {ack!r})")
        if qos not in (0, 1):
            raise ValueError(f"qos: 0 or 1 (got {qos})")
        self.catalog = catalog
        self.host, self.port, self.topic, self.client_id = host, port, topic, client_id
        self.qos = qos
        self._session_expiry = session_expiry_s
        self._keepalive = keepalive_s
        self._receive_maximum = receive_maximum
        self._max_rows = max_frame_rows
        self._max_payload = max_payload_bytes
        self._reconnect = (reconnect_min_s, reconnect_max_s)
        self._on_reject = on_reject
        self._ack_mode = ack
        self._progress = progress
        self._hold_s = hold_s
        self._tls = tls
        self._auth = (username, password) if username is not None else None
        self._decoder = PayloadDecoder(
            catalog, sensor_levels=sensor_levels, max_payload_bytes=max_payload_bytes
        )
        self._queue: queue.Queue[_Message] = queue.Queue(receive_maximum + QOS0_SLACK)
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._subscribed: asyncio.Event | None = None
        self._handed: list[_Message] = []  # handed to the core, PUBACK not sent yet
        self._high = np.full(len(catalog), _NEVER, dtype=np.int64)
        self._next_block = np.full(len(catalog), _NEVER, dtype=np.int64)
        self._gen = 0
        self._closing = False
        self._sleeping = False  # the loop waits for paho's thread to wake it
        # Counters (read by status()).
        self.connected = False
        self.connects = 0
        self.disconnects = 0
        self.session_resumed = 0
        self.last_error = ""
        self.messages = 0
        self.samples = 0
        self.rejected_messages = 0
        self.dropped_qos0 = 0
        self.redelivered_samples = 0
        self.acked = 0
        self.acked_early = 0
        self.block_gaps = 0
        self.block_gap_samples = 0

    @classmethod
    def from_config(
        cls,
        config: Any,
        source: Any,
        catalog: SensorCatalog,
        on_reject: Callable[[list[RejectRecord]], None] | None = None,
        progress: Progress | None = None,
    ) -> MqttSource:
        """The source of ``source`` (an ``MqttSourceConfig``) in node ``config``;
        ``progress`` reports the core's summary entries and resume point."""
        from edgeloop.node.config import mqtt_client_id, mqtt_topic

        password = None
        if source.password_file is not None:
            try:
                password = Path(source.password_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"password_file: cannot read {source.password_file} ({exc.strerror})"
                ) from None
        tls = source.tls
        return cls(
            catalog,
            source.host,
            source.port,
            mqtt_topic(config, source),
            mqtt_client_id(config, source),
            qos=source.qos,
            session_expiry_s=source.session_expiry_s,
            keepalive_s=source.keepalive_s,
            receive_maximum=source.receive_maximum,
            sensor_levels=source.sensor_levels,
            max_payload_bytes=source.max_payload_bytes,
            max_frame_rows=source.max_frame_rows,
            reconnect_min_s=source.reconnect_min_s,
            reconnect_max_s=source.reconnect_max_s,
            on_reject=on_reject,
            ack=source.ack,
            progress=progress,
            hold_s=source.ack_hold_s,
            tls=Tls(tls.ca_file, tls.cert_file, tls.key_file) if tls is not None else None,
            username=source.username,
            password=password,
        )

    @property
    def where(self) -> str:
        return f"mqtt://{self.host}:{self.port}/{self.topic}"

    def status(self) -> dict[str, Any]:
        """Counters for the node's status (cumulative; safe to send repeatedly)."""
        return {
            "topic": self.topic,
            "connected": self.connected,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "session_resumed": self.session_resumed,
            "last_error": self.last_error,
            "messages": self.messages,
            "samples": self.samples,
            "rejected_messages": self.rejected_messages,
            "dropped_qos0": self.dropped_qos0,
            "redelivered_samples": self.redelivered_samples,
            "acked": self.acked,
            "acked_early": self.acked_early,
            "block_gaps": self.block_gaps,
            "block_gap_samples": self.block_gap_samples,
            "queued": self._queue.qsize(),
            "unacked": len(self._handed),
        }

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (idempotent); paho retries until the broker answers."""
        if self._client is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._subscribed = asyncio.Event()
        client = new_client(self.client_id, manual_ack=True)
        jitter = 0.5 + random.Random(self.client_id).random()
        lo, hi = (x * jitter for x in self._reconnect)
        client.reconnect_delay_set(min_delay=lo, max_delay=hi)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        if self._tls is not None:
            client.tls_set(
                ca_certs=self._tls.ca_file, certfile=self._tls.cert_file, keyfile=self._tls.key_file
            )
        if self._auth is not None:
            client.username_pw_set(*self._auth)
        client.connect_async(
            self.host,
            self.port,
            keepalive=self._keepalive,
            clean_start=self._session_expiry == 0,
            properties=connect_properties(self._session_expiry, self._receive_maximum),
        )
        self._client = client
        client.loop_start()

    async def wait_subscribed(self, timeout_s: float) -> bool:
        """Start if needed and wait until the subscription is in place."""
        self.start()
        assert self._subscribed is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout_s)
        return self._subscribed.is_set()

    async def close(self) -> None:
        """Acknowledge what the core has taken, disconnect (the session stays with the
        broker) and stop the network thread. Call it after the node flushed."""
        if self._closing:
            return
        self._ack_handed()
        self._closing = True
        client, self._client = self._client, None
        if client is not None:
            # PUBACKs go out before the DISCONNECT: paho sends its packets in order.
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
        self.connected = False

    # -- the node's side ----------------------------------------------------------------
    async def __aiter__(self) -> AsyncIterator[Frame]:
        self.start()
        assert self._wake is not None
        while not self._closing:
            # Everything handed over before has been through the core and the outbox
            # append (the consumer asks for the next frame only then): acknowledge what
            # the acknowledgement policy lets go.
            self._release()
            batch = self._take()
            if not batch:
                # Tell paho's thread to wake us (it does not for every message: a wake-up
                # per message costs a system call on both sides), then look once more.
                self._wake.clear()
                self._sleeping = True
                batch = self._take()
                if not batch:
                    # Held messages are released by age even when nothing arrives.
                    wait = self._hold_s if self._handed else None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                    self._sleeping = False
                    continue
                self._sleeping = False
            frame = self._merge(batch)
            now = time.monotonic()
            entries = self._progress()[0] if self._progress is not None else 0
            for msg in batch:
                msg.handed_at, msg.entries_at = now, entries
            self._handed.extend(batch)
            if len(frame):
                yield frame

    def _take(self) -> list[_Message]:
        out: list[_Message] = []
        rows = 0
        while rows < self._max_rows:
            try:
                msg = self._queue.get_nowait()
            except queue.Empty:
                break
            out.append(msg)
            rows += len(msg.payload) // 4  # a block's values; JSON holds fewer
        return out

    def _merge(self, batch: list[_Message]) -> Frame:
        """One frame of the valid samples of ``batch``; rejects reported, redeliveries
        dropped, the per-sensor high-water marks advanced."""
        parts: list[Frame] = []
        for msg in batch:
            if msg.size > self._max_payload:
                frame, rejects = Frame.empty(), [self._oversized(msg)]
            else:
                frame, rejects = self._decoder.decode(msg.topic, msg.payload)
            period = block_period(msg.payload)
            msg.payload = b""  # a held message keeps its ids and newest time, not its bytes
            if rejects:
                self.rejected_messages += 1
                if self._on_reject is not None:
                    self._on_reject(rejects)
            if not len(frame):
                continue
            msg.newest_ns = int(frame.ts.max())  # a DUP copy waits for the same cover
            if period is not None:
                self._follow_block(frame, period, msg.dup)
            if msg.dup:  # maybe handed over before the connection was lost
                fresh = frame.ts > self._high[frame.sensor]
                self.redelivered_samples += int(len(frame) - np.count_nonzero(fresh))
                frame = frame.take(fresh)
            self.samples += len(frame)
            parts.append(frame)
        merged = Frame.concat(parts)
        if not merged.is_sorted():
            merged = merged.sorted()
        if len(merged):  # grouped by sensor, time ascending: each group ends on its newest
            ends = np.append(np.flatnonzero(np.diff(merged.sensor)), len(merged) - 1)
            sensors = merged.sensor[ends]
            self._high[sensors] = np.maximum(self._high[sensors], merged.ts[ends])
        return merged

    def _follow_block(self, frame: Frame, period: int, dup: bool) -> None:
        """Count a block that starts after where its sensor's last block ended: samples
        lost before they reached the node (by the sensor, or by a broker whose queue for
        this session overflowed: Mosquitto drops beyond ``max_queued_messages`` silently)."""
        sensor = int(frame.sensor[0])
        start, after = int(frame.ts[0]), int(frame.ts[-1]) + period
        expected = int(self._next_block[sensor])
        if not dup and expected != _NEVER and start > expected:
            self.block_gaps += 1
            self.block_gap_samples += (start - expected) // period
        self._next_block[sensor] = max(expected, after)

    def _oversized(self, msg: _Message) -> RejectRecord:
        return RejectRecord(
            RejectReason.OVERSIZED,
            f"{msg.topic} payload",
            f"{msg.size} bytes > limit {self._max_payload}",
        )

    def _release(self) -> None:
        """PUBACK the handed-over messages the policy lets go (see the module docstring).

        ``covered``: a message goes once its newest sample is older than the core's
        resume point *and* a summary entry was produced after it was handed over (so a
        late sample, whose period had closed before it came, is in a committed row too),
        or at once if it carried no samples. Held longer than ``hold_s``, or beyond half of
        ``receive_maximum`` (the broker would stop sending), it goes anyway and counts
        as ``acked_early``. ``handover``: every message goes.
        """
        if not self._handed:
            return
        if self._ack_mode == "handover" or self._progress is None:
            self._ack_handed()
            return
        entries, cover = self._progress()
        limit = time.monotonic() - self._hold_s
        go: list[_Message] = []
        keep: list[_Message] = []
        early = 0
        for msg in self._handed:
            if msg.newest_ns is None or (
                cover is not None and msg.newest_ns < cover and entries > msg.entries_at
            ):
                go.append(msg)
            elif msg.handed_at < limit:
                go.append(msg)
                early += 1
            else:
                keep.append(msg)
        excess = len(keep) - self._receive_maximum // 2
        if excess > 0:
            go.extend(keep[:excess])
            keep = keep[excess:]
            early += excess
        self.acked_early += early
        self._handed = go
        self._ack_handed()
        self._handed = keep

    def _ack_handed(self) -> None:
        client, handed, self._handed = self._client, self._handed, []
        if client is None:
            return
        for msg in handed:
            # An ack of another connection's packet id could release a different
            # message: skip it; the broker redelivers that message (DUP) instead.
            if msg.qos == 1 and msg.gen == self._gen:
                client.ack(msg.mid, msg.qos)
                self.acked += 1

    # -- paho's network thread -----------------------------------------------------------
    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<topic not UTF-8>"
        size = len(msg.payload)
        # Decoded in the loop, not here: paho's thread then reads the socket sooner
        # (benchmarks/mqtt_source.py). An oversized payload is not kept, only its size.
        payload = bytes(msg.payload) if size <= self._max_payload else b""
        item = _Message(self._gen, msg.mid, msg.qos, bool(msg.dup), topic, payload, size)
        self.messages += 1
        if msg.qos == 0:
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self.dropped_qos0 += 1
                return
        else:
            # Never full while the broker honours Receive Maximum; if it does not, this
            # holds paho's thread (TCP back-pressure) until the node catches up.
            while not self._closing:
                try:
                    self._queue.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue
        if self._sleeping and self._loop is not None and self._wake is not None:
            self._sleeping = False
            self._loop.call_soon_threadsafe(self._wake.set)

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            self.last_error = f"connect refused: {reason}"
            return
        self._gen += 1
        self.connected = True
        self.connects += 1
        if getattr(flags, "session_present", False):
            self.session_resumed += 1
        # Subscribing again on a resumed session is harmless, and needed on a new one.
        client.subscribe(self.topic, qos=self.qos)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        failed = [r for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            self.last_error = f"subscribe {self.topic!r} refused: {failed[0]}"
            return
        if self._loop is not None and self._subscribed is not None:
            self._loop.call_soon_threadsafe(self._subscribed.set)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._gen += 1
        was_connected, self.connected = self.connected, False
        if self._closing:
            return
        if was_connected:
            self.disconnects += 1
            self.last_error = f"disconnected: {reason}"
        elif not self.last_error.startswith("connect refused"):  # keep the broker's reason
            self.last_error = f"connection closed before the broker accepted it: {reason}"

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        self.last_error = f"cannot connect to {self.host}:{self.port}"

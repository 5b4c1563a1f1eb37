"""What the node's MQTT transport and the hub's MQTT consumer share: MQTT v5 clients with
a persistent session, and the correlation data that ties an application ack to a batch.

An uplink PUBLISH carries MQTT v5 *correlation data* naming the batch: the sending
outbox's epoch, the batch's last sequence number, a per-transport send counter and the
batch's ``after_seq``. The hub copies it, unchanged, into the ack it publishes after
commit; the node uses it to drop acks of another epoch (they must never release entries
of this one) and acks of sends it has already had an answer for. The hub reads
``after_seq`` from it to keep commits in order without decoding the batch first.

>>> c = Correlation(epoch=7, last_seq=42, send_id=3, after_seq=30)
>>> Correlation.unpack(c.pack()) == c
True
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ERROR_PROPERTY = "edgeloop-error"
"""User property of a hub reply that refuses a batch (its value: the reject reason)."""
FIELD_PROPERTY = "edgeloop-field"
"""User property naming the field a refused batch got wrong."""

_CORRELATION = struct.Struct(">qqQq")


@dataclass(frozen=True, slots=True)
class Correlation:
    """Names one uplink send: outbox epoch, last seq of the batch, send counter, and the
    batch's ``after_seq`` (the hub commits the batch only once its watermark reached it)."""

    epoch: int
    last_seq: int
    send_id: int
    after_seq: int = 0

    def pack(self) -> bytes:
        return _CORRELATION.pack(self.epoch, self.last_seq, self.send_id, self.after_seq)

    @classmethod
    def unpack(cls, data: bytes | None) -> Correlation | None:
        """The correlation in ``data``, or ``None`` if it is absent or not ours."""
        if data is None or len(data) != _CORRELATION.size:
            return None
        return cls(*_CORRELATION.unpack(data))


def new_client(client_id: str, *, manual_ack: bool = False) -> mqtt.Client:
    """A paho client speaking MQTT v5 with the version-2 callback API.

    Its TCP socket has Nagle's algorithm off: a client that acknowledges a message
    (PUBACK) and then publishes would otherwise hold the publish until the broker's
    delayed TCP ack, about 40 ms per round trip on Linux.
    """
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    client.on_socket_open = _no_delay
    return client


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect_properties(session_expiry_s: int, receive_maximum: int | None = None) -> Properties:
    """CONNECT properties of a persistent session that outlives the connection by
    ``session_expiry_s`` seconds; ``receive_maximum`` caps the QoS 1 messages the broker
    sends before this client acknowledges them (flow control)."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = int(session_expiry_s)
    if receive_maximum is not None:
        props.ReceiveMaximum = int(receive_maximum)
    return props


def publish_properties(
    correlation: bytes | None = None,
    response_topic: str | None = None,
    user: dict[str, str] | None = None,
) -> Properties:
    """PUBLISH properties: correlation data, response topic, user properties."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if correlation is not None:
        props.CorrelationData = correlation
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if user:
        props.UserProperty = list(user.items())
    return props


def user_properties(props: Any) -> dict[str, str]:
    """The user properties of a received message (empty if it has none)."""
    pairs = getattr(props, "UserProperty", None) or []
    return {str(k): str(v) for k, v in pairs}


def correlation_of(props: Any) -> bytes | None:
    """The correlation data of a received message, or ``None``."""
    data = getattr(props, "CorrelationData", None)
    return bytes(data) if data is not None else None


NO_MATCHING_SUBSCRIBERS = 0x10
"""PUBACK reason: the broker took the message but nobody subscribes to its topic."""


def _varint_len(n: int) -> int:
    size = 1
    while n >= 128:
        n >>= 7
        size += 1
    return size


def publish_size(topic_len: int, correlation_len: int, payload_len: int) -> int:
    """Bytes of an MQTT v5 QoS 1 PUBLISH carrying correlation data.

    >>> publish_size(20, 32, 1000)  # 1 + 2 (length) + 2 + 20 + 2 + 1 + 35 + 1000
    1063
    """
    props = 1 + 2 + correlation_len
    remaining = 2 + topic_len + 2 + _varint_len(props) + props + payload_len
    return 1 + _varint_len(remaining) + remaining


__all__ = [
    "ERROR_PROPERTY",
    "FIELD_PROPERTY",
    "NO_MATCHING_SUBSCRIBERS",
    "Correlation",
    "connect_properties",
    "correlation_of",
    "new_client",
    "publish_properties",
    "publish_size",
    "user_properties",
]

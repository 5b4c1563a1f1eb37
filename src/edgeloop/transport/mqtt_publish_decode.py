"""Parse incoming MQTT PUBLISH packets without copying the payload over and over.

paho-mqtt's ``_packet.decode_publish`` walks the packet by slicing it: every
``struct.unpack`` of a prefix, every variable-byte integer and every property of MQTT v5
makes a new copy of the whole remainder, payload included. For a 1 MiB uplink batch with
correlation data that is about nine copies of 1 MiB, 2.35 ms per message (paho 2.2.0,
measured here) — as much as the rest of the hub's receive path. :func:`decode_publish`
reads the same fields through a ``memoryview`` and copies the payload once.

:func:`install` puts it in place of paho's function for this process (paho's client looks
it up at every PUBLISH). The hub's consumer (``MqttIngest``) and the node's transport
install it; a client made with ``mqtt_session.new_client`` alone keeps paho's own. It is
installed only after it decoded probe packets exactly as paho does; any packet it cannot
parse goes to paho's function, so malformed packets fail as they always did.

>>> install()
True
"""

from __future__ import annotations

import threading
from typing import Any

from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

_ORIGINAL = _packet.decode_publish
_lock = threading.Lock()
_installed: bool | None = None  # None: not tried yet


def decode_publish(header: int, packet: Any, protocol: MQTTProtocolVersion) -> Any:
    """paho's ``decode_publish`` (same arguments, same ``PublishPacket``), one payload copy.

    A packet this parser does not take (too short, a property paho would refuse, ...)
    is handed to paho's own function, which decodes it or raises its error.
    """
    try:
        return _fast(header, packet, protocol)
    except Exception:
        return _ORIGINAL(header, packet, protocol)


def _fast(header: int, packet: Any, protocol: MQTTProtocolVersion) -> Any:
    view = memoryview(packet)
    n = len(view)
    qos = (header & 0x06) >> 1
    if n < 2:
        raise ValueError("short")
    slen = (view[0] << 8) | view[1]
    pos = 2 + slen
    if pos > n:
        raise ValueError("short topic")
    topic = bytes(view[2:pos])
    v5 = protocol == MQTTProtocolVersion.MQTTv5
    if not v5 and slen == 0:
        raise ValueError("empty topic")  # paho raises MalformedPacket for it
    mid = 0
    if qos > 0:
        if pos + 2 > n:
            raise ValueError("short mid")
        mid = (view[pos] << 8) | view[pos + 1]
        pos += 2
    properties = None
    if v5:
        # The properties' length is a variable-byte integer; only the properties (a few
        # bytes) go to paho's parser, not the payload behind them.
        length = shift = 0
        end = pos
        while True:
            if end >= n or end - pos >= 4:
                raise ValueError("bad property length")
            byte = view[end]
            end += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if end + length > n:
            raise ValueError("short properties")
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        _props, used = properties.unpack(bytes(view[pos : end + length]))  # type: ignore[no-untyped-call]
        if used != end + length - pos:
            raise ValueError("property length mismatch")
        pos = end + length
    return _packet.PublishPacket(
        dup=bool(header & 0x08),
        qos=qos,
        retain=bool(header & 0x01),
        topic=topic,
        mid=mid,
        properties=properties,
        payload=bytes(view[pos:]),
    )


def _probes() -> list[tuple[int, bytes, MQTTProtocolVersion]]:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.CorrelationData = b"\x01" * 32
    props.UserProperty = [("edgeloop-error", "malformed")]
    packed = props.pack()  # type: ignore[no-untyped-call]
    topic = b"edgeloop/t/gw1/uplink"
    head = len(topic).to_bytes(2, "big") + topic
    body = bytes(range(256)) * 8
    v5, v311 = MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311
    return [
        (0x32, head + b"\x00\x07" + packed + body, v5),  # QoS 1, properties
        (0x3B, head + b"\x01\x00" + b"\x00" + body, v5),  # QoS 1, dup, retain, none
        (0x30, head + b"\x00" + b"", v5),  # QoS 0, empty payload
        (0x32, head + b"\x00\x09" + body, v311),  # v3.1.1: no properties
    ]


def install() -> bool:
    """Use :func:`decode_publish` for every paho client of this process, once it decoded
    the probe packets exactly as paho's own function does; ``False`` (paho's stays) if
    it did not, e.g. after a paho upgrade changed the packet layout it returns."""
    global _installed
    with _lock:
        if _installed is None:
            try:
                _installed = all(
                    _same(_fast(h, p, v), _ORIGINAL(h, bytearray(p), v)) for h, p, v in _probes()
                )
            except Exception:
                _installed = False
            if _installed:
                _packet.decode_publish = decode_publish
        return _installed


def _same(a: Any, b: Any) -> bool:
    """Equal packets (``Properties`` has no ``==``: compared by what they print)."""
    if a._replace(properties=None) != b._replace(properties=None):
        return False
    return str(a.properties) == str(b.properties)


__all__ = ["decode_publish", "install"]

"""The PUBLISH parser the hub and the node install: paho's result, one payload copy.

Every packet, well-formed or not, must come out exactly as from paho's own
``_packet.decode_publish`` (same fields, same properties, or the same exception type).
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgeloop.transport import mqtt_publish_decode as fast

V5, V311 = MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311


def _publish(topic: bytes, mid: int | None, payload: bytes, **props: Any) -> bytes:
    out = struct.pack("!H", len(topic)) + topic
    if mid is not None:
        out += struct.pack("!H", mid)
    p = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for k, v in props.items():
        setattr(p, k, v)
    packed: bytes = p.pack()  # type: ignore[no-untyped-call]
    return out + packed + payload


def _outcome(decode: Any, header: int, packet: bytes, protocol: MQTTProtocolVersion) -> Any:
    try:
        r = decode(header, bytearray(packet), protocol)
    except Exception as exc:
        return type(exc)
    return (r._replace(properties=None), str(r.properties))


@pytest.mark.parametrize(
    ("header", "packet"),
    [
        (0x32, _publish(b"edgeloop/t/gw1/uplink", 7, bytes(70_000), CorrelationData=b"c" * 32)),
        (0x3B, _publish(b"a/b", 65535, b"x", UserProperty=[("k", "v"), ("k", "w")])),
        (0x30, _publish(b"t", None, b"")),
        (0x34, _publish(b"t", 1, b"payload", MessageExpiryInterval=5, ContentType="bin")),
        (0x32, _publish(b"", 1, b"p", TopicAlias=3)),  # empty topic: allowed in v5
    ],
)
def test_well_formed_packets_decode_as_paho_does(header: int, packet: bytes) -> None:
    got = _outcome(fast.decode_publish, header, packet, V5)
    assert got == _outcome(fast._ORIGINAL, header, packet, V5)
    assert isinstance(got, tuple) and isinstance(got[0].payload, bytes)


def test_mqtt_311_packets_and_its_empty_topic_rule() -> None:
    ok = struct.pack("!H", 3) + b"a/b" + struct.pack("!H", 9) + b"body"
    empty = struct.pack("!H", 0) + struct.pack("!H", 9) + b"body"
    for packet in (ok, empty):
        assert _outcome(fast.decode_publish, 0x32, packet, V311) == _outcome(
            fast._ORIGINAL, 0x32, packet, V311
        )
    assert _outcome(fast.decode_publish, 0x32, empty, V311) is MalformedPacket


def test_malformed_and_random_packets_fail_or_decode_exactly_as_paho() -> None:
    rng = random.Random(4)
    good = _publish(b"edgeloop/t/gw1/uplink", 7, b"z" * 300, CorrelationData=b"c" * 32)
    cases = [good[:k] for k in range(0, 60)]  # cut anywhere in the header or properties
    for _ in range(400):  # flipped bytes in the header and properties
        b = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(0, 70)] = rng.randrange(256)
        cases.append(bytes(b))
    cases += [bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))) for _ in range(300)]
    for packet in cases:
        for header in (0x30, 0x32, 0x3D):
            assert _outcome(fast.decode_publish, header, packet, V5) == _outcome(
                fast._ORIGINAL, header, packet, V5
            ), (header, packet[:80])


def test_installed_by_the_hub_consumer() -> None:
    from edgeloop.bench.mqtt_bench import DecodeAndAck
    from edgeloop.hub.mqtt_ingest import MqttIngest

    MqttIngest(DecodeAndAck(), "127.0.0.1", 1)  # not started: the constructor installs it
    assert _packet.decode_publish is fast.decode_publish
    assert fast.install() is True  # idempotent

"""Sensor payloads over MQTT: JSON records and the binary sensor block (version 1)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from edgeloop.errors import RejectReason
from edgeloop.node.sensor_payload import (
    BLOCK_HEADER_SIZE,
    BLOCK_MAGIC,
    PayloadDecoder,
    encode_block,
    regular_runs,
)
from edgeloop.telemetry.frame import SensorCatalog, SensorSpec

CAT = SensorCatalog.of([SensorSpec("m1.vib", "m1"), SensorSpec("m1.temp", "m1")])
TOPIC = "edgeloop/acme/gw1/sensors/m1.vib"


def test_block_round_trip_keeps_every_value_and_its_time() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=1000).astype(np.float32)
    blob = encode_block("m1.vib", 1_764_230_400_000_000_000, 500_000, values)
    assert len(blob) == BLOCK_HEADER_SIZE + len("m1.vib") + 4 * 1000
    frame, rejects = PayloadDecoder(CAT).decode("any/topic", blob)
    assert rejects == []
    assert frame.value.tobytes() == values.tobytes()  # bit-exact
    assert frame.ts[0] == 1_764_230_400_000_000_000
    assert set(np.diff(frame.ts).tolist()) == {500_000}
    assert set(frame.sensor.tolist()) == {CAT.index("m1.vib")}


def test_block_without_a_name_takes_the_topic_levels() -> None:
    blob = encode_block("", 10, 5, [1.0, 2.0])
    frame, _ = PayloadDecoder(CAT).decode(TOPIC, blob)
    assert frame.sensor.tolist() == [CAT.index("m1.vib")] * 2
    two = PayloadDecoder(CAT, sensor_levels=2)
    frame, rejects = two.decode("edgeloop/acme/gw1/sensors/m1/temp", blob)
    assert frame.sensor.tolist() == [CAT.index("m1.temp")] * 2 and rejects == []
    frame, rejects = PayloadDecoder(CAT, sensor_levels=0).decode(TOPIC, blob)
    assert len(frame) == 0
    assert (rejects[0].reason, rejects[0].field) == (
        RejectReason.MALFORMED,
        f"{TOPIC} block.sensor",
    )


def _header(version: int = 1, flags: int = 0, n: int = 0, period: int = 5, count: int = 2) -> bytes:
    return struct.pack("<4sBBHqqI", BLOCK_MAGIC, version, flags, n, 0, period, count)


@pytest.mark.parametrize(
    ("blob", "reason", "field"),
    [
        (BLOCK_MAGIC + b"\x01", RejectReason.TRUNCATED, "block.header"),
        (_header(version=2) + b"\0" * 8, RejectReason.SCHEMA_VERSION, "block.version"),
        (_header(flags=1) + b"\0" * 8, RejectReason.MALFORMED, "block.flags"),
        (_header(period=0) + b"\0" * 8, RejectReason.MALFORMED, "block.period_ns"),
        (_header() + b"\0" * 7, RejectReason.TRUNCATED, "block.values"),
        (_header() + b"\0" * 9, RejectReason.MALFORMED, "block.values"),
        (_header(count=2_000_000), RejectReason.OVERSIZED, "block.count"),
        (_header(n=2) + b"\xff\xfe" + b"\0" * 8, RejectReason.MALFORMED, "block.sensor"),
        (b"{not json", RejectReason.MALFORMED, "payload"),
        (b'"a string"', RejectReason.WRONG_TYPE, "payload"),
    ],
)
def test_bad_payloads_are_rejected_naming_topic_field_and_reason(
    blob: bytes, reason: RejectReason, field: str
) -> None:
    frame, rejects = PayloadDecoder(CAT).decode(TOPIC, blob)
    assert len(frame) == 0
    assert [(r.reason, r.field) for r in rejects] == [(reason, f"{TOPIC} {field}")]


def test_unknown_sensor_block_counts_every_sample() -> None:
    frame, rejects = PayloadDecoder(CAT).decode(TOPIC, encode_block("m9.x", 0, 1, [1, 2, 3]))
    assert len(frame) == 0
    assert (rejects[0].reason, rejects[0].count) == (RejectReason.UNKNOWN_SENSOR, 3)


def test_oversized_payload_is_refused_before_parsing() -> None:
    dec = PayloadDecoder(CAT, max_payload_bytes=100)
    _, rejects = dec.decode(TOPIC, encode_block("m1.vib", 0, 1, np.zeros(100)))
    assert rejects[0].reason == RejectReason.OVERSIZED


def test_json_keeps_valid_records_beside_bad_ones_and_names_the_sensor_from_the_topic() -> None:
    records = [
        {"ts": 10, "value": 1.5},  # sensor from the topic
        {"sensor": "m1.temp", "ts": 11, "value": 20.0},
        {"sensor": "m1.temp", "ts": "x", "value": 20.0},
        {"sensor": "nope", "ts": 12, "value": 1.0},
    ]
    frame, rejects = PayloadDecoder(CAT).decode(TOPIC, json.dumps(records).encode())
    assert frame.ts.tolist() == [10, 11]
    assert frame.sensor.tolist() == [CAT.index("m1.vib"), CAT.index("m1.temp")]
    assert [(r.field, r.reason) for r in rejects] == [
        (f"{TOPIC} records[2].ts", RejectReason.WRONG_TYPE),
        (f"{TOPIC} records[3].sensor", RejectReason.UNKNOWN_SENSOR),
    ]
    one, rejects = PayloadDecoder(CAT).decode(TOPIC, b'{"ts": 7, "value": 3}')
    assert (one.ts.tolist(), one.value.tolist(), rejects) == ([7], [3.0], [])


def test_regular_runs_split_at_gaps_and_jitter() -> None:
    ts = np.array([0, 5, 10, 20, 25, 31], np.int64)
    assert regular_runs(ts, 5) == [(0, 3), (3, 5), (5, 6)]
    assert regular_runs(np.empty(0, np.int64), 5) == []


def test_encode_block_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match="period_ns"):
        encode_block("a", 0, 0, [1.0])

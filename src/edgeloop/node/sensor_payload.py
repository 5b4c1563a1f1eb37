"""What a sensor publishes over MQTT, decoded into a :class:`Frame` (sans-I/O).

Two payload formats share the sensor topics (``edgeloop/<tenant>/<node>/sensors/#`` by
default); a payload that starts with :data:`BLOCK_MAGIC` is a block, anything else JSON.

**JSON** — the records of the HTTP push source (``node/push.py``): a list
``[{"sensor": "m1.temp", "ts": 1764230400000000000, "value": 21.5}, ...]`` or one record
``{...}``. A record without ``"sensor"`` takes the sensor name from the topic.

**Sensor block, version 1** — for high-rate sensors: regularly spaced float32 values of
one sensor, little-endian throughout::

    offset  size  field
         0     4  magic b"ELSB"
         4     1  version (1)
         5     1  flags (0; reserved, a reader refuses other values)
         6     2  n: length of the sensor name in bytes (uint16; 0: the name comes from the topic)
         8     8  t0_ns: timestamp of the first value (int64, ns since the epoch)
        16     8  period_ns: time between values (int64, > 0)
        24     4  count: number of values (uint32)
        28     n  sensor name, UTF-8
      28+n  4*count  values (float32)

Value ``i`` is at ``t0_ns + i * period_ns``. A 1,000-value block is 4,028 bytes plus the
name, against ~50 kB of JSON. A reader refuses another version (``schema_version``), a
payload shorter than its header says (``truncated``) or longer (``malformed``).

>>> from edgeloop.telemetry.frame import SensorCatalog, SensorSpec
>>> cat = SensorCatalog.of([SensorSpec("m1.vib", "m1")])
>>> blob = encode_block("", 1_000, 500, [0.5, 1.5, 2.5])
>>> frame, rejects = PayloadDecoder(cat).decode("edgeloop/t/gw1/sensors/m1.vib", blob)
>>> frame.ts.tolist(), frame.value.tolist(), rejects
([1000, 1500, 2000], [0.5, 1.5, 2.5], [])
>>> frame, rejects = PayloadDecoder(cat).decode("x/m1.vib", b'[{"ts": 5, "value": "hot"}]')
>>> [str(r) for r in rejects]
["x/m1.vib records[0].value: wrong_type (expected a number, got str 'hot')"]
"""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from edgeloop.errors import RejectReason, TelemetryError
from edgeloop.telemetry.boundary import frame_from_records
from edgeloop.telemetry.frame import Frame, SensorCatalog
from edgeloop.telemetry.validate import MAX_PAYLOAD_BYTES, RejectRecord

__all__ = [
    "BLOCK_HEADER_SIZE",
    "BLOCK_MAGIC",
    "BLOCK_VERSION",
    "MAX_BLOCK_VALUES",
    "PayloadDecoder",
    "block_period",
    "encode_block",
    "regular_runs",
]

BLOCK_MAGIC = b"ELSB"
BLOCK_VERSION = 1
_HEADER = struct.Struct("<4sBBHqqI")
BLOCK_HEADER_SIZE = _HEADER.size  # 28
MAX_BLOCK_VALUES = 1_000_000
"""Most values one block may carry (the frame bound of the node's validator)."""
_LE_F32 = np.dtype("<f4")


def encode_block(
    sensor: str, t0_ns: int, period_ns: int, values: Sequence[float] | npt.ArrayLike
) -> bytes:
    """One sensor block (version 1); ``sensor`` may be empty (name from the topic).

    Raises:
        ValueError: ``period_ns <= 0``, too many values, or a name over 65,535 bytes.
    """
    name = sensor.encode()
    arr = np.asarray(values, dtype=_LE_F32).reshape(-1)
    if period_ns <= 0:
        raise ValueError(f"period_ns: must be > 0 (got {period_ns})")
    if len(arr) > MAX_BLOCK_VALUES:
        raise ValueError(f"values: at most {MAX_BLOCK_VALUES} per block (got {len(arr)})")
    if len(name) > 0xFFFF:
        raise ValueError(f"sensor: name of {len(name)} bytes > 65535")
    head = _HEADER.pack(BLOCK_MAGIC, BLOCK_VERSION, 0, len(name), t0_ns, period_ns, len(arr))
    return head + name + arr.tobytes()


def block_period(payload: bytes) -> int | None:
    """``period_ns`` of a sensor block's header, or ``None`` if ``payload`` is no block.

    >>> block_period(encode_block("a", 0, 500, [1.0])), block_period(b"[]")
    (500, None)
    """
    if payload[:4] != BLOCK_MAGIC or len(payload) < BLOCK_HEADER_SIZE:
        return None
    period: int = _HEADER.unpack_from(payload)[5]
    return period


def regular_runs(ts: npt.NDArray[np.int64], period_ns: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: index ranges of ``ts`` spaced exactly ``period_ns``
    apart, each one block (a gap or a jitter starts a new one).

    >>> regular_runs(np.array([0, 10, 20, 40, 50], np.int64), 10)
    [(0, 3), (3, 5)]
    """
    if len(ts) == 0:
        return []
    breaks = np.flatnonzero(np.diff(ts) != period_ns) + 1
    edges = [0, *breaks.tolist(), len(ts)]
    return list(itertools.pairwise(edges))


class PayloadDecoder:
    """Turn one MQTT message into ``(frame, rejects)``; valid samples beside bad ones kept.

    Args:
        catalog: the node's sensors; other names are ``unknown_sensor``.
        sensor_levels: how many trailing topic levels, joined with ``.``, name the
            sensor when the payload does not (0: the payload must name it).
        max_payload_bytes: larger payloads are refused whole (``oversized``).

    Every reject names the topic and the field, e.g.
    ``edgeloop/acme/gw1/sensors/m1.temp records[2].ts: wrong_type (...)``.
    """

    def __init__(
        self,
        catalog: SensorCatalog,
        *,
        sensor_levels: int = 1,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        if sensor_levels < 0:
            raise ValueError(f"sensor_levels: must be >= 0 (got {sensor_levels})")
        self.catalog = catalog
        self.sensor_levels = sensor_levels
        self.max_payload_bytes = max_payload_bytes

    def topic_sensor(self, topic: str) -> str | None:
        """The sensor name the topic gives (``None`` with ``sensor_levels`` 0)."""
        if self.sensor_levels == 0:
            return None
        levels = topic.split("/")[-self.sensor_levels :]
        return ".".join(levels) if all(levels) else None

    def decode(self, topic: str, payload: bytes) -> tuple[Frame, list[RejectRecord]]:
        """The samples of ``payload`` published on ``topic``, and what was rejected."""
        try:
            if len(payload) > self.max_payload_bytes:
                raise TelemetryError(
                    "payload",
                    RejectReason.OVERSIZED,
                    f"{len(payload)} bytes > limit {self.max_payload_bytes}",
                )
            if payload[:4] == BLOCK_MAGIC:
                frame, rejects = self._block(topic, payload)
            else:
                frame, rejects = self._json(topic, payload)
        except TelemetryError as exc:
            frame = Frame.empty()
            rejects = [RejectRecord(exc.reason, exc.field, exc.detail)]
        return frame, [replace(r, field=f"{topic} {r.field}") for r in rejects]

    # -- formats ------------------------------------------------------------------------
    def _json(self, topic: str, payload: bytes) -> tuple[Frame, list[RejectRecord]]:
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise TelemetryError("payload", RejectReason.MALFORMED, f"not JSON: {exc}") from None
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            raise TelemetryError(
                "payload",
                RejectReason.WRONG_TYPE,
                f"expected a record or a list of records, got {type(data).__name__}",
            )
        name = self.topic_sensor(topic)
        if name is not None:
            for rec in data:
                if type(rec) is dict and "sensor" not in rec:
                    rec["sensor"] = name
        return frame_from_records(data, self.catalog)

    def _block(self, topic: str, payload: bytes) -> tuple[Frame, list[RejectRecord]]:
        if len(payload) < BLOCK_HEADER_SIZE:
            raise TelemetryError(
                "block.header",
                RejectReason.TRUNCATED,
                f"{len(payload)} bytes < header of {BLOCK_HEADER_SIZE}",
            )
        _, version, flags, n, t0, period, count = _HEADER.unpack_from(payload)
        if version != BLOCK_VERSION:
            raise TelemetryError(
                "block.version",
                RejectReason.SCHEMA_VERSION,
                f"version {version}; this node reads version {BLOCK_VERSION}",
            )
        if flags != 0:
            raise TelemetryError("block.flags", RejectReason.MALFORMED, f"unknown flags {flags:#x}")
        if period <= 0:
            raise TelemetryError("block.period_ns", RejectReason.MALFORMED, f"{period} <= 0")
        if count > MAX_BLOCK_VALUES:
            raise TelemetryError(
                "block.count", RejectReason.OVERSIZED, f"{count} > {MAX_BLOCK_VALUES}"
            )
        want = BLOCK_HEADER_SIZE + n + 4 * count
        if len(payload) != want:
            reason = RejectReason.TRUNCATED if len(payload) < want else RejectReason.MALFORMED
            raise TelemetryError(
                "block.values", reason, f"{len(payload)} bytes, header says {want}"
            )
        last = t0 + (count - 1) * period if count else t0
        if not -(2**63) <= last < 2**63:
            raise TelemetryError("block.period_ns", RejectReason.MALFORMED, "timestamps overflow")
        try:
            name = payload[BLOCK_HEADER_SIZE : BLOCK_HEADER_SIZE + n].decode()
        except UnicodeDecodeError:
            raise TelemetryError("block.sensor", RejectReason.MALFORMED, "not UTF-8") from None
        name = name or self.topic_sensor(topic) or ""
        if not name:
            raise TelemetryError(
                "block.sensor", RejectReason.MALFORMED, "no sensor name in the block or the topic"
            )
        idx = self.catalog.get(name)
        if idx is None:
            rej = RejectRecord(
                RejectReason.UNKNOWN_SENSOR,
                "block.sensor",
                f"{name!r:.60} is not in the catalog",
                count=max(count, 1),
            )
            return Frame.empty(), [rej]
        values = np.frombuffer(payload, _LE_F32, count, BLOCK_HEADER_SIZE + n)
        ts = t0 + np.arange(count, dtype=np.int64) * np.int64(period)
        sensor = np.full(count, idx, dtype=np.uint32)
        return Frame(sensor, ts, values.astype(np.float32)), []

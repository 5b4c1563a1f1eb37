"""The versioned wire codec: msgpack envelopes with zstd-compressed numeric columns.

Every payload is one msgpack map ``{"v": SCHEMA_VERSION, "k": kind, ...}``. Numeric
columns travel as msgpack ``bin`` holding one zstd frame (content size and checksum in
the frame header) of a raw little-endian array:

=========  =========================================================================
column     encoding before compression
=========  =========================================================================
sensor     ``uint32``
ts         ``int64`` delta-encoded (first value absolute); exact for every int64
           because the differences wrap and the prefix sum wraps back
value      ``float32`` byte-shuffled (all first bytes, then all second bytes, ...),
           which groups sign/exponent bytes and compresses noisy signals ~15% better
=========  =========================================================================

Kinds and their maps (v1; unknown keys are ignored so fields can be added later)::

    frame      names: [str], sensor, ts, value (columns)
    events     events: [{node, machine, sensor, severity, t_start_ns, t_end_ns,
                         detected_ns, score, threshold, detector, reason,
                         features: {str: float}, raw: block | nil, raw_sensors: [str]}]
    summaries  names: [str], sensor, t0_ns, t1_ns, count, mean, std, min, max (columns)
    batch      node, after_seq, sent_ns, status: {str: any},
               entries: [[seq, priority, kind, payload: bin, samples, created_ns]],
               epoch (optional int >= 0; absent means 0, an unknown epoch)
    ack        node, upto_seq, accepted, duplicates, rejected

    block = {sensor: bin, ts: bin, value: bin}   (an event's raw samples)

Decoding is total: whatever the input, a decode function returns a value or raises
:class:`~edgeloop.errors.CodecError` naming the field (``events[3].score``) and the
:class:`~edgeloop.errors.RejectReason`:

* ``oversized`` — the payload exceeds :data:`MAX_PAYLOAD_BYTES`, or its columns would
  decompress past :data:`MAX_DECODED_BYTES` (zstd bombs are refused before inflating);
* ``truncated`` — msgpack or zstd input ends early, a column is not a whole number of
  items, or the columns of one block differ in length;
* ``schema_version`` — ``v`` is not one of :data:`SUPPORTED_VERSIONS`;
* ``malformed`` — not a map, a missing key, a wrong kind tag, a value outside its
  domain (unknown priority, sensor index beyond the names table, ...), corrupt zstd;
* ``wrong_type`` — a field of the wrong type (bools are not ints; ints are fine where
  a float is expected).

>>> from edgeloop.transport.base import Ack
>>> decode_ack(encode_ack(Ack("n1", 42, accepted=3)))
Ack(node='n1', upto_seq=42, accepted=3, duplicates=0, rejected=0)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import msgpack
import numpy as np
import numpy.typing as npt
import zstandard

from edgeloop.errors import CodecError, RejectReason
from edgeloop.outbox.base import Entry, Priority
from edgeloop.telemetry.frame import Frame
from edgeloop.telemetry.records import Event, Severity, SummaryBatch
from edgeloop.telemetry.validate import MAX_PAYLOAD_BYTES as MAX_PAYLOAD_BYTES
from edgeloop.transport.base import Ack, Batch

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
# MAX_PAYLOAD_BYTES (8 MiB): largest encoded payload a decoder accepts. Defined beside
# the other input limits in validate.py, which must not import the codec's dependencies.
MAX_DECODED_BYTES = 64 * 1024 * 1024
"""Largest total decompressed column data per payload (about 4M frame rows)."""
ZSTD_LEVEL = 1  # level 3 gains <0.5% on float columns and costs ~20% more time

_NAMES_PER_SAMPLE_SKIP = 64  # frames with >= 64 samples per catalog name keep all names
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_U4 = np.dtype("<u4")
_I8 = np.dtype("<i8")
_F4 = np.dtype("<f4")


# -- errors -------------------------------------------------------------------------


def _fail(field: str, reason: RejectReason, detail: str = "") -> NoReturn:
    raise CodecError(field, reason, detail)


def _typename(x: object) -> str:
    return "nil" if x is None else type(x).__name__


# -- zstd, one context per thread (contexts are not thread-safe) ------------------------


class _Zstd(threading.local):
    def __init__(self) -> None:
        self.c = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
        self.d = zstandard.ZstdDecompressor()


_zstd = _Zstd()


class _Budget:
    """Decompressed bytes still allowed for one payload (the zstd-bomb guard)."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_DECODED_BYTES


def _compress(arr: npt.NDArray[Any]) -> bytes:
    return _zstd.c.compress(np.ascontiguousarray(arr).data)


def _decompress(blob: object, field: str, itemsize: int, budget: _Budget) -> bytes:
    """Inflate one column after checking its declared size against the budget."""
    if not isinstance(blob, bytes):
        _fail(field, RejectReason.WRONG_TYPE, f"expected bin, got {_typename(blob)}")
    if not blob.startswith(_ZSTD_MAGIC):
        if _ZSTD_MAGIC.startswith(blob):
            _fail(field, RejectReason.TRUNCATED, f"zstd frame cut after {len(blob)} bytes")
        _fail(field, RejectReason.MALFORMED, "not a zstd frame (bad magic)")
    try:
        size = zstandard.frame_content_size(blob)
    except zstandard.ZstdError:
        if len(blob) < 18:  # the longest zstd frame header
            _fail(field, RejectReason.TRUNCATED, "zstd frame header incomplete")
        _fail(field, RejectReason.MALFORMED, "invalid zstd frame header")
    if size < 0:
        _fail(field, RejectReason.MALFORMED, "zstd frame does not declare its content size")
    if size > budget.left:
        _fail(
            field,
            RejectReason.OVERSIZED,
            f"declares {size} decompressed bytes; {budget.left} of the "
            f"{MAX_DECODED_BYTES}-byte limit left",
        )
    if size % itemsize:
        _fail(field, RejectReason.TRUNCATED, f"{size} bytes is not a multiple of {itemsize}")
    dobj = _zstd.d.decompressobj()
    try:
        raw = dobj.decompress(blob)
    except zstandard.ZstdError as exc:
        _fail(field, RejectReason.MALFORMED, f"corrupt zstd data: {exc}")
    if not dobj.eof or len(raw) != size:
        _fail(field, RejectReason.TRUNCATED, f"zstd frame ends after {len(raw)} of {size} bytes")
    if dobj.unused_data:
        _fail(field, RejectReason.MALFORMED, f"{len(dobj.unused_data)} bytes after the zstd frame")
    budget.left -= size
    return raw


# -- columns ----------------------------------------------------------------------------


def _enc_u4(a: npt.NDArray[Any]) -> bytes:
    return _compress(np.asarray(a, dtype=_U4))


def _enc_i8(a: npt.NDArray[Any]) -> bytes:
    return _compress(np.asarray(a, dtype=_I8))


def _enc_i8_delta(a: npt.NDArray[Any]) -> bytes:
    a = np.asarray(a, dtype=_I8)
    d = np.empty_like(a)
    if a.shape[0]:
        d[0] = a[0]
        np.subtract(a[1:], a[:-1], out=d[1:])  # wraps on overflow; the cumsum wraps back
    return _compress(d)


def _enc_f4_shuffled(a: npt.NDArray[Any]) -> bytes:
    b = np.ascontiguousarray(a, dtype=_F4).view(np.uint8).reshape(-1, 4)
    return _compress(b.T)


def _dec_u4(blob: object, field: str, budget: _Budget) -> npt.NDArray[np.uint32]:
    raw = _decompress(blob, field, 4, budget)
    return np.frombuffer(raw, dtype=_U4).astype(np.uint32)  # writable, native order


def _dec_i8(blob: object, field: str, budget: _Budget) -> npt.NDArray[np.int64]:
    raw = _decompress(blob, field, 8, budget)
    return np.frombuffer(raw, dtype=_I8).astype(np.int64)


def _dec_i8_delta(blob: object, field: str, budget: _Budget) -> npt.NDArray[np.int64]:
    raw = _decompress(blob, field, 8, budget)
    return np.cumsum(np.frombuffer(raw, dtype=_I8), dtype=np.int64)


def _dec_f4_shuffled(blob: object, field: str, budget: _Budget) -> npt.NDArray[np.float32]:
    raw = _decompress(blob, field, 4, budget)
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(4, -1)
    out = np.empty((planes.shape[1], 4), dtype=np.uint8)
    for i in range(4):  # one strided copy per byte plane is ~5x faster than planes.T
        out[:, i] = planes[i]
    return out.view(_F4).reshape(-1).astype(np.float32, copy=False)


def _enc_block(frame: Frame) -> dict[str, bytes]:
    return {
        "sensor": _enc_u4(frame.sensor),
        "ts": _enc_i8_delta(frame.ts),
        "value": _enc_f4_shuffled(frame.value),
    }


def _dec_block(m: Mapping[Any, Any], field: str, budget: _Budget, n_names: int | None) -> Frame:
    """Decode the columns of a block map; ``n_names`` bounds the sensor indices if given."""
    sensor = _dec_u4(_get(m, "sensor", field), f"{field}.sensor", budget)
    ts = _dec_i8_delta(_get(m, "ts", field), f"{field}.ts", budget)
    value = _dec_f4_shuffled(_get(m, "value", field), f"{field}.value", budget)
    _same_length(field, sensor=sensor, ts=ts, value=value)
    _check_indices(sensor, n_names, f"{field}.sensor")
    return Frame(sensor, ts, value)


def _same_length(field: str, **cols: npt.NDArray[Any]) -> None:
    lengths = {k: int(v.shape[0]) for k, v in cols.items()}
    if len(set(lengths.values())) > 1:
        _fail(field, RejectReason.TRUNCATED, f"columns differ in length: {lengths}")


def _check_indices(sensor: npt.NDArray[np.uint32], n_names: int | None, field: str) -> None:
    if n_names is None or sensor.shape[0] == 0:
        return
    top = int(sensor.max())
    if top >= n_names:
        _fail(field, RejectReason.MALFORMED, f"sensor index {top} beyond {n_names} names")


# -- typed field access -----------------------------------------------------------------


def _map(obj: object, field: str) -> dict[Any, Any]:
    if not isinstance(obj, dict):
        _fail(field, RejectReason.MALFORMED, f"expected a map, got {_typename(obj)}")
    return obj


def _get(m: Mapping[Any, Any], key: str, field: str) -> object:
    try:
        return m[key]
    except KeyError:
        _fail(f"{field}.{key}", RejectReason.MALFORMED, "missing key")


def _int(m: Mapping[Any, Any], key: str, field: str) -> int:
    x = _get(m, key, field)
    return _as_int(x, f"{field}.{key}")


def _as_int(x: object, field: str) -> int:
    if type(x) is not int:  # bool is an int subclass but never a valid int field
        _fail(field, RejectReason.WRONG_TYPE, f"expected int, got {_typename(x)}")
    if not _I64_MIN <= x <= _I64_MAX:
        _fail(field, RejectReason.WRONG_TYPE, f"{x} does not fit int64")
    return x


def _float(m: Mapping[Any, Any], key: str, field: str) -> float:
    return _as_float(_get(m, key, field), f"{field}.{key}")


def _as_float(x: object, field: str) -> float:
    if type(x) is float:
        return x
    if type(x) is int:  # msgpack ints are at most 64-bit: exact enough, never overflow
        return float(x)
    _fail(field, RejectReason.WRONG_TYPE, f"expected float, got {_typename(x)}")


def _str(m: Mapping[Any, Any], key: str, field: str) -> str:
    x = _get(m, key, field)
    if not isinstance(x, str):
        _fail(f"{field}.{key}", RejectReason.WRONG_TYPE, f"expected str, got {_typename(x)}")
    return x


def _list(x: object, field: str) -> list[Any]:
    if not isinstance(x, list):
        _fail(field, RejectReason.WRONG_TYPE, f"expected an array, got {_typename(x)}")
    return x


def _names(x: object, field: str) -> tuple[str, ...]:
    items = _list(x, field)
    for i, s in enumerate(items):
        if not isinstance(s, str):
            _fail(f"{field}[{i}]", RejectReason.WRONG_TYPE, f"expected str, got {_typename(s)}")
    return tuple(items)


# -- envelope -----------------------------------------------------------------------


def _default(obj: object) -> object:
    """msgpack fallback: numpy scalars and arrays in ``status`` become plain values."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _pack(kind: str, body: dict[str, Any]) -> bytes:
    out: bytes = msgpack.packb(
        {"v": SCHEMA_VERSION, "k": kind, **body}, use_bin_type=True, default=_default
    )
    return out


def _open(data: object, kind: str) -> dict[Any, Any]:
    """Check size, parse msgpack, check version and kind; return the envelope map."""
    if not isinstance(data, bytes | bytearray | memoryview):
        _fail("payload", RejectReason.WRONG_TYPE, f"expected bytes, got {_typename(data)}")
    n = memoryview(data).nbytes
    if n > MAX_PAYLOAD_BYTES:
        _fail("payload", RejectReason.OVERSIZED, f"{n} bytes > limit {MAX_PAYLOAD_BYTES}")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except msgpack.ExtraData:
        _fail("payload", RejectReason.MALFORMED, "trailing bytes after the envelope")
    except (msgpack.FormatError, msgpack.StackError, UnicodeDecodeError) as exc:
        _fail("payload", RejectReason.MALFORMED, f"invalid msgpack: {exc!s:.120}")
    except ValueError as exc:
        msg = str(exc)
        # "incomplete input", or a length header larger than the bytes that follow
        if "incomplete" in msg or "exceeds max_" in msg:
            _fail("payload", RejectReason.TRUNCATED, f"msgpack input ends early ({msg:.120})")
        _fail("payload", RejectReason.MALFORMED, f"invalid msgpack: {msg:.120}")
    except Exception as exc:  # the C unpacker's other complaints (e.g. bad ext data)
        _fail("payload", RejectReason.MALFORMED, f"invalid msgpack: {exc!r:.120}")
    env = _map(obj, "envelope")
    v = _get(env, "v", "envelope")
    if type(v) is not int:
        _fail("envelope.v", RejectReason.WRONG_TYPE, f"expected int, got {_typename(v)}")
    if v not in SUPPORTED_VERSIONS:
        _fail(
            "envelope.v",
            RejectReason.SCHEMA_VERSION,
            f"version {v} not supported; supported: {list(SUPPORTED_VERSIONS)}",
        )
    k = _get(env, "k", "envelope")
    if k != kind:
        got = repr(k)[:60] if isinstance(k, str) else _typename(k)
        _fail("envelope.k", RejectReason.MALFORMED, f"expected kind {kind!r}, got {got}")
    return env


# -- frame --------------------------------------------------------------------------


def encode_frame(frame: Frame, sensor_names: Sequence[str]) -> bytes:
    """Encode ``frame`` with the names of its sensors.

    Args:
        frame: samples whose ``sensor`` column indexes ``sensor_names``.
        sensor_names: index → name (usually ``catalog.names()``). For frames that are
            small next to the names table only the names of sensors present are sent and
            indices are renumbered to match; large frames carry the whole table.

    Returns:
        the payload; :func:`decode_frame` returns an equal frame (renumbered) and names.

    Raises:
        ValueError: a sensor index has no name.
    """
    names = list(sensor_names)
    sensor = frame.sensor
    if len(frame):
        top = int(sensor.max())
        if top >= len(names):
            raise ValueError(f"frame sensor index {top} has no name ({len(names)} names)")
        # Dropping absent names only pays when the names table is not negligible next
        # to the columns; the presence scan costs ~4 ns per sample.
        present = np.ones(len(names), dtype=bool)
        if len(names) * _NAMES_PER_SAMPLE_SKIP > len(frame):
            present = np.zeros(len(names), dtype=bool)
            present[sensor] = True  # every write stores True: repeated indices are fine
        if not present.all():
            keep = np.flatnonzero(present)
            remap = np.cumsum(present, dtype=np.uint32) - np.uint32(1)
            sensor = remap[sensor]
            names = [names[i] for i in keep.tolist()]
    else:
        names = []
    return _pack("frame", {"names": names, **_enc_block(Frame(sensor, frame.ts, frame.value))})


def decode_frame(data: bytes) -> tuple[Frame, tuple[str, ...]]:
    """Decode a frame payload.

    Returns:
        ``(frame, names)`` where ``frame.sensor`` indexes ``names``.

    Raises:
        CodecError: anything wrong with ``data`` (see the module docstring).
    """
    env = _open(data, "frame")
    names = _names(_get(env, "names", "frame"), "frame.names")
    frame = _dec_block(env, "frame", _Budget(), len(names))
    return frame, names


# -- events -------------------------------------------------------------------------

_SEVERITIES = {s.value: s for s in Severity}


def _enc_event(e: Event) -> dict[str, Any]:
    if e.raw is not None and len(e.raw) and e.raw_sensors:
        top = int(e.raw.sensor.max())
        if top >= len(e.raw_sensors):
            raise ValueError(f"event raw sensor index {top} beyond {len(e.raw_sensors)} names")
    return {
        "node": e.node,
        "machine": e.machine,
        "sensor": e.sensor,
        "severity": str(e.severity),
        "t_start_ns": int(e.t_start_ns),
        "t_end_ns": int(e.t_end_ns),
        "detected_ns": int(e.detected_ns),
        "score": float(e.score),
        "threshold": float(e.threshold),
        "detector": e.detector,
        "reason": e.reason,
        "features": {str(k): float(v) for k, v in e.features.items()},
        "raw": None if e.raw is None else _enc_block(e.raw),
        "raw_sensors": list(e.raw_sensors),
    }


def _dec_event(obj: object, f: str, budget: _Budget) -> Event:
    m = _map(obj, f)
    sev = _str(m, "severity", f)
    if sev not in _SEVERITIES:
        _fail(f"{f}.severity", RejectReason.MALFORMED, f"unknown severity {sev!r:.40}")
    features: dict[str, float] = {}
    for k, v in _map(_get(m, "features", f), f"{f}.features").items():
        if not isinstance(k, str):
            _fail(f"{f}.features", RejectReason.WRONG_TYPE, f"key {k!r:.40} is not a str")
        features[k] = _as_float(v, f"{f}.features.{k}")
    raw_sensors = _names(_get(m, "raw_sensors", f), f"{f}.raw_sensors")
    raw_obj = _get(m, "raw", f)
    # Empty raw_sensors means the producer did not map indices to names: not checked.
    raw = None
    if raw_obj is not None:
        raw = _dec_block(_map(raw_obj, f"{f}.raw"), f"{f}.raw", budget, len(raw_sensors) or None)
    return Event(
        node=_str(m, "node", f),
        machine=_str(m, "machine", f),
        sensor=_str(m, "sensor", f),
        severity=_SEVERITIES[sev],
        t_start_ns=_int(m, "t_start_ns", f),
        t_end_ns=_int(m, "t_end_ns", f),
        detected_ns=_int(m, "detected_ns", f),
        score=_float(m, "score", f),
        threshold=_float(m, "threshold", f),
        detector=_str(m, "detector", f),
        reason=_str(m, "reason", f),
        features=features,
        raw=raw,
        raw_sensors=raw_sensors,
    )


def encode_events(events: Sequence[Event]) -> bytes:
    """Encode events, each with its features and raw context.

    Raises:
        ValueError: an event's ``raw`` frame has a sensor index beyond its non-empty
            ``raw_sensors`` (an empty ``raw_sensors`` leaves indices unmapped).
    """
    return _pack("events", {"events": [_enc_event(e) for e in events]})


def decode_events(data: bytes) -> list[Event]:
    """Decode an events payload.

    Returns:
        the events; each ``raw`` frame's indices fall inside its ``raw_sensors`` when
        that is non-empty.

    Raises:
        CodecError: naming the event and field, e.g. ``events[3].score``.
    """
    env = _open(data, "events")
    items = _list(_get(env, "events", "envelope"), "events")
    budget = _Budget()
    return [_dec_event(obj, f"events[{i}]", budget) for i, obj in enumerate(items)]


# -- summaries ----------------------------------------------------------------------

_SUMMARY_INTS = ("t0_ns", "t1_ns")  # delta-encoded like frame timestamps
_SUMMARY_FLOATS = ("mean", "std", "min", "max")


def encode_summaries(batch: SummaryBatch) -> bytes:
    """Encode a summary batch with its ``sensor_names``."""
    body: dict[str, Any] = {"names": list(batch.sensor_names), "sensor": _enc_u4(batch.sensor)}
    for name in _SUMMARY_INTS:
        body[name] = _enc_i8_delta(getattr(batch, name))
    body["count"] = _enc_i8(batch.count)
    for name in _SUMMARY_FLOATS:
        body[name] = _enc_f4_shuffled(getattr(batch, name))
    return _pack("summaries", body)


def decode_summaries(data: bytes) -> SummaryBatch:
    """Decode a summaries payload.

    When ``sensor_names`` is non-empty every sensor index must fall inside it.
    """
    env = _open(data, "summaries")
    names = _names(_get(env, "names", "summaries"), "summaries.names")
    budget = _Budget()

    def col(name: str) -> object:
        return _get(env, name, "summaries")

    sensor = _dec_u4(col("sensor"), "summaries.sensor", budget)
    ints = {n: _dec_i8_delta(col(n), f"summaries.{n}", budget) for n in _SUMMARY_INTS}
    count = _dec_i8(col("count"), "summaries.count", budget)
    floats = {n: _dec_f4_shuffled(col(n), f"summaries.{n}", budget) for n in _SUMMARY_FLOATS}
    _same_length("summaries", sensor=sensor, count=count, **ints, **floats)
    _check_indices(sensor, len(names) or None, "summaries.sensor")
    return SummaryBatch(
        sensor=sensor,
        t0_ns=ints["t0_ns"],
        t1_ns=ints["t1_ns"],
        count=count,
        mean=floats["mean"],
        std=floats["std"],
        min=floats["min"],
        max=floats["max"],
        sensor_names=names,
    )


# -- batch and ack ------------------------------------------------------------------

_PRIORITIES = {int(p): p for p in Priority}


def encode_batch(batch: Batch) -> bytes:
    """Encode a batch of outbox entries; payloads stay opaque bytes (msgpack bin)."""
    entries = [
        [int(e.seq), int(e.priority), e.kind, bytes(e.payload), int(e.samples), int(e.created_ns)]
        for e in batch.entries
    ]
    return _pack(
        "batch",
        {
            "node": batch.node,
            "after_seq": int(batch.after_seq),
            "sent_ns": int(batch.sent_ns),
            "status": batch.status,
            "entries": entries,
            "epoch": int(batch.epoch),
        },
    )


def _dec_entry(obj: object, f: str) -> Entry:
    row = _list(obj, f)
    if len(row) != 6:
        _fail(f, RejectReason.MALFORMED, f"expected 6 fields, got {len(row)}")
    seq = _as_int(row[0], f"{f}.seq")
    prio = _as_int(row[1], f"{f}.priority")
    if prio not in _PRIORITIES:
        _fail(f"{f}.priority", RejectReason.MALFORMED, f"unknown priority {prio}")
    kind, payload = row[2], row[3]
    if not isinstance(kind, str):
        _fail(f"{f}.kind", RejectReason.WRONG_TYPE, f"expected str, got {_typename(kind)}")
    if not isinstance(payload, bytes):
        _fail(f"{f}.payload", RejectReason.WRONG_TYPE, f"expected bin, got {_typename(payload)}")
    return Entry(
        seq=seq,
        priority=_PRIORITIES[prio],
        kind=kind,
        payload=payload,
        samples=_as_int(row[4], f"{f}.samples"),
        created_ns=_as_int(row[5], f"{f}.created_ns"),
    )


def decode_batch(data: bytes) -> Batch:
    """Decode a batch. Entries must have ascending sequence numbers above ``after_seq``."""
    env = _open(data, "batch")
    node = _str(env, "node", "batch")
    after = _int(env, "after_seq", "batch")
    sent = _int(env, "sent_ns", "batch")
    epoch = _int(env, "epoch", "batch") if "epoch" in env else 0
    if epoch < 0:
        _fail("batch.epoch", RejectReason.MALFORMED, f"negative epoch {epoch}")
    status = _map(_get(env, "status", "batch"), "batch.status")
    for key in status:
        if not isinstance(key, str):
            _fail("batch.status", RejectReason.WRONG_TYPE, f"key {key!r:.40} is not a str")
    rows = _list(_get(env, "entries", "batch"), "batch.entries")
    entries = [_dec_entry(obj, f"batch.entries[{i}]") for i, obj in enumerate(rows)]
    prev = after
    for i, e in enumerate(entries):
        if e.seq <= prev:
            _fail(
                f"batch.entries[{i}].seq",
                RejectReason.MALFORMED,
                f"seq {e.seq} not above {prev} (entries ascend after after_seq={after})",
            )
        prev = e.seq
    return Batch(
        node=node,
        after_seq=after,
        entries=tuple(entries),
        status=status,
        sent_ns=sent,
        epoch=epoch,
    )


def encode_ack(ack: Ack) -> bytes:
    """Encode an acknowledgement."""
    return _pack(
        "ack",
        {
            "node": ack.node,
            "upto_seq": int(ack.upto_seq),
            "accepted": int(ack.accepted),
            "duplicates": int(ack.duplicates),
            "rejected": int(ack.rejected),
        },
    )


def decode_ack(data: bytes) -> Ack:
    """Decode an acknowledgement."""
    env = _open(data, "ack")
    return Ack(
        node=_str(env, "node", "ack"),
        upto_seq=_int(env, "upto_seq", "ack"),
        accepted=_int(env, "accepted", "ack"),
        duplicates=_int(env, "duplicates", "ack"),
        rejected=_int(env, "rejected", "ack"),
    )

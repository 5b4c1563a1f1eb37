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

Kinds and their maps (v1 unless said; unknown keys are ignored so fields can be added
later)::

    frame      names: [str], sensor, ts, value (columns)
    events     v2 (written): columns, see ``edgeloop.telemetry.codec_events``
               v1 (still read): events: [{node, machine, sensor, severity, t_start_ns,
                         t_end_ns, detected_ns, score, threshold, detector, reason,
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
* ``schema_version`` — ``v`` is not one of :data:`SUPPORTED_VERSIONS` (events:
  :data:`EVENTS_VERSIONS`);
* ``malformed`` — not a map, a missing key, a wrong kind tag, a value outside its
  domain (unknown priority, sensor index beyond the names table, ...), corrupt zstd;
* ``wrong_type`` — a field of the wrong type (bools are not ints; ints are fine where
  a float is expected).

>>> from edgeloop.transport.base import Ack
>>> decode_ack(encode_ack(Ack("n1", 42, accepted=3)))
Ack(node='n1', upto_seq=42, accepted=3, duplicates=0, rejected=0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeloop.errors import RejectReason
from edgeloop.outbox.base import Entry, Priority
from edgeloop.telemetry.codec_core import (
    _I64_MAX,
    _I64_MIN,
    _NAMES_PER_SAMPLE_SKIP,
    MAX_DECODED_BYTES,
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    SUPPORTED_VERSIONS,
    ZSTD_LEVEL,
    _as_int,
    _Budget,
    _check_indices,
    _dec_block,
    _dec_f4_shuffled,
    _dec_i8,
    _dec_i8_delta,
    _dec_u4,
    _enc_block,
    _enc_f4_shuffled,
    _enc_i8,
    _enc_i8_delta,
    _enc_u4,
    _fail,
    _get,
    _int,
    _list,
    _map,
    _names,
    _open,
    _pack,
    _same_length,
    _str,
    _typename,
)
from edgeloop.telemetry.codec_events import (
    EVENTS_VERSION,
    EVENTS_VERSIONS,
    decode_events,
    encode_events,
    encode_events_v1,
)
from edgeloop.telemetry.event_columns import EventColumns
from edgeloop.telemetry.frame import Frame
from edgeloop.telemetry.records import SummaryBatch
from edgeloop.transport.base import Ack, Batch

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
    return Batch(
        node=node,
        after_seq=after,
        entries=_dec_entries(rows, after),
        status=status,
        sent_ns=sent,
        epoch=epoch,
    )


def _dec_entries(rows: list[Any], after: int) -> tuple[Entry, ...]:
    """The entries of a batch, their seqs ascending above ``after``.

    One test per entry for the common case (every field of its type and in range); an
    entry that fails it is decoded again field by field, which names what is wrong.
    """
    out: list[Entry] = []
    prev = after
    priorities = _PRIORITIES
    for i, row in enumerate(rows):
        if type(row) is list and len(row) == 6:
            seq, prio, kind, payload, samples, created = row
            if (
                type(seq) is int
                and type(prio) is int
                and type(kind) is str
                and type(payload) is bytes
                and type(samples) is int
                and type(created) is int
                and prio in priorities
                and prev < seq <= _I64_MAX
                and _I64_MIN <= samples <= _I64_MAX
                and _I64_MIN <= created <= _I64_MAX
            ):
                out.append(Entry(seq, priorities[prio], kind, payload, samples, created))
                prev = seq
                continue
        e = _dec_entry(row, f"batch.entries[{i}]")
        if e.seq <= prev:
            _fail(
                f"batch.entries[{i}].seq",
                RejectReason.MALFORMED,
                f"seq {e.seq} not above {prev} (entries ascend after after_seq={after})",
            )
        out.append(e)
        prev = e.seq
    return tuple(out)


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


__all__ = [
    "EVENTS_VERSION",
    "EVENTS_VERSIONS",
    "MAX_DECODED_BYTES",
    "MAX_PAYLOAD_BYTES",
    "SCHEMA_VERSION",
    "SUPPORTED_VERSIONS",
    "ZSTD_LEVEL",
    "EventColumns",
    "decode_ack",
    "decode_batch",
    "decode_events",
    "decode_frame",
    "decode_summaries",
    "encode_ack",
    "encode_batch",
    "encode_events",
    "encode_events_v1",
    "encode_frame",
    "encode_summaries",
]

"""The events part of the wire codec: version 2 (columnar) out, versions 1 and 2 in.

An events payload carries many events of one node. Version 2 sends them as columns
(:class:`~edgeloop.telemetry.event_columns.EventColumns`), so neither side builds a
msgpack map per event and the hub stores them without a Python object per event::

    v 2, k "events", n: int (events), strings: [str] (every string once)
    u4   codes (6 x n: node, machine, sensor, severity, detector, reason; indices into
         strings) | features count (n) | raw_sensors count (n)
         | feature keys (m, indices into strings) | raw sensor names (k, ditto)
    i8   delta-encoded: t_start_ns, t_end_ns, detected_ns (3 x n) | raw count (n; -1: no
         raw frame)
    f8   score, threshold (2 x n) | feature values (m)
    raw  {sensor, ts, value}: every event's raw samples, concatenated (a block)

``m`` and ``k`` are the sums of the counts. One zstd frame per column group, as in
``codec`` (same budget against zstd bombs): six frames whatever the number of events.
Version 1 (one map per event, see ``codec``'s docstring) is still
decoded, into the same columns: a hub reads both, so hubs are upgraded before nodes. A
hub that only knows version 1 refuses a version-2 payload as ``schema_version``.

Errors name the event and field where one value is wrong (``events[3].machine``: a
string index beyond the table), the column where the columns do not fit together
(``events.features``: counts that do not add up).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeloop.errors import RejectReason
from edgeloop.telemetry.codec_core import (
    _as_float,
    _Budget,
    _compress,
    _dec_block,
    _dec_i8_delta,
    _dec_u4,
    _decompress,
    _enc_block,
    _enc_i8_delta,
    _enc_u4,
    _fail,
    _float,
    _get,
    _int,
    _list,
    _map,
    _names,
    _open,
    _pack,
    _str,
)
from edgeloop.telemetry.event_columns import (
    CODE_COLUMNS,
    SCORE_COLUMNS,
    TIME_COLUMNS,
    EventColumns,
    offsets,
)
from edgeloop.telemetry.frame import Frame
from edgeloop.telemetry.records import Event, Severity

EVENTS_VERSION = 2
"""The version :func:`encode_events` writes."""
EVENTS_VERSIONS: tuple[int, ...] = (1, 2)
"""The versions :func:`decode_events` reads."""

_SEVERITIES = {s.value: s for s in Severity}
_F8 = np.dtype("<f8")


# -- version 2 ------------------------------------------------------------------------


def encode_events(events: Sequence[Event] | EventColumns) -> bytes:
    """Encode events (version 2, columnar), each with its features and raw context.

    Raises:
        ValueError: an event's ``raw`` frame has a sensor index beyond its non-empty
            ``raw_sensors`` (an empty ``raw_sensors`` leaves indices unmapped).
        TypeError: an item is not an ``Event``.
    """
    cols = events if isinstance(events, EventColumns) else EventColumns.from_events(events)
    n = len(cols)
    raw_n = np.diff(cols.raw_offsets)
    bad = _raw_beyond_names(cols, raw_n)
    if bad is not None:
        i, top, names = bad
        raise ValueError(f"event raw sensor index {top} beyond {names} names (events[{i}])")
    u4 = (
        cols.codes.reshape(-1),
        np.diff(cols.feature_offsets),
        np.diff(cols.raw_sensor_offsets),
        cols.feature_keys,
        cols.raw_sensor_names,
    )
    i8 = (cols.times.reshape(-1), np.where(cols.has_raw[:n], raw_n, -1))
    body = {
        "n": n,
        "strings": list(cols.strings),
        "u4": _enc_u4(np.concatenate(u4)),
        "i8": _enc_i8_delta(np.concatenate(i8)),
        "f8": _enc_f8(np.concatenate((cols.scores.reshape(-1), cols.feature_values))),
        "raw": _enc_block(cols.raw),
    }
    return _pack("events", body, version=EVENTS_VERSION)


def decode_events(data: bytes) -> EventColumns:
    """Decode an events payload (version 1 or 2) into columns.

    Returns:
        the events as :class:`EventColumns` (a ``Sequence[Event]``); each raw frame's
        indices fall inside its ``raw_sensors`` when that is non-empty. Decoded from
        version 2, ``wire`` holds ``data``.

    Raises:
        CodecError: naming the event and field, e.g. ``events[3].score``.
    """
    env = _open(data, "events", EVENTS_VERSIONS)
    if env["v"] == 1:
        items = _list(_get(env, "events", "envelope"), "events")
        budget = _Budget()
        v1 = [_dec_event_v1(obj, f"events[{i}]", budget) for i, obj in enumerate(items)]
        return EventColumns.from_events(v1)
    return _decode_v2(env, bytes(data))


def _decode_v2(env: Mapping[Any, Any], wire: bytes) -> EventColumns:
    budget = _Budget()
    n = _int(env, "n", "events")
    if n < 0:
        _fail("events.n", RejectReason.MALFORMED, f"{n} events")
    strings = _names(_get(env, "strings", "events"), "events.strings")
    n_str = len(strings)
    u4 = _dec_u4(_get(env, "u4", "events"), "events.u4", budget)
    i8 = _dec_i8_delta(_get(env, "i8", "events"), "events.i8", budget)
    f8 = _dec_f8(_get(env, "f8", "events"), "events.f8", budget)
    nc, nt, ns = len(CODE_COLUMNS) * n, len(TIME_COLUMNS) * n, len(SCORE_COLUMNS) * n
    if u4.shape[0] < nc + 2 * n:
        _fail("events.u4", RejectReason.TRUNCATED, f"{u4.shape[0]} values for {n} events")
    f_off = offsets(u4[nc : nc + n])
    rs_off = offsets(u4[nc + n : nc + 2 * n])
    m, k = int(f_off[-1]), int(rs_off[-1])
    for name, arr, want in (("u4", u4, nc + 2 * n + m + k), ("i8", i8, nt + n), ("f8", f8, ns + m)):
        if arr.shape[0] != want:
            _fail(
                f"events.{name}", RejectReason.TRUNCATED, f"{arr.shape[0]} values, {want} expected"
            )
    codes = u4[:nc].reshape(len(CODE_COLUMNS), n)
    f_keys, rs_names = u4[nc + 2 * n : nc + 2 * n + m], u4[nc + 2 * n + m :]
    # Every string index in range: one test over each region (the common case); the
    # field is looked for only when one is not.
    if nc and int(codes.max()) >= n_str:
        for row, name in enumerate(CODE_COLUMNS):
            _check_codes(codes[row], n_str, name)
    if m + k and int(u4[nc + 2 * n :].max()) >= n_str:
        _check_codes(f_keys, n_str, "features", _owners(f_off))
        _check_codes(rs_names, n_str, "raw_sensors", _owners(rs_off))
    severity = codes[CODE_COLUMNS.index("severity")]
    for c in set(severity.tolist()):
        if strings[c] not in _SEVERITIES:
            i = int(np.argmax(severity == c))
            _fail(
                f"events[{i}].severity",
                RejectReason.MALFORMED,
                f"unknown severity {strings[c]!r:.40}",
            )
    if m > 1 and not _same_unique_keys(f_keys, f_off):
        owner = _owners(f_off)
        pairs = owner * max(n_str, 1) + f_keys
        uniq, first = np.unique(pairs, return_index=True)
        if uniq.shape[0] != m:
            dup = int(np.setdiff1d(np.arange(m), first)[0])
            i, key = int(owner[dup]), strings[int(f_keys[dup])]
            _fail(
                f"events[{i}].features", RejectReason.MALFORMED, f"feature {key!r:.40} given twice"
            )
    raw_count = i8[nt:]
    if n and int(raw_count.min()) < -1:
        i = int(np.argmax(raw_count < -1))
        _fail(f"events[{i}].raw", RejectReason.MALFORMED, f"sample count {int(raw_count[i])}")
    raw = _dec_block(_map(_get(env, "raw", "events"), "events.raw"), "events.raw", budget, None)
    raw_n = np.maximum(raw_count, 0)
    r_off = offsets(raw_n)
    if int(r_off[-1]) != len(raw):
        _fail(
            "events.raw",
            RejectReason.TRUNCATED,
            f"counts add to {int(r_off[-1])}, {len(raw)} samples sent",
        )
    cols = EventColumns(
        strings=strings,
        codes=codes,
        times=i8[:nt].reshape(len(TIME_COLUMNS), n),
        scores=f8[:ns].reshape(len(SCORE_COLUMNS), n),
        feature_offsets=f_off,
        feature_keys=f_keys,
        feature_values=f8[ns:],
        raw_sensor_offsets=rs_off,
        raw_sensor_names=rs_names,
        raw_offsets=r_off,
        has_raw=raw_count >= 0,
        raw=raw,
        wire=wire,
    )
    bad = _raw_beyond_names(cols, raw_n)
    if bad is not None:
        i, top, names = bad
        _fail(
            f"events[{i}].raw.sensor",
            RejectReason.MALFORMED,
            f"sensor index {top} beyond {names} names",
        )
    return cols


def _owners(off: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The event of each item of a column cut by ``off``."""
    return np.repeat(np.arange(off.shape[0] - 1, dtype=np.int64), np.diff(off))


def _same_unique_keys(keys: npt.NDArray[np.uint32], off: npt.NDArray[np.int64]) -> bool:
    """Whether every event has the first event's feature keys, in its order, and those
    are distinct: the common case, checked without sorting all keys."""
    n = off.shape[0] - 1
    per = int(off[1]) if n else 0
    if per == 0 or per * n != keys.shape[0] or not (np.diff(off) == per).all():
        return False
    first = keys[:per]
    same = bool((keys.reshape(n, per) == first).all())
    return same and np.unique(first).shape[0] == per


def _raw_beyond_names(
    cols: EventColumns, raw_n: npt.NDArray[np.int64]
) -> tuple[int, int, int] | None:
    """(event, index, names) of the first raw sample indexing past its event's non-empty
    ``raw_sensors``, or ``None``."""
    if len(cols.raw) == 0:
        return None
    owner = np.repeat(np.arange(len(cols), dtype=np.int64), raw_n)
    limit = np.diff(cols.raw_sensor_offsets)[owner]
    bad = (limit > 0) & (cols.raw.sensor >= limit)
    if not bad.any():
        return None
    j = int(np.argmax(bad))
    return int(owner[j]), int(cols.raw.sensor[j]), int(limit[j])


def _enc_f8(a: npt.NDArray[Any]) -> bytes:
    return _compress(np.asarray(a, dtype=_F8))


def _dec_f8(blob: object, field: str, budget: _Budget) -> npt.NDArray[np.float64]:
    raw = _decompress(blob, field, 8, budget)
    return np.frombuffer(raw, dtype=_F8).astype(np.float64)


def _check_codes(
    codes: npt.NDArray[np.uint32],
    n_strings: int,
    name: str,
    owner: npt.NDArray[np.int64] | None = None,
) -> None:
    if codes.shape[0] == 0 or int(codes.max()) < n_strings:
        return
    j = int(np.argmax(codes >= n_strings))
    i = j if owner is None else int(owner[j])
    _fail(
        f"events[{i}].{name}",
        RejectReason.MALFORMED,
        f"string index {int(codes[j])} beyond {n_strings} strings",
    )


# -- version 1 ------------------------------------------------------------------------


def encode_events_v1(events: Sequence[Event]) -> bytes:
    """Encode events in version 1, one map per event: what nodes of earlier releases
    send (kept to test that hubs still read it)."""
    return _pack("events", {"events": [_enc_event_v1(e) for e in events]})


def _enc_event_v1(e: Event) -> dict[str, Any]:
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


def _dec_event_v1(obj: object, f: str, budget: _Budget) -> Event:
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
    raw: Frame | None = None
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


__all__ = [
    "EVENTS_VERSION",
    "EVENTS_VERSIONS",
    "decode_events",
    "encode_events",
    "encode_events_v1",
]

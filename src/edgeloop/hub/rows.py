"""Decoded records → rows of the hub's tables, validated before the database sees them.

:func:`rows_for` maps one decoded entry (a summary batch, events, a raw frame) onto rows
of ``edgeloop.hub.schema``'s tables, refusing what the database would reject or misfile
(over-long or NUL-carrying names, numbers beyond int64, sensor indexes without a name,
unequal columns) with a :class:`~edgeloop.errors.TelemetryError` that names the field,
e.g. ``summaries.sensor`` or ``events[2].machine``. Summary batches are converted column
by column with numpy; only the final zip into row tuples is per row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np

from edgeloop.errors import RejectReason, TelemetryError
from edgeloop.hub.columns import ColumnRows
from edgeloop.hub.documents import DOCUMENT_DECODERS, Document
from edgeloop.hub.schema import KIND_EVENTS, KIND_FRAME, KIND_SUMMARIES, KINDS, NAME, FrameEncoder
from edgeloop.telemetry.event_columns import EventColumns
from edgeloop.telemetry.frame import Frame
from edgeloop.telemetry.records import Event, SummaryBatch


class Rows(NamedTuple):
    """Rows for one table: column names and one tuple per row (``bulk.insert_rows``).

    ``native`` promises that every value already is a plain DB-API type (``str``,
    ``int``, ``float``, ``bytes``, ``None``) and JSON columns hold their serialised
    text, so ``edgeloop.hub.bulk`` converts nothing.
    """

    keys: tuple[str, ...]
    values: list[tuple[Any, ...]]
    native: bool = False


SUMMARY_KEYS = (
    "node",
    "seq",
    "sensor",
    "t0_ns",
    "t1_ns",
    "count",
    "mean",
    "std",
    "min",
    "max",
    "epoch",
)


def rows_for(
    node: str,
    seq: int,
    kind: str,
    decoded: object,
    payload: bytes,
    encode_frame: FrameEncoder,
    *,
    epoch: int = 0,
) -> dict[str, Rows | ColumnRows]:
    """The rows one decoded entry adds, by table name.

    Args:
        node: the sending node (ledger key).
        seq: the entry's sequence number.
        epoch: the sending outbox's epoch (ledger key with ``node`` and ``seq``).
        kind: ``"summaries"``, ``"events"``, ``"frame"`` or a document kind
            (``edgeloop.hub.documents``: one ``node_documents`` row, the payload as body).
        decoded: the decoded payload for that kind (see :data:`Decoded`). Events as
            ``EventColumns`` (what the codec decodes) become column rows and one
            ``event_blocks`` row (:func:`event_column_rows`); a list of ``Event`` rows
            with their features and raw context in the row (:func:`event_rows`).
        payload: the encoded payload; becomes the blob of a ``"frame"`` entry (if empty,
            the frame is encoded with ``encode_frame``) and the body of a document.
        encode_frame: encodes the raw context of events.

    Raises:
        TelemetryError: the payload does not fit its kind or cannot be stored (sensor
            index without a name, unequal columns, negative count, over-long name); the
            error names the field, e.g. ``summaries.sensor`` or ``events[2].machine``.
    """
    if kind == KIND_SUMMARIES:
        if not isinstance(decoded, SummaryBatch):
            raise _wrong_type("summaries", decoded, "SummaryBatch")
        return {"summaries": summary_rows(node, seq, decoded, epoch)}
    if kind == KIND_EVENTS:
        if isinstance(decoded, EventColumns):
            from edgeloop.hub.event_blocks import event_column_rows  # it builds on this module

            return event_column_rows(node, seq, decoded, epoch)
        if not isinstance(decoded, list | tuple):
            raise _wrong_type("events", decoded, "list of Event")
        return {"events": event_rows(node, seq, decoded, encode_frame, epoch)}
    if kind == KIND_FRAME:
        if not (isinstance(decoded, tuple) and len(decoded) == 2):
            raise _wrong_type("frame", decoded, "(Frame, sensor names)")
        frame, names = decoded
        if not isinstance(frame, Frame):
            raise _wrong_type("frame", frame, "Frame")
        names = tuple(_name(n, f"frame.sensor_names[{i}]") for i, n in enumerate(names))
        _check_indices(frame.sensor, len(names), "frame.sensor")
        blob = payload or encode_frame(frame, names)
        keys = ("node", "epoch", "seq", "sensors", "n", "blob")
        return {"raw_frames": Rows(keys, [(node, epoch, seq, list(names), len(frame), blob)])}
    if kind in DOCUMENT_DECODERS:
        if not isinstance(decoded, Document) or decoded.kind != kind:
            raise _wrong_type(kind, decoded, f"Document of kind {kind!r}")
        keys = ("node", "epoch", "seq", "kind", "t_ns", "body")
        row = (node, epoch, seq, kind, int64(decoded.t_ns, f"{kind}.t_ns"), payload)
        return {"node_documents": Rows(keys, [row], native=True)}
    raise TelemetryError(
        "kind",
        RejectReason.MALFORMED,
        f"unknown entry kind {kind!r}; expected one of {KINDS + tuple(DOCUMENT_DECODERS)}",
    )


def summary_rows(node: str, seq: int, batch: SummaryBatch, epoch: int = 0) -> Rows:
    """Rows of ``summaries`` for a batch (columns :data:`SUMMARY_KEYS`): columns are
    validated and converted whole, with numpy; only the final zip is per row."""
    n = len(batch)
    for col in ("sensor", "t0_ns", "t1_ns", "count", "mean", "std", "min", "max"):
        arr = np.asarray(getattr(batch, col))
        if arr.ndim != 1 or arr.shape[0] != n:
            raise TelemetryError(
                f"summaries.{col}",
                RejectReason.TRUNCATED,
                f"column has shape {arr.shape}, expected ({n},) like summaries.sensor",
            )
    if n == 0:
        return Rows(SUMMARY_KEYS, [], native=True)
    names = tuple(
        _name(s, f"summaries.sensor_names[{i}]") for i, s in enumerate(batch.sensor_names)
    )
    sensor = _check_indices(batch.sensor, len(names), "summaries.sensor")
    if (np.asarray(batch.count) < 0).any():
        raise TelemetryError("summaries.count", RejectReason.MALFORMED, "negative sample count")
    if (np.asarray(batch.t1_ns) < np.asarray(batch.t0_ns)).any():
        raise TelemetryError("summaries.t1_ns", RejectReason.MALFORMED, "t1_ns before t0_ns")
    cols = (
        np.asarray(names, dtype=object)[sensor].tolist(),
        np.asarray(batch.t0_ns, dtype=np.int64).tolist(),
        np.asarray(batch.t1_ns, dtype=np.int64).tolist(),
        np.asarray(batch.count, dtype=np.int64).tolist(),
        _floats(batch.mean),
        _floats(batch.std),
        _floats(batch.min),
        _floats(batch.max),
    )
    values = list(zip(repeat(node, n), repeat(seq, n), *cols, repeat(epoch, n), strict=True))
    return Rows(SUMMARY_KEYS, values, native=True)


EVENT_KEYS = (
    "node",
    "seq",
    "epoch",
    "origin",
    "machine",
    "sensor",
    "severity",
    "t_start_ns",
    "t_end_ns",
    "detected_ns",
    "score",
    "threshold",
    "detector",
    "reason",
    "features",
    "raw",
    "raw_sensors",
)


def event_rows(
    node: str,
    seq: int,
    events: Sequence[object],
    encode_frame: FrameEncoder,
    epoch: int = 0,
) -> Rows:
    """Rows of ``events`` (columns :data:`EVENT_KEYS`); raw context is re-encoded as one
    frame blob per event."""
    rows: list[tuple[Any, ...]] = []
    for i, ev in enumerate(events):
        if not isinstance(ev, Event):
            raise _wrong_type(f"events[{i}]", ev, "Event")
        raw_sensors = tuple(
            _ev_name(s, i, f"raw_sensors[{j}]") for j, s in enumerate(ev.raw_sensors)
        )
        blob = None
        if ev.raw is not None and len(ev.raw):
            _check_indices(ev.raw.sensor, len(raw_sensors), f"events[{i}].raw.sensor")
            blob = encode_frame(ev.raw, raw_sensors)
        severity = ev.severity
        rows.append(
            (
                node,
                seq,
                epoch,
                _ev_name(ev.node, i, "node"),
                _ev_name(ev.machine, i, "machine"),
                _ev_name(ev.sensor, i, "sensor"),
                _ev_name(str(getattr(severity, "value", severity)), i, "severity", 16),
                _ev_int64(ev.t_start_ns, i, "t_start_ns"),
                _ev_int64(ev.t_end_ns, i, "t_end_ns"),
                _ev_int64(ev.detected_ns, i, "detected_ns"),
                _float(ev.score),
                _float(ev.threshold),
                _ev_name(ev.detector, i, "detector"),
                text(ev.reason),
                json_text(ev.features),
                blob,
                json_text(list(raw_sensors)) if raw_sensors else "[]",
            )
        )
    return Rows(EVENT_KEYS, rows, native=True)


def _ev_name(value: Any, i: int, attr: str, limit: int = NAME) -> str:
    # The common case without building the field's name (an f-string per check).
    if type(value) is str and len(value) <= limit and "\x00" not in value:
        return value
    return _name(value, f"events[{i}].{attr}", limit)


def _ev_int64(value: Any, i: int, attr: str) -> int:
    if type(value) is int and -(2**63) <= value < 2**63:
        return value
    return int64(value, f"events[{i}].{attr}")


_STRICT_JSON = json.JSONEncoder(
    allow_nan=False
)  # built once: json.dumps(allow_nan=...) builds one per call


def json_text(value: Any) -> str:
    """``value`` as JSON text, the same as ``json.dumps(json_safe(value))``, without
    copying it first when it already is plain JSON (the common case)."""
    if not isinstance(value, dict) or all(type(k) is str for k in value):
        try:
            return _STRICT_JSON.encode(value)
        except (TypeError, ValueError):
            pass  # numpy scalars, NaN, bytes...: convert them first
    return json.dumps(json_safe(value))


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types: non-finite floats become ``None`` (JSON has no NaN),
    numpy scalars Python numbers, tuples lists, bytes hex, anything else its ``str``.

    A flat dict that already is plain (string keys; str, int or finite float values) is
    returned as it is, not copied."""
    if value is None or isinstance(value, bool | str):
        return value
    if type(value) is dict and all(
        type(k) is str
        and (type(v) is str or type(v) is int or (type(v) is float and math.isfinite(v)))
        for k, v in value.items()
    ):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _float(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _float(value: Any) -> float | None:
    f = float(value)
    return f if math.isfinite(f) else None


def _floats(arr: Any) -> list[float | None]:
    values = np.asarray(arr, dtype=np.float64)
    finite = np.isfinite(values)
    if finite.all():
        return values.tolist()  # type: ignore[no-any-return]
    obj = values.astype(object)
    obj[~finite] = None
    return obj.tolist()  # type: ignore[no-any-return]


def _check_indices(sensor: Any, n_names: int, field: str) -> Any:
    idx = np.asarray(sensor, dtype=np.int64)
    bad = (idx < 0) | (idx >= n_names)
    if bad.any():
        raise TelemetryError(
            field,
            RejectReason.UNKNOWN_SENSOR,
            f"{int(bad.sum())} rows index beyond the {n_names} sensor names "
            f"(first: {int(idx[bad][0])})",
        )
    return idx


def int64(value: Any, field: str) -> int:
    """``value`` as an int that fits a ``BIGINT`` column, else a TelemetryError naming
    ``field`` (a value the database would refuse must not fail the whole batch)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise _wrong_type(field, value, "int")
    v = int(value)
    if not -(2**63) <= v < 2**63:
        raise TelemetryError(field, RejectReason.MALFORMED, f"{v} does not fit in int64")
    return v


def text(value: Any) -> str:
    """Free text for a ``TEXT`` column: NUL characters (refused by PostgreSQL) replaced."""
    return str(value).replace("\x00", "\ufffd")


def _name(value: Any, field: str, limit: int = NAME) -> str:
    if not isinstance(value, str):
        raise _wrong_type(field, value, "str")
    if len(value) > limit:
        raise TelemetryError(field, RejectReason.MALFORMED, f"{len(value)} characters > {limit}")
    if "\x00" in value:
        raise TelemetryError(field, RejectReason.MALFORMED, "NUL character in a name")
    return value


def _wrong_type(field: str, value: object, expected: str) -> TelemetryError:
    return TelemetryError(
        field, RejectReason.WRONG_TYPE, f"expected {expected}, got {type(value).__name__}"
    )


__all__ = [
    "EVENT_KEYS",
    "SUMMARY_KEYS",
    "Rows",
    "event_rows",
    "int64",
    "json_safe",
    "json_text",
    "rows_for",
    "summary_rows",
    "text",
]

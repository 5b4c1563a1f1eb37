"""Events that arrive as columns: their rows, and their block (the entry as it arrived).

Write side, :func:`event_column_rows`: an events entry decoded by the codec
(:class:`~edgeloop.telemetry.event_columns.EventColumns`) becomes

* column rows of ``events`` (:data:`EVENT_COLUMN_KEYS`): the fields the query
  endpoints filter and sort on, validated and converted column by column; no Python
  object, JSON document or re-encoded frame per event;
* one ``event_blocks`` row holding the encoded entry, from which features, raw samples
  and raw sensor names are read back.

Read side, :class:`Blocks`: the details of stored events, one decode per entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, select, tuple_

from edgeloop.errors import RejectReason, TelemetryError
from edgeloop.hub import schema as t
from edgeloop.hub.columns import Column, ColumnRows, Text
from edgeloop.hub.rows import Rows, _name, text
from edgeloop.hub.schema import NAME
from edgeloop.telemetry.event_columns import CODE_COLUMNS, EventColumns
from edgeloop.telemetry.frame import Frame

EVENT_COLUMN_KEYS = (
    "node",
    "seq",
    "epoch",
    "idx",
    "origin",
    "machine",
    "sensor",
    "severity",
    "detector",
    "reason",
    "t_start_ns",
    "t_end_ns",
    "detected_ns",
    "score",
    "threshold",
)
EVENT_BLOCK_KEYS = ("node", "epoch", "seq", "n", "payload")
_LIMITS = (
    ("node", NAME),
    ("machine", NAME),
    ("sensor", NAME),
    ("detector", NAME),
    ("severity", 16),
    ("raw_sensors", NAME),
)
"""String fields stored in length-limited columns, with their limits."""


def event_column_rows(
    node: str, seq: int, cols: EventColumns, epoch: int = 0
) -> dict[str, Rows | ColumnRows]:
    """Rows of ``events`` (columns :data:`EVENT_COLUMN_KEYS`, no Python object per
    event) and the entry's ``event_blocks`` row, which keeps the features, raw samples
    and raw sensor names: ``cols.wire`` when the columns were decoded from the current
    wire version, else the columns encoded again.

    Raises:
        TelemetryError: a name is over-long or holds NUL (``events[i].machine``), or a
            raw sample's sensor index has no name (``events[i].raw.sensor``).
    """
    n = len(cols)
    strings = cols.strings
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    nul = "\x00" in "".join(strings)
    severity = cols.code("severity")
    # The common case in two tests: no string is too long for a name column or holds NUL,
    # and the severities fit theirs.
    if nul or int(lengths.max(initial=0)) > NAME or _longest(lengths, severity) > 16:
        _check_names(cols, lengths, nul)
    raw_n = np.diff(cols.raw_offsets)
    names_n = np.diff(cols.raw_sensor_offsets)
    unnamed = (raw_n > 0) & (names_n == 0)  # samples, but no names to index
    if unnamed.any() or (not cols.wire and len(cols.raw)):
        # Columns decoded from the wire had each sample's index checked against its
        # event's names by the codec; what the codec lets pass is raw without names.
        owner = np.repeat(np.arange(n, dtype=np.int64), raw_n)
        names_of = names_n[owner]
        beyond = cols.raw.sensor >= names_of
        if beyond.any():
            j = int(np.argmax(beyond))
            raise TelemetryError(
                f"events[{int(owner[j])}].raw.sensor",
                RejectReason.UNKNOWN_SENSOR,
                f"raw sample sensor index {int(cols.raw.sensor[j])} beyond the "
                f"{int(names_of[j])} raw sensor names",
            )
    table = tuple(text(s) for s in strings) if nul else strings
    reasons = Text(cols.code("reason"), table)
    texts = {c: Text(cols.code(c), strings) for c in CODE_COLUMNS if c != "reason"}
    columns: tuple[Column, ...] = (
        Text(np.zeros(n, dtype=np.intp), (node,)),
        np.full(n, seq, dtype=np.int64),
        np.full(n, epoch, dtype=np.int64),
        np.arange(n, dtype=np.int32),
        texts["node"],
        texts["machine"],
        texts["sensor"],
        texts["severity"],
        texts["detector"],
        reasons,
        *(np.asarray(t, dtype=np.int64) for t in cols.times),
        *(np.asarray(x, dtype=np.float64) for x in cols.scores),
    )
    payload = cols.wire or _encode_events(cols)
    return {
        "events": ColumnRows(EVENT_COLUMN_KEYS, columns),
        "event_blocks": Rows(EVENT_BLOCK_KEYS, [(node, epoch, seq, n, payload)], native=True),
    }


def _longest(lengths: npt.NDArray[np.int64], codes: npt.NDArray[np.uint32]) -> int:
    return max((int(lengths[c]) for c in set(codes.tolist())), default=0)


def _check_names(cols: EventColumns, lengths: npt.NDArray[np.int64], nul: bool) -> None:
    """Raise the ``TelemetryError`` of the first string a length-limited column cannot
    hold (too long, or NUL), naming the event and field."""
    strings = cols.strings
    has_nul = np.zeros(len(strings), dtype=bool)
    if nul:
        has_nul = np.fromiter(("\x00" in s for s in strings), dtype=bool, count=len(strings))
    for name, limit in _LIMITS:
        bad = (lengths > limit) | has_nul
        raw_names = name == "raw_sensors"
        codes = (cols.raw_sensor_names if raw_names else cols.code(name)).astype(np.intp)
        hit = bad[codes]
        if hit.any():
            j = int(np.argmax(hit))
            field = f"events[{j}].{name}"
            if raw_names:
                i = int(np.searchsorted(cols.raw_sensor_offsets, j, side="right")) - 1
                field = f"events[{i}].raw_sensors[{j - int(cols.raw_sensor_offsets[i])}]"
            _name(strings[int(codes[j])], field, limit)


def _encode_events(cols: EventColumns) -> bytes:
    # Imported lazily: the store needs the codec only for columns built in Python.
    from edgeloop.telemetry.codec_events import encode_events

    return encode_events(cols)


BlockKey = tuple[str, int, int]
"""(node, epoch, seq) of an events entry."""


class Blocks:
    """Decoded event blocks of one query: each block fetched and decoded once.

    Args:
        conn: a connection.
        keys: the (node, epoch, seq) of every block the caller will ask about.
    """

    def __init__(self, conn: Connection, keys: Iterable[BlockKey]) -> None:
        from edgeloop.telemetry.codec_events import decode_events  # lazily, as in rows

        self._cols: dict[BlockKey, EventColumns] = {}
        wanted = sorted(set(keys))
        b = t.event_blocks.c
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            q = select(b.node, b.epoch, b.seq, b.payload).where(
                tuple_(b.node, b.epoch, b.seq).in_(chunk)
            )
            for node, epoch, seq, payload in conn.execute(q):
                self._cols[(node, epoch, seq)] = decode_events(bytes(payload))

    def details(self, key: BlockKey, idx: int) -> dict[str, Any]:
        """``features``, ``raw_sensors`` and ``has_raw`` of event ``idx`` of a block
        (empty, as for an event without them, if the block is missing)."""
        cols = self._cols.get(key)
        if cols is None or not 0 <= idx < len(cols):
            return {"features": {}, "raw_sensors": [], "has_raw": False}
        features = {k: _finite(v) for k, v in cols.features(idx).items()}
        raw_n = int(cols.raw_offsets[idx + 1] - cols.raw_offsets[idx])
        return {
            "features": features,
            "raw_sensors": list(cols.raw_sensors(idx)),
            "has_raw": bool(cols.has_raw[idx]) and raw_n > 0,
        }

    def raw(self, key: BlockKey, idx: int) -> tuple[Frame, tuple[str, ...]] | None:
        """Event ``idx``'s raw samples and their sensor names, or ``None``."""
        cols = self._cols.get(key)
        if cols is None or not 0 <= idx < len(cols):
            return None
        frame = cols.raw_frame(idx)
        if frame is None or len(frame) == 0:
            return None
        return frame, cols.raw_sensors(idx)


def _finite(v: float) -> float | None:
    # Stored JSON has no NaN: rows stored from Event objects read back None there too.
    return v if np.isfinite(v) else None


__all__ = ["EVENT_BLOCK_KEYS", "EVENT_COLUMN_KEYS", "BlockKey", "Blocks", "event_column_rows"]

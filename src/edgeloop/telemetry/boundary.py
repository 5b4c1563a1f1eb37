"""The API boundary: per-sample records from the outside world become one :class:`Frame`.

This is the only place where a Python object per sample exists. Two inputs:

* JSON push — a list of records ``{"sensor": str, "ts": int ns, "value": number}``
  (:func:`frame_from_records`);
* replay files — CSV with a ``sensor,ts,value`` header (:func:`frame_from_csv`).

Rules, the same for both: a bad record is rejected with a :class:`RejectRecord` naming
the record and the field (``records[3].value``, ``rows[7].ts``) and the reason, and the
valid records beside it are kept, in input order. One record gets one reason, the first
of: ``malformed`` (not an object / wrong number of CSV fields / missing key),
``wrong_type`` (sensor not a string, ts not an integer, value not a number; in that field
order), ``unknown_sensor`` (name not in the catalog).

Types only are checked here; values (NaN, the future, ordering) are the business of
:class:`~edgeloop.telemetry.validate.FrameValidator`, which every node runs next.

``ts`` is an integer count of ns since the epoch. A string of decimal digits is accepted
too, because many JSON clients cannot hold an int64 as a number; a float or a float
string (``1.7e18``, ``"1.5"``) is rejected, since it has already lost precision.
Booleans are neither integers nor numbers here.

>>> from edgeloop.telemetry.frame import SensorCatalog, SensorSpec
>>> cat = SensorCatalog.of([SensorSpec("t1", "m1")])
>>> frame, rejects = frame_from_records(
...     [{"sensor": "t1", "ts": 10, "value": 1.5}, {"sensor": "t1", "ts": 20, "value": "abc"}],
...     cat,
... )
>>> frame.value.tolist(), [str(r) for r in rejects]
([1.5], ["records[1].value: wrong_type (expected a number, got str 'abc')"])
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeloop.errors import RejectReason, TelemetryError
from edgeloop.telemetry.frame import Frame, SensorCatalog
from edgeloop.telemetry.validate import RejectRecord, check_rows

MAX_RECORDS = 1_000_000
"""Most records (or CSV rows) one call turns into a frame."""
CSV_COLUMNS = ("sensor", "ts", "value")

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_INT_STRING = re.compile(r"[+-]?[0-9]+")


def _show(x: object) -> str:
    """``str 'abc'``: the type and a short repr of an offending value."""
    if x is None:
        return "null"
    return f"{type(x).__name__} {x!r:.40}"


# -- per-value checks, shared by both inputs ----------------------------------------


def _ts_problem(x: object) -> str | None:
    """Why ``x`` is not a valid timestamp, or None."""
    if type(x) is int:
        return None if _I64_MIN <= x <= _I64_MAX else f"{x} does not fit int64"
    if isinstance(x, str) and _INT_STRING.fullmatch(x.strip()):
        return None if _I64_MIN <= int(x) <= _I64_MAX else f"{x} does not fit int64"
    return f"expected integer ns, got {_show(x)}"


def _value_problem(x: object) -> str | None:
    if type(x) is float or type(x) is int:
        return None
    return f"expected a number, got {_show(x)}"


def _to_frame(sensor: list[int], ts: list[int], value: list[float]) -> Frame:
    with np.errstate(over="ignore"):  # |value| > float32 max becomes inf: the validator's call
        vals = np.array(value, dtype=np.float64).astype(np.float32)
    return Frame(
        np.array(sensor, dtype=np.uint32),
        np.array(ts, dtype=np.int64),
        vals,
    )


# -- JSON records -------------------------------------------------------------------


def frame_from_records(
    records: Sequence[object],
    catalog: SensorCatalog,
    *,
    max_records: int = MAX_RECORDS,
) -> tuple[Frame, list[RejectRecord]]:
    """Turn pushed records into a frame, rejecting bad records one by one.

    Args:
        records: parsed JSON, each ``{"sensor": str, "ts": int, "value": number}``;
            extra keys are ignored.
        catalog: known sensors; names outside it are ``unknown_sensor``.
        max_records: more records than this raise (nothing is converted).

    Returns:
        ``(frame, rejects)``: the valid records in input order, one reject per bad record.

    Raises:
        TelemetryError: ``records: oversized`` when there are more than ``max_records``.
    """
    check_rows(len(records), max_records, "records")
    lookup = {name: i for i, name in enumerate(catalog.names())}
    sensor: list[int] = []
    ts: list[int] = []
    value: list[float] = []
    rejects: list[RejectRecord] = []
    for i, rec in enumerate(records):
        # Fast path for the common, well-formed record; anything else is explained below.
        if type(rec) is dict:
            name, t, x = rec.get("sensor"), rec.get("ts"), rec.get("value")
            idx = lookup.get(name) if type(name) is str else None
            if (
                idx is not None
                and type(t) is int
                and _I64_MIN <= t <= _I64_MAX
                and (type(x) is float or type(x) is int)
            ):
                sensor.append(idx)
                ts.append(t)
                value.append(x)
                continue
        problem = _record_problem(rec, i, lookup)
        if problem is not None:
            rejects.append(problem)
            continue
        assert isinstance(rec, Mapping)  # valid after all, e.g. ts as a digit string
        sensor.append(lookup[rec["sensor"]])
        ts.append(int(rec["ts"]))
        value.append(rec["value"])
    return _to_frame(sensor, ts, value), rejects


def _record_problem(rec: object, i: int, lookup: Mapping[str, int]) -> RejectRecord | None:
    where = f"records[{i}]"
    if not isinstance(rec, Mapping):
        return RejectRecord(RejectReason.MALFORMED, where, f"expected an object, got {_show(rec)}")
    for key in CSV_COLUMNS:
        if key not in rec:
            return RejectRecord(RejectReason.MALFORMED, f"{where}.{key}", "missing key")
    name = rec["sensor"]
    if not isinstance(name, str):
        return RejectRecord(
            RejectReason.WRONG_TYPE, f"{where}.sensor", f"expected a string, got {_show(name)}"
        )
    why = _ts_problem(rec["ts"])
    if why is not None:
        return RejectRecord(RejectReason.WRONG_TYPE, f"{where}.ts", why)
    why = _value_problem(rec["value"])
    if why is not None:
        return RejectRecord(RejectReason.WRONG_TYPE, f"{where}.value", why)
    if name not in lookup:
        return RejectRecord(
            RejectReason.UNKNOWN_SENSOR, f"{where}.sensor", f"{name!r:.60} is not in the catalog"
        )
    return None


# -- CSV ----------------------------------------------------------------------------


def frame_from_csv(
    source: str | os.PathLike[str],
    catalog: SensorCatalog,
    *,
    max_rows: int = MAX_RECORDS,
) -> tuple[Frame, list[RejectRecord]]:
    """Read a ``sensor,ts,value`` CSV into a frame, rejecting bad rows one by one.

    Args:
        source: a path (``os.PathLike``, or a ``str`` without a newline) or the CSV text
            itself (a ``str`` containing a newline). The header names the columns, in
            any order; other columns are ignored; blank lines are skipped.
        catalog: known sensors.
        max_rows: more data rows than this raise.

    Returns:
        ``(frame, rejects)``: valid rows in file order; one reject per bad row, naming
        ``rows[i].<field>`` (``i`` counts data rows from 0) and the line number.

    Raises:
        TelemetryError: ``header: malformed`` when the header lacks a column;
            ``rows: oversized`` beyond ``max_rows``.
        OSError: the file cannot be read.
    """
    if isinstance(source, str) and "\n" in source:
        text = source
    else:
        text = Path(source).read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    cols = [c.strip().lower() for c in header] if header else []
    missing = [c for c in CSV_COLUMNS if c not in cols]
    if missing:
        raise TelemetryError(
            "header",
            RejectReason.MALFORMED,
            f"missing column(s) {missing}; expected a header with {','.join(CSV_COLUMNS)}, "
            f"got {header!r:.120}",
        )
    ci, ti, vi = (cols.index(c) for c in CSV_COLUMNS)
    width = len(cols)
    if '"' in text:  # quoted fields may span lines: ask the reader for line numbers
        rows, lines = [], []
        for row in reader:
            if row:
                rows.append(row)
                lines.append(reader.line_num)
    else:  # one row per line: line numbers follow from positions, skip blank lines
        raw = list(reader)
        rows = [r for r in raw if r]
        lines = [k + 2 for k, r in enumerate(raw) if r] if len(rows) < len(raw) else []
    check_rows(len(rows), max_rows, "rows")
    return _rows_to_frame(rows, lines, width, (ci, ti, vi), catalog)


def _rows_to_frame(
    rows: list[list[str]],
    lines: list[int],  # line number of each row; empty: row i is on line i + 2
    width: int,
    idx: tuple[int, int, int],
    catalog: SensorCatalog,
) -> tuple[Frame, list[RejectRecord]]:
    """Convert whole columns at once; fall back per cell only in a column that fails."""
    n = len(rows)
    lengths = np.fromiter(map(len, rows), dtype=np.intp, count=n)
    bad_width = lengths != width
    if bad_width.any():
        good = [r for r, bad in zip(rows, bad_width.tolist(), strict=True) if not bad]
    else:
        good = rows
    ci, ti, vi = idx
    names = [r[ci] for r in good]
    ts_raw = [r[ti] for r in good]
    val_raw = [r[vi] for r in good]
    ts, ts_bad = _ts_column(ts_raw)
    vals, val_bad = _value_column(val_raw)
    lookup = {name: i for i, name in enumerate(catalog.names())}
    sensor = np.fromiter(map(lookup.get, names, repeat(-1)), dtype=np.int64, count=len(good))
    unknown = sensor < 0
    ok = ~(ts_bad | val_bad | unknown)

    def line(r: int) -> int:
        return lines[r] if lines else r + 2

    rejects: list[tuple[int, RejectRecord]] = []
    row_of = np.flatnonzero(~bad_width)  # good-row position -> row position
    for r in np.flatnonzero(bad_width).tolist():
        rejects.append(
            (
                r,
                RejectRecord(
                    RejectReason.MALFORMED,
                    f"rows[{r}]",
                    f"line {line(r)}: expected {width} fields, got {len(rows[r])}",
                ),
            )
        )
    for g in np.flatnonzero(~ok).tolist():
        r = int(row_of[g])
        if ts_bad[g]:
            why = _ts_problem(ts_raw[g].strip()) or "not an integer"
            rec = RejectRecord(RejectReason.WRONG_TYPE, f"rows[{r}].ts", f"line {line(r)}: {why}")
        elif val_bad[g]:
            rec = RejectRecord(
                RejectReason.WRONG_TYPE,
                f"rows[{r}].value",
                f"line {line(r)}: expected a number, got {val_raw[g]!r:.40}",
            )
        else:
            rec = RejectRecord(
                RejectReason.UNKNOWN_SENSOR,
                f"rows[{r}].sensor",
                f"line {line(r)}: {names[g]!r:.60} is not in the catalog",
            )
        rejects.append((r, rec))
    rejects.sort(key=lambda x: x[0])
    with np.errstate(over="ignore"):  # out of float32 range becomes inf: the validator's call
        value = vals[ok].astype(np.float32)
    frame = Frame(sensor[ok].astype(np.uint32), ts[ok], value)
    return frame, [rec for _, rec in rejects]


def _parse_ts(s: str) -> int:
    s = s.strip()
    if not _INT_STRING.fullmatch(s):  # int() alone would take "1_000" and "١٢"
        raise ValueError(s)
    return int(s)


def _ts_column(cells: list[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Parse timestamps; returns the values (0 where bad) and the mask of bad cells."""
    joined = "".join(cells)
    if joined.isascii() and "_" not in joined:  # then int() accepts what _parse_ts does
        try:
            return np.array(list(map(int, cells)), dtype=np.int64), np.zeros(len(cells), bool)
        except (ValueError, OverflowError):
            pass
    return _cells(cells, _parse_ts, np.int64)


def _value_column(cells: list[str]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Parse values; returns the values (0 where bad) and the mask of bad cells."""
    try:
        return np.array(list(map(float, cells)), dtype=np.float64), np.zeros(len(cells), bool)
    except ValueError:
        return _cells(cells, float, np.float64)


def _cells(
    cells: list[str], conv: Callable[[str], Any], dtype: type[np.generic]
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    """Cell by cell, for a column known to hold a bad cell."""
    bad = np.zeros(len(cells), dtype=bool)
    out: list[Any] = []
    for i, c in enumerate(cells):
        try:
            v = conv(c)
            np.array(v, dtype=dtype)  # raises OverflowError beyond int64
        except (ValueError, OverflowError):
            v = 0
            bad[i] = True
        out.append(v)
    return np.array(out, dtype=dtype).reshape(len(cells)), bad

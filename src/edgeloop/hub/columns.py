"""Rows as columns: a table's new rows held as numpy arrays, written without a Python
object per row.

:class:`ColumnRows` is what ``edgeloop.hub.rows`` builds for columnar payloads (events
decoded by ``codec.decode_events``). ``edgeloop.hub.bulk`` writes them:

* PostgreSQL: :func:`binary_copy` turns the columns into the bytes of
  ``COPY ... FROM STDIN (FORMAT BINARY)`` with a few numpy operations per column, not per
  row (psycopg's ``write_row`` would format each row in turn);
* SQLite: :meth:`ColumnRows.tuples` gives the DB-API tuples its multi-row insert takes.

A column is a numpy array (``int64``, ``int32``, ``float64``; a non-finite float is
written as NULL, like ``rows._floats`` does) or :class:`Text`: codes into a table of
distinct strings, so a name every row repeats is encoded once.

>>> import numpy as np
>>> rows = ColumnRows(("a", "b"), (np.array([1, 2]), Text(np.array([0, 0]), ("x",))))
>>> rows.tuples()
[(1, 'x'), (2, 'x')]
>>> binary_copy(rows.columns)[:11] == b"PGCOPY\\n\\xff\\r\\n\\x00"
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, header extension
_TRAILER = b"\xff\xff"
_BIG_ENDIAN = {"i": {4: ">i4", 8: ">i8"}, "f": {8: ">f8"}}


@dataclass(frozen=True, slots=True)
class Text:
    """A text column: row ``i`` holds ``table[codes[i]]``."""

    codes: npt.NDArray[np.integer[Any]]
    table: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def values(self) -> list[str]:
        """The strings, one per row."""
        return np.asarray(self.table, dtype=object)[self.codes].tolist()  # type: ignore[no-any-return]


Column = npt.NDArray[Any] | Text


@dataclass(frozen=True, slots=True)
class ColumnRows:
    """Rows of one table as columns, in ``keys`` order; every column has the same length."""

    keys: tuple[str, ...]
    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        lengths = {len(c) for c in self.columns}
        if len(self.keys) != len(self.columns) or len(lengths) > 1:
            raise ValueError(
                f"columns {self.keys} do not fit: {len(self.columns)} columns, lengths {lengths}"
            )

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def tuples(self) -> list[tuple[Any, ...]]:
        """One DB-API tuple per row (``None`` for a non-finite float)."""
        return list(zip(*(_python(c) for c in self.columns), strict=True))

    @classmethod
    def concat(cls, parts: Sequence[ColumnRows]) -> ColumnRows:
        """The rows of ``parts`` one after the other (same keys)."""
        if len(parts) == 1:
            return parts[0]
        keys = parts[0].keys
        if any(p.keys != keys for p in parts):
            raise ValueError("concat of column rows with different keys")
        shared: dict[tuple[int, ...], tuple[str, ...]] = {}
        columns = tuple(_concat([p.columns[j] for p in parts], shared) for j in range(len(keys)))
        return cls(keys, columns)


def binary_copy(columns: Sequence[Column]) -> bytes:
    """The bytes of ``COPY ... FROM STDIN (FORMAT BINARY)`` for these columns, signature
    and trailer included (what psycopg's ``Copy.write`` takes as it is).

    Each row is a field count (int16) and per field a length (int32, -1 for NULL) and
    the value in network byte order. Lengths and positions are computed for all rows at
    once; values are scattered into one buffer column by column (strings gathered from
    their table, each distinct string encoded once).

    Raises:
        ValueError: a column's dtype has no binary COPY form here.
    """
    k = len(columns)
    n = len(columns[0]) if k else 0
    lens = np.zeros((k, n), dtype=np.int64)  # data bytes of each field
    prepared: list[tuple[Any, ...]] = []
    tables: dict[int, tuple[Any, ...]] = {}  # columns often share one string table
    for j, col in enumerate(columns):
        if isinstance(col, Text):
            if id(col.table) not in tables:
                tables[id(col.table)] = _encode_table(col.table)
            blob, table_len, table_start = tables[id(col.table)]
            codes = np.asarray(col.codes, dtype=np.intp)
            lens[j] = table_len[codes]
            prepared.append(("text", blob, table_start[codes], None))
            continue
        a = np.asarray(col)
        be = _BIG_ENDIAN.get(a.dtype.kind, {}).get(a.dtype.itemsize)
        if be is None:
            raise ValueError(f"column {j}: no binary COPY form for dtype {a.dtype}")
        null = ~np.isfinite(a) if a.dtype.kind == "f" else None
        width = a.dtype.itemsize
        lens[j] = width
        if null is not None and null.any():
            lens[j][null] = 0
        else:
            null = None
        data = np.ascontiguousarray(a, dtype=be).view(np.uint8).reshape(n, width)
        prepared.append(("fixed", data, null, width))
    row_len = 2 + 4 * k + lens.sum(axis=0)
    row_start = np.empty(n, dtype=np.int64)
    row_start[:1] = len(_SIGNATURE)
    np.cumsum(row_len[:-1], out=row_start[1:])
    row_start[1:] += len(_SIGNATURE)
    total = len(_SIGNATURE) + int(row_len.sum()) + len(_TRAILER)
    out = np.empty(total, dtype=np.uint8)
    out[: len(_SIGNATURE)] = np.frombuffer(_SIGNATURE, dtype=np.uint8)
    out[total - len(_TRAILER) :] = 0xFF
    out[row_start] = (k >> 8) & 0xFF
    out[row_start + 1] = k & 0xFF
    four = np.arange(4)
    pos = row_start + 2
    for j, (kind, data, extra, width) in enumerate(prepared):
        word = lens[j].astype(">i4")
        if kind == "fixed" and extra is not None:
            word[extra] = -1
        out[pos[:, None] + four] = word.view(np.uint8).reshape(n, 4)
        at = pos + 4
        if kind == "fixed":
            rows = slice(None) if extra is None else ~extra
            out[at[rows, None] + np.arange(width)] = data[rows]
        else:
            _gather(out, at, data, extra, lens[j])
        pos = at + lens[j]
    return out.tobytes()


def _encode_table(table: tuple[str, ...]) -> tuple[Any, ...]:
    """UTF-8 bytes of a string table as one buffer, with each string's length and start."""
    joined = "".join(table).encode()
    length = np.fromiter(map(len, table), dtype=np.int64, count=len(table))
    if len(joined) != int(length.sum()):  # not all ASCII: byte lengths differ from str lengths
        encoded = [s.encode() for s in table]
        joined = b"".join(encoded)
        length = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    start = np.zeros(len(table), dtype=np.int64)
    np.cumsum(length[:-1], out=start[1:])
    return np.frombuffer(joined, dtype=np.uint8), length, start


def _gather(
    out: npt.NDArray[np.uint8],
    at: npt.NDArray[np.int64],
    blob: npt.NDArray[np.uint8],
    src: npt.NDArray[np.int64],
    lens: npt.NDArray[np.int64],
) -> None:
    """Copy ``blob[src[i] : src[i] + lens[i]]`` to ``out[at[i] : ...]`` for every row."""
    total = int(lens.sum())
    if total == 0:
        return
    before = np.cumsum(lens) - lens  # bytes of the rows before, in this column
    step = np.arange(total, dtype=np.int64)
    out[np.repeat(at - before, lens) + step] = blob[np.repeat(src - before, lens) + step]


def _python(col: Column) -> list[Any]:
    if isinstance(col, Text):
        return col.values()
    a = np.asarray(col)
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            obj = a.astype(object)
            obj[~finite] = None
            return obj.tolist()  # type: ignore[no-any-return]
    return a.tolist()  # type: ignore[no-any-return]


def _concat(cols: Sequence[Column], shared: dict[tuple[int, ...], tuple[str, ...]]) -> Column:
    """One column of the parts' columns; text columns whose parts have the same tables
    get the same concatenated table (``shared``), so it is encoded once."""
    if not isinstance(cols[0], Text):
        return np.concatenate([np.asarray(c) for c in cols])
    texts = [c for c in cols if isinstance(c, Text)]
    if len(texts) != len(cols):
        raise ValueError("concat of a text column with a numeric one")
    ids = tuple(id(c.table) for c in texts)
    if ids not in shared:
        shared[ids] = tuple(chain.from_iterable(c.table for c in texts))
    starts = np.cumsum([0] + [len(c.table) for c in texts[:-1]])
    codes = [
        np.asarray(c.codes, dtype=np.int64) + int(o) for c, o in zip(texts, starts, strict=True)
    ]
    return Text(np.concatenate(codes), shared[ids])


__all__ = ["Column", "ColumnRows", "Text", "binary_copy"]

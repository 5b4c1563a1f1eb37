"""Fixed-edge histogram sketches: compact, exactly mergeable summaries of a distribution.

A :class:`Sketch` summarises ``k`` named columns (features or scores) over some rows,
per column, in ``b`` bins between ``b + 1`` edges plus an underflow and an overflow bin:

====================  =====================================
bin 0 (underflow)     ``x < e[0]``
bin i, 1 <= i < b     ``e[i-1] <= x < e[i]``
bin b                 ``e[b-1] <= x <= e[b]``
bin b + 1 (overflow)  ``x > e[b]``
====================  =====================================

Each bin keeps its count and the sum of its values (so its centroid is exact), and each
column the sum of squares (its standard deviation is exact) and how many values were
not finite (set aside, never binned). Two sketches with the same names and edges merge by
adding arrays: merging is exact, associative and commutative, so a gateway can send one
sketch per period and the hub can add them per node, per fleet or over several periods.

Edges come from the training data (:func:`quantile_edges`) and travel in the model's
manifest with the training data's own sketch, the reference that drift is measured
against (see :mod:`edgeloop.drift.stats`).

>>> import numpy as np
>>> x = np.arange(100, dtype=np.float64).reshape(50, 2)
>>> ref = Sketch.build(("a", "b"), quantile_edges(x, 4), x)
>>> ref.counts.tolist()
[[0, 13, 12, 12, 13, 0], [0, 13, 12, 12, 13, 0]]
>>> ref.merge(ref).total.tolist()
[100, 100]
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeloop.errors import ConfigError

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class SketchError(ConfigError):
    """Sketches cannot be built or combined (names, edges or shapes disagree)."""


def quantile_edges(values: npt.ArrayLike, bins: int = 10) -> F64:
    """``(k, bins + 1)`` edges at the ``0, 1/bins, ..., 1`` quantiles of each column.

    The outer edges are each column's minimum and maximum, so the training data itself
    has no underflow or overflow. Non-finite values are ignored.

    Raises:
        SketchError: ``values`` is not a non-empty 2-D matrix, ``bins < 1``, or a
            column has no finite value.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise SketchError(f"values: expected a non-empty (n, k) matrix, got shape {x.shape}")
    if bins < 1:
        raise SketchError(f"bins: must be >= 1, got {bins}")
    finite = np.isfinite(x)
    empty = np.flatnonzero(~finite.any(axis=0))
    if empty.size:
        raise SketchError(f"values: columns {empty.tolist()} have no finite value")
    masked = np.where(finite, x, np.nan)
    q = np.linspace(0.0, 1.0, bins + 1)
    edges = np.nanquantile(masked, q, axis=0).T  # (k, bins + 1)
    # Quantiles are monotone in exact arithmetic; interpolation can wobble by an ulp.
    return np.ascontiguousarray(np.maximum.accumulate(edges, axis=1))


@dataclass(frozen=True, slots=True, eq=False)
class Sketch:
    """Histogram sketch of ``k`` named columns (see the module docstring).

    Attributes:
        names: column names, in order.
        edges: ``(k, b + 1)`` non-decreasing finite edges per column.
        counts: ``(k, b + 2)`` values per bin (underflow, ``b`` bins, overflow).
        sums: ``(k, b + 2)`` sum of the values in each bin.
        sumsq: ``(k,)`` sum of squared values per column.
        nonfinite: ``(k,)`` values per column that were NaN or infinite (not binned).
    """

    names: tuple[str, ...]
    edges: F64
    counts: I64
    sums: F64
    sumsq: F64
    nonfinite: I64

    def __post_init__(self) -> None:
        names = tuple(self.names)
        k = len(names)
        if not k or len(set(names)) != k or not all(isinstance(n, str) and n for n in names):
            raise SketchError(f"names: expected distinct non-empty names, got {list(names)!r}")
        edges = np.array(self.edges, dtype=np.float64)
        if edges.ndim != 2 or edges.shape[0] != k or edges.shape[1] < 2:
            raise SketchError(
                f"edges: expected shape ({k}, b + 1) with b >= 1 for {k} names, got {edges.shape}"
            )
        if not np.isfinite(edges).all():
            raise SketchError("edges: must be finite")
        bad = np.flatnonzero((np.diff(edges, axis=1) < 0).any(axis=1))
        if bad.size:
            raise SketchError(f"edges: not non-decreasing for {[names[i] for i in bad]}")
        nb = edges.shape[1] + 1
        counts = np.array(self.counts, dtype=np.int64)
        sums = np.array(self.sums, dtype=np.float64)
        for what, arr, shape in (
            ("counts", counts, (k, nb)),
            ("sums", sums, (k, nb)),
            ("sumsq", np.asarray(self.sumsq), (k,)),
            ("nonfinite", np.asarray(self.nonfinite), (k,)),
        ):
            if arr.shape != shape:
                raise SketchError(f"{what}: expected shape {shape}, got {arr.shape}")
        if (counts < 0).any() or (np.asarray(self.nonfinite) < 0).any():
            raise SketchError("counts: must be >= 0")
        for name, value in (
            ("names", names),
            ("edges", edges),
            ("counts", counts),
            ("sums", sums),
            ("sumsq", np.array(self.sumsq, dtype=np.float64)),
            ("nonfinite", np.array(self.nonfinite, dtype=np.int64)),
        ):
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, name, value)

    # -- building --------------------------------------------------------------------------
    @classmethod
    def empty(cls, names: Sequence[str], edges: npt.ArrayLike) -> Sketch:
        """A sketch of no rows with these names and edges."""
        e = np.asarray(edges, dtype=np.float64)
        k, nb = len(names), (e.shape[1] + 1 if e.ndim == 2 else 0)
        return cls(
            tuple(names),
            e,
            np.zeros((k, nb), dtype=np.int64),
            np.zeros((k, nb)),
            np.zeros(k),
            np.zeros(k, dtype=np.int64),
        )

    @classmethod
    def build(cls, names: Sequence[str], edges: npt.ArrayLike, values: npt.ArrayLike) -> Sketch:
        """Sketch of the rows of ``values`` ``(n, k)`` (column ``j`` is ``names[j]``).

        Raises:
            SketchError: names or edges are invalid, or ``values`` has the wrong shape.
        """
        base = cls.empty(names, edges)
        return base.update(values)

    def update(self, values: npt.ArrayLike) -> Sketch:
        """This sketch plus the rows of ``values`` ``(n, k)``."""
        k, b = len(self.names), self.bins
        x = np.asarray(values, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != k:
            raise SketchError(
                f"values: expected shape (n, {k}) for columns {list(self.names)}, got {x.shape}"
            )
        finite = np.isfinite(x)
        idx = np.empty(x.shape, dtype=np.int64)
        for j in range(k):  # one searchsorted per column, vectorized over the rows
            e = self.edges[j]
            col = idx[:, j]
            col[:] = np.searchsorted(e, x[:, j], side="right")
            col[(col == b + 1) & (x[:, j] == e[-1])] = b  # the last bin is closed
        xz = np.where(finite, x, 0.0)
        flat = (np.arange(k, dtype=np.int64) * (b + 2))[None, :] + idx
        flat, xf = flat[finite], xz[finite]
        counts = np.bincount(flat, minlength=k * (b + 2)).reshape(k, b + 2)
        sums = np.bincount(flat, weights=xf, minlength=k * (b + 2)).reshape(k, b + 2)
        return Sketch(
            self.names,
            self.edges,
            self.counts + counts,
            self.sums + sums,
            self.sumsq + np.einsum("ij,ij->j", xz, xz),
            self.nonfinite + (x.shape[0] - finite.sum(axis=0)),
        )

    # -- combining -------------------------------------------------------------------------
    def compatible(self, other: Sketch, what: str = "sketch") -> None:
        """Raise :class:`SketchError` naming the difference unless the layouts match."""
        if self.names != other.names:
            raise SketchError(f"{what}: names differ ({list(self.names)} vs {list(other.names)})")
        if self.edges.shape != other.edges.shape or not np.array_equal(self.edges, other.edges):
            diff = (
                "shape"
                if self.edges.shape != other.edges.shape
                else [
                    self.names[i] for i in np.flatnonzero((self.edges != other.edges).any(axis=1))
                ]
            )
            raise SketchError(f"{what}: edges differ ({diff})")

    def merge(self, other: Sketch) -> Sketch:
        """The sketch of both sketches' rows (exact)."""
        self.compatible(other)
        return Sketch(
            self.names,
            self.edges,
            self.counts + other.counts,
            self.sums + other.sums,
            self.sumsq + other.sumsq,
            self.nonfinite + other.nonfinite,
        )

    def select(self, names: Sequence[str]) -> Sketch:
        """The columns ``names`` of this sketch, in that order."""
        index = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise SketchError(f"names: {missing} not in sketch columns {list(self.names)}")
        cols = np.array([index[n] for n in names], dtype=np.intp)
        return Sketch(
            tuple(names),
            self.edges[cols],
            self.counts[cols],
            self.sums[cols],
            self.sumsq[cols],
            self.nonfinite[cols],
        )

    # -- derived values ----------------------------------------------------------------------
    @property
    def bins(self) -> int:
        """Inner bins per column (``b``)."""
        return int(self.edges.shape[1] - 1)

    @property
    def total(self) -> I64:
        """Binned (finite) values per column."""
        total: I64 = self.counts.sum(axis=1)
        return total

    def centroids(self) -> F64:
        """``(k, b + 2)`` mean value per bin; an empty bin gets its midpoint (or edge)."""
        e = self.edges
        fallback = np.concatenate([e[:, :1], (e[:, :-1] + e[:, 1:]) / 2.0, e[:, -1:]], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sums / self.counts
        return np.where(self.counts > 0, mean, fallback)

    def mean_std(self) -> tuple[F64, F64]:
        """Exact mean and (population) standard deviation per column; NaN when empty."""
        n = self.total.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sums.sum(axis=1) / n
            var = np.maximum(self.sumsq / n - mean * mean, 0.0)
        return mean, np.sqrt(var)

    def layout_id(self) -> str:
        """sha256 of names and edges: sketches merge exactly when their ids are equal."""
        h = hashlib.sha256("\0".join(self.names).encode())
        h.update(np.ascontiguousarray(self.edges, dtype="<f8").tobytes())
        return h.hexdigest()

    # -- plain values ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (floats round-trip exactly through JSON)."""
        return {
            "names": list(self.names),
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "sums": self.sums.tolist(),
            "sumsq": self.sumsq.tolist(),
            "nonfinite": self.nonfinite.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "sketch") -> Sketch:
        """Inverse of :meth:`to_dict`; raise :class:`SketchError` naming the field."""
        fields = ("names", "edges", "counts", "sums", "sumsq", "nonfinite")
        missing = [f for f in fields if f not in data]
        if missing:
            raise SketchError(f"{source}: missing fields {missing}")
        try:
            return cls(
                tuple(data["names"]),
                np.asarray(data["edges"], dtype=np.float64),
                np.asarray(data["counts"], dtype=np.int64),
                np.asarray(data["sums"], dtype=np.float64),
                np.asarray(data["sumsq"], dtype=np.float64),
                np.asarray(data["nonfinite"], dtype=np.int64),
            )
        except SketchError as exc:
            raise SketchError(f"{source}.{exc}") from exc
        except (TypeError, ValueError) as exc:
            raise SketchError(f"{source}: malformed arrays ({exc})") from exc

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sketch):
            return NotImplemented
        return (
            self.names == other.names
            and np.array_equal(self.edges, other.edges)
            and np.array_equal(self.counts, other.counts)
            and np.array_equal(self.sums, other.sums)
            and np.array_equal(self.sumsq, other.sumsq)
            and np.array_equal(self.nonfinite, other.nonfinite)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Sketch(k={len(self.names)}, bins={self.bins}, rows={self.total.tolist()})"


def merge_all(sketches: Iterable[Sketch]) -> Sketch:
    """Merge one or more sketches of the same layout.

    Raises:
        SketchError: no sketch was given, or two layouts differ.
    """
    items = list(sketches)
    if not items:
        raise SketchError("sketches: nothing to merge")
    first = items[0]
    for i, s in enumerate(items[1:], start=1):
        first.compatible(s, f"sketches[{i}]")
    return Sketch(
        first.names,
        first.edges,
        np.sum([s.counts for s in items], axis=0),
        np.sum([s.sums for s in items], axis=0),
        np.sum([s.sumsq for s in items], axis=0),
        np.sum([s.nonfinite for s in items], axis=0),
    )

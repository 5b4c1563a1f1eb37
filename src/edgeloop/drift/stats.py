"""Drift statistics between a reference sketch and current sketches: PSI, KS, Wasserstein-1.

All three work on the bins of :class:`~edgeloop.drift.sketch.Sketch` and are vectorized
over columns and over any number of sketches at once (one row per node, say):

``psi``
    Population stability index ``sum((p - q) * ln(p / q))`` over the ``b + 2`` bins, with
    half a pseudo-count per bin so that an empty bin stays finite. Rule of thumb: < 0.1
    stable, 0.1–0.25 moderate, > 0.25 a shift.
``ks``
    Kolmogorov–Smirnov distance ``max |F - G|`` evaluated at the bin edges: a lower bound
    of the distance between the raw samples (exact when every value is an edge).
``w1``
    Wasserstein-1 (earth mover's) distance between the bins' centroids weighted by their
    mass, divided by the reference's standard deviation so that one threshold fits every
    column. Each bin's mass sits at the exact mean of its values (sketches keep per-bin
    sums), so the error against the raw samples is bounded by the bin widths; a shift
    beyond the training range is measured by how far the overflow centroid moved.

>>> import numpy as np
>>> from edgeloop.drift.sketch import Sketch, quantile_edges
>>> rng = np.random.default_rng(0)
>>> train = rng.normal(size=(5000, 1))
>>> ref = Sketch.build(["x"], quantile_edges(train, 10), train)
>>> same = ref.update(rng.normal(size=(5000, 1)))
>>> bool(compare(ref, same).psi[0] < 0.01)
True
>>> moved = Sketch.empty(["x"], ref.edges).update(rng.normal(1.0, 1.0, size=(5000, 1)))
>>> round(float(compare(ref, moved).w1[0]), 1)
1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgeloop.drift.sketch import Sketch, SketchError

F64 = npt.NDArray[np.float64]

PSEUDO_COUNT = 0.5
"""Added to every bin's count for the PSI, so that empty bins give finite values."""

METRICS = ("psi", "ks", "w1")


@dataclass(frozen=True, slots=True, eq=False)
class DriftStats:
    """Drift of current sketches against a reference, one value per (sketch, column).

    Arrays have shape ``(m, k)`` for :func:`compare_many` and ``(k,)`` for
    :func:`compare`. A current sketch with no rows in a column gives NaN there.

    Attributes:
        names: column names.
        psi, ks, w1: the statistics (``w1`` in units of the reference's std).
        n: rows per (sketch, column) behind each value.
    """

    names: tuple[str, ...]
    psi: F64
    ks: F64
    w1: F64
    n: npt.NDArray[np.int64]

    def metric(self, name: str) -> F64:
        """The array of ``name`` (``"psi"``, ``"ks"`` or ``"w1"``)."""
        if name not in METRICS:
            raise SketchError(f"metric: unknown {name!r}; expected one of {METRICS}")
        value: F64 = getattr(self, name)
        return value


def compare(reference: Sketch, current: Sketch) -> DriftStats:
    """Drift of one sketch against ``reference`` (arrays of shape ``(k,)``)."""
    many = compare_many(reference, [current])
    return DriftStats(many.names, many.psi[0], many.ks[0], many.w1[0], many.n[0])


def compare_many(reference: Sketch, current: Sequence[Sketch]) -> DriftStats:
    """Drift of each of ``current`` against ``reference`` (arrays ``(len(current), k)``).

    Raises:
        SketchError: a current sketch's names or edges differ from the reference's.
    """
    for i, s in enumerate(current):
        reference.compatible(s, f"current[{i}]")
    k, nb = reference.counts.shape
    if not current:
        empty = np.empty((0, k))
        return DriftStats(reference.names, empty, empty, empty, np.empty((0, k), np.int64))
    counts = np.stack([s.counts for s in current]).astype(np.float64)  # (m, k, nb)
    sums = np.stack([s.sums for s in current])
    ref_counts = reference.counts.astype(np.float64)[None]  # (1, k, nb)
    n = counts.sum(axis=2)  # (m, k)
    n_ref = ref_counts.sum(axis=2)
    empty_rows = (n == 0) | (n_ref == 0)

    with np.errstate(invalid="ignore", divide="ignore"):
        # PSI with pseudo-counts.
        p = (counts + PSEUDO_COUNT) / (n + PSEUDO_COUNT * nb)[..., None]
        q = (ref_counts + PSEUDO_COUNT) / (n_ref + PSEUDO_COUNT * nb)[..., None]
        psi = ((p - q) * np.log(p / q)).sum(axis=2)

        # KS at the edges: CDFs after each bin but the last.
        f = np.cumsum(counts, axis=2)[..., :-1] / n[..., None]
        g = np.cumsum(ref_counts, axis=2)[..., :-1] / n_ref[..., None]
        ks = np.abs(f - g).max(axis=2)

        # W1 between point masses at the bin centroids.
        ref_pos = np.broadcast_to(reference.centroids()[None], counts.shape)
        edges = reference.edges
        fallback = np.concatenate(
            [edges[:, :1], (edges[:, :-1] + edges[:, 1:]) / 2.0, edges[:, -1:]], axis=1
        )
        cur_pos = np.where(counts > 0, sums / counts, fallback[None])
        pos = np.concatenate([ref_pos, cur_pos], axis=2)  # (m, k, 2 nb)
        w = np.concatenate(
            [
                np.broadcast_to(ref_counts / n_ref[..., None], counts.shape),
                -counts / n[..., None],
            ],
            axis=2,
        )
        order = np.argsort(pos, axis=2, kind="stable")
        pos_s = np.take_along_axis(pos, order, axis=2)
        cdf_gap = np.cumsum(np.take_along_axis(w, order, axis=2), axis=2)[..., :-1]
        w1_raw = (np.abs(cdf_gap) * np.diff(pos_s, axis=2)).sum(axis=2)
        _, ref_std = reference.mean_std()
        # A constant reference column: any movement at all is drift, in absolute units.
        scale = np.where(ref_std > 1e-12, ref_std, 1.0)
        w1 = w1_raw / scale[None]

    nan = np.float64(np.nan)
    return DriftStats(
        reference.names,
        np.where(empty_rows, nan, psi),
        np.where(empty_rows, nan, ks),
        np.where(empty_rows, nan, w1),
        n.astype(np.int64),
    )

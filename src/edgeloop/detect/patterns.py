"""Nearest past pattern of each row, per sensor and smoothing scale, by float32 products.

The last ``window`` values, smoothed at scale ``d`` (a moving mean of ``d`` values sampled
every ``d`` rows), form a row's embedding. Its RMS distance to the nearest of the
embeddings of the previous ``memory`` rows that end at least one embedding span
(``window · d`` rows) earlier — so a window is never matched with itself — is the row's
pattern novelty, in the values' unit.

Embeddings are kept in a ring per sensor and scale, stored as columns ``(c, |c|²)`` so
that one matrix product gives ``|c|² − 2 q·c`` for every pair; they are centred on the
sensor's first value so that large offsets do not cancel in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["PatternMemory"]

_F64 = npt.NDArray[np.float64]
_F32 = npt.NDArray[np.float32]
_Bool = npt.NDArray[np.bool_]


class PatternMemory:
    """Geometry of the embedding rings and the nearest-neighbour search over them.

    Args:
        window: values per embedding.
        scales: smoothing/sampling steps.
        memory: past embeddings a row is compared with, per scale.
        chunk: the most rows per sensor searched at once.
        history: values kept before a chunk (at least the longest embedding span).
    """

    def __init__(
        self, window: int, scales: Sequence[int], memory: int, chunk: int, history: int
    ) -> None:
        self.window = window
        self.scales = tuple(scales)
        self.memory = memory
        self.excl = [window * d for d in self.scales]
        self.history = history
        self.ring = memory + max(self.excl)
        self.chunk = chunk
        # Row j of a chunk compares with ring/chunk columns (j + off, j + off + memory]
        # (see nearest); near the two ends of that band, triangular masks.
        tri = np.arange(chunk)
        self._left_ok = tri[None, 1:] > tri[:, None]  # column off + 1 + c vs row j
        self._right_ok = tri[None, :-1] < tri[:, None]  # column off + memory + 1 + c

    def empty(self, s: int) -> _F32:
        """Rings of ``s`` sensors with no embedding yet: columns ``(0, ..., 0, inf)``."""
        ring = np.zeros((s, len(self.scales), self.window + 1, self.ring), np.float32)
        ring[:, :, self.window] = np.inf
        return ring

    def nearest(
        self, mem: _F32, k: int, seq: _F64, valid: _Bool, centre: _F64
    ) -> tuple[_F64, _F32]:
        """Distances of each chunk row's scale-``k`` embedding to its nearest past one.

        Args:
            mem: ``(m, window + 1, ring)`` the sensors' ring for scale ``k``.
            seq: ``(m, history + width)`` the values before the chunk, then the chunk's.
            valid: ``(m, width)`` cells holding a row (left-aligned).
            centre: ``(m,)`` the value embeddings are centred on.

        Returns:
            ``(distance, ring')``: RMS distances ``(m, width)`` (0 while the ring is
            empty) and the ring advanced by each sensor's valid rows.
        """
        m, width = valid.shape
        d, w, big_r, h = self.scales[k], self.window, self.ring, self.history
        c = np.cumsum(np.concatenate([np.zeros((m, 1)), seq], axis=1), axis=1)
        pos = h + np.arange(width)  # column of each row in seq
        lags = pos[:, None] - d * np.arange(w - 1, -1, -1)[None, :]  # (width, w), oldest first
        emb = (c[:, lags + 1] - c[:, lags + 1 - d]) / d  # (m, width, w)
        q = (emb - centre[:, None, None]).astype(np.float32)
        qn = np.einsum("mbw,mbw->mb", q, q)
        fresh = np.concatenate([q.transpose(0, 2, 1), qn[:, None, :]], axis=1)
        fresh[:, w][~valid] = np.inf
        cand = np.concatenate([mem, fresh], axis=2)  # (m, w + 1, R + width)
        qa = np.concatenate([q * np.float32(-2.0), np.ones((m, width, 1), np.float32)], axis=2)
        # Column i holds row t0 - R + i (t0: the chunk's first row). Row t0 + j may use
        # rows (t0 + j - excl - memory, t0 + j - excl]: columns (j + off, j + off + memory]
        # with off = R - excl - memory. Columns [width + off, off + memory] are in every
        # row's band; the width - 1 columns on either side are masked per row.
        off, mm = big_r - self.excl[k] - self.memory, self.memory
        core = np.matmul(qa, cand[:, :, width + off : off + mm + 1]).min(axis=2)
        left = np.matmul(qa, cand[:, :, off + 1 : off + width])
        right = np.matmul(qa, cand[:, :, off + mm + 1 : off + mm + width])
        left[:, ~self._left_ok[:width, : width - 1]] = np.inf
        right[:, ~self._right_ok[:width, : width - 1]] = np.inf
        best = np.minimum(
            core, np.minimum(left.min(axis=2, initial=np.inf), right.min(axis=2, initial=np.inf))
        )
        best = best.astype(np.float64) + qn
        # the ring keeps the last R columns of the sensor's valid rows
        n_valid = valid.sum(axis=1)
        if np.all(n_valid == width):
            ring = cand[:, :, width:]
        else:
            cols = n_valid[:, None] + np.arange(big_r)[None, :]
            ring = np.take_along_axis(cand, cols[:, None, :], axis=2)
        dist: _F64 = np.where(np.isfinite(best), np.sqrt(np.maximum(best, 0.0) / w), 0.0)
        return dist, ring

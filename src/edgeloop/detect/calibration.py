"""Self-calibration of a streaming raw score against its own recent history, per sensor.

A raw score (a distance in the values' unit) is judged against the bar
``max(floor, mean + z · std)``, the mean and std taken over the previous ``L`` learnt
raw scores of the sensor (zeros before the first ones): a noisy series raises its own
bar, a quiet one keeps the floor. What is learnt is the raw score **capped** at ``cap``
times the bar in force ``LAG`` rows earlier, so that the few huge scores of a change
(a jump to a new level, a burst) cannot inflate the bar for the next ``L`` rows and hide
the next anomaly. The cap uses the bar of a fixed number of rows earlier so that a chunk
of up to ``LAG`` rows is calibrated at once, whatever the blocks the rows arrived in.

Functions here are pure: arrays in, arrays out; rows of a chunk are left-aligned per
sensor (``valid`` marks them) and ``t`` holds each cell's row index in its sensor.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["LAG", "last_cols", "rolling_bar"]

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]
_Bool = npt.NDArray[np.bool_]

LAG = 256  # rows between a bar and the raw scores it caps (>= the rows of a chunk)


def rolling_bar(
    hist: _F64,
    lagged: _F64,
    raw: _F64,
    t: _I64,
    valid: _Bool,
    *,
    z: float,
    floor: _F64,
    cap: float,
    active: _Bool,
) -> tuple[_F64, _F64, _F64]:
    """The bar of each cell of a chunk, and the calibration state after the chunk.

    Args:
        hist: ``(m, L)`` the last ``L`` learnt raw scores per sensor, oldest first.
        lagged: ``(m, LAG)`` the bars of the previous ``LAG`` rows, oldest first (``inf``
            where no cap applies: before any bar is in force).
        raw: ``(m, width)`` raw scores of the chunk, ``width <= LAG``.
        t: ``(m, width)`` row index of each cell in its sensor.
        valid: ``(m, width)`` cells holding a row (left-aligned).
        z: std multiplier of the bar.
        floor: ``(m, width)`` the smallest bar of each cell.
        cap: learnt raw scores are capped at ``cap`` times the bar ``LAG`` rows earlier.
        active: ``(m, width)`` cells whose bar may cap later rows (past the warm-up).

    Returns:
        ``(bar, hist', lagged')``: the bar of each cell (from the rows before it only) and
        the two histories advanced by each sensor's valid rows.
    """
    m, width = raw.shape
    big_l = hist.shape[1]
    learnt = np.where(valid, np.minimum(raw, cap * lagged[:, :width]), 0.0)
    seq = np.concatenate([hist, learnt], axis=1)
    zero = np.zeros((m, 1))
    c1 = np.concatenate([zero, np.cumsum(seq, axis=1)], axis=1)
    c2 = np.concatenate([zero, np.cumsum(seq * seq, axis=1)], axis=1)
    j = np.arange(width)
    s1 = c1[:, big_l + j] - c1[:, j]
    s2 = c2[:, big_l + j] - c2[:, j]
    k = np.maximum(np.minimum(t, big_l), 1).astype(np.float64)
    mean = s1 / k
    std = np.sqrt(np.maximum(s2 / k - mean * mean, 0.0))
    bar: _F64 = np.maximum(floor, mean + z * std)
    n_valid = valid.sum(axis=1)
    new_hist = last_cols(seq, big_l, n_valid)
    kept = np.where(active, bar, np.inf)
    new_lagged = last_cols(np.concatenate([lagged, kept], axis=1), LAG, n_valid)
    return bar, new_hist, new_lagged


def last_cols(seq: _F64, keep: int, shift: _I64) -> _F64:
    """Per row r, the ``keep`` columns (axis 1) of ``seq`` from ``shift[r]`` on (a copy)."""
    cols = shift[:, None] + np.arange(keep)[None, :]
    out: _F64 = seq[np.arange(seq.shape[0])[:, None], cols]
    return out

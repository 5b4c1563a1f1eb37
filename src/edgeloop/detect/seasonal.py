"""Seasonal level comparison: the recent mean against the same time one season earlier.

Many slow metrics follow a daily cycle, and some anomalies are only visible against it:
a day whose busy hours never come looks, sample by sample and pattern by pattern, like
an ordinary quiet night. This channel compares the mean of a sensor's last ``window``
values with the mean of the ``window`` values one season (a day by default) earlier;
the absolute difference, in the values' unit, is the raw score.

The season is counted in rows: ``round(season / interval)``, the interval being the
median of the sensor's first ``INTERVALS`` time steps (so it is fixed before the first
scored row and never looks ahead). A season shorter than 2 rows or longer than the
kept history (``memory`` rows) turns the channel off for that sensor.

Functions here are pure; chunks are left-aligned per sensor as in
:mod:`edgeloop.detect.calibration`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edgeloop.detect.calibration import last_cols

__all__ = ["INTERVALS", "record_stamps", "season_rows", "seasonal_distance"]

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]
_Bool = npt.NDArray[np.bool_]

INTERVALS = 64  # time steps whose median sets a sensor's sampling interval


def record_stamps(stamps: _I64, seen: _I64, t_ns: _I64, valid: _Bool) -> _I64:
    """``stamps`` (m, INTERVALS + 1) with the chunk's timestamps of rows < INTERVALS + 1."""
    width = t_ns.shape[1]
    out = stamps.copy()
    row = seen[:, None] + np.arange(width)[None, :]
    keep = valid & (row <= INTERVALS)
    r, c = np.nonzero(keep)
    out[r, row[r, c]] = t_ns[r, c]
    return out


def season_rows(stamps: _I64, seen: _I64, season_ns: float, most: int) -> _I64:
    """Rows per season of sensors whose first ``INTERVALS`` steps are known, else 0.

    0 also for a sensor whose median step is not positive or whose season falls
    outside ``[2, most]`` rows.
    """
    step = np.median(np.diff(stamps, axis=1).astype(np.float64), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rows = np.where(step > 0, np.rint(season_ns / step), 0.0)
    ok = (seen > INTERVALS) & (rows >= 2) & (rows <= most)
    out: _I64 = np.where(ok, rows, 0).astype(np.int64)
    return out


def seasonal_distance(
    means: _F64, seq: _F64, history: int, window: int, period: _I64, t: _I64, valid: _Bool
) -> tuple[_F64, _F64]:
    """``|mean of the last window values − the same one period rows earlier|`` per cell.

    Args:
        means: ``(m, M)`` the window means of each sensor's previous ``M`` rows, oldest first.
        seq: ``(m, history + width)`` the values before the chunk, then the chunk's.
        history: columns of ``seq`` before the chunk (``>= window - 1``).
        window: values per mean.
        period: ``(m,)`` rows per season (0: off).
        t: ``(m, width)`` row index of each cell in its sensor.
        valid: ``(m, width)`` cells holding a row (left-aligned).

    Returns:
        ``(distance, means')``: 0 where the channel is off or both means are not yet
        made of the sensor's own values; the means ring advanced by the valid rows.
    """
    m, width = valid.shape
    big_m = means.shape[1]
    c = np.cumsum(np.concatenate([np.zeros((m, 1)), seq], axis=1), axis=1)
    pos = history + np.arange(width)
    now = (c[:, pos + 1] - c[:, pos + 1 - window]) / window
    cand = np.concatenate([means, now], axis=1)
    idx = big_m + np.arange(width)[None, :] - period[:, None]
    past = np.take_along_axis(cand, np.clip(idx, 0, big_m + width - 1), axis=1)
    on = (period[:, None] > 0) & (t >= period[:, None] + window - 1) & (t > INTERVALS) & valid
    dist: _F64 = np.where(on, np.abs(now - past), 0.0)
    return dist, last_cols(cand, big_m, valid.sum(axis=1))

"""Change points from a detector's per-row scores: where an alarm starts, ends, or jumps.

SKAB-style change-point scoring rewards the first detection soon after each change of
regime, and an anomaly has several: its start, its end, and often steps inside it (a
valve that closes in stages). :func:`alarm_changepoints` reads them off one series of
scores, causally (row ``t`` uses rows up to ``t``):

* the first row of an alarm (score reaches the threshold) and the first row after one;
* inside an alarm, a row whose score odds ``s / (1 - s)`` changed by more than
  ``ratio**2`` over the last ``lag`` rows — for scores of the form ``d**2 / (d**2 + c**2)``
  (robust and multivariate detectors) that is the distance ``d`` changing by more than
  ``ratio`` — at most one such row per ``refractory`` rows after any change point.

Unscored rows (score exactly 0, e.g. a detector's fit prefix) never make a jump.

>>> import numpy as np
>>> s = np.array([0, 0.1, 0.6, 0.6, 0.95, 0.95, 0.2], np.float32)
>>> np.flatnonzero(alarm_changepoints(s, lag=2, refractory=1)).tolist()
[2, 4, 6]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["alarm_changepoints"]


def alarm_changepoints(
    scores: npt.ArrayLike,
    threshold: float = 0.5,
    lag: int = 20,
    ratio: float = 1.5,
    refractory: int = 30,
) -> npt.NDArray[np.bool_]:
    """Change points of one machine's (or sensor's) rows in time order.

    Args:
        scores: scores in [0, 1], or booleans (alarms: then only the alarm edges).
        threshold: the score at which a row is in alarm.
        lag: rows back to compare with for a jump (>= 1).
        ratio: a jump is a change of the distance by more than this factor (> 1).
        refractory: rows after a change point in which no jump is reported.
    """
    if lag < 1 or not ratio > 1 or refractory < 0:
        raise ValueError(f"lag >= 1, ratio > 1, refractory >= 0 (got {lag}, {ratio}, {refractory})")
    s = np.asarray(scores)
    if s.ndim != 1:
        raise ValueError(f"scores: expected one 1-D series in time order (got shape {s.shape})")
    alarm = s if s.dtype == np.bool_ else s >= threshold
    edge = np.zeros(len(s), np.bool_)
    edge[1:] = alarm[1:] != alarm[:-1]
    if s.dtype == np.bool_ or len(s) <= lag:
        return edge
    p = np.clip(s.astype(np.float64), 1e-12, 1.0 - 1e-12)
    odds = np.log(p) - np.log1p(-p)
    jump = np.zeros(len(s), np.bool_)
    jump[lag:] = (
        alarm[lag:] & (s[:-lag] > 0) & (np.abs(odds[lag:] - odds[:-lag]) > 2.0 * np.log(ratio))
    )
    out = edge.copy()
    last = -(10**18)
    # Only candidate rows are visited: edges always count, a jump only after the
    # refractory period since the previous change point.
    for t in np.flatnonzero(edge | jump).tolist():
        if edge[t]:
            last = t
        elif t - last > refractory:
            out[t] = True
            last = t
    return out

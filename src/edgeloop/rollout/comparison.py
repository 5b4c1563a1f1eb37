"""Edge side of the evidence: compare challenger and champion scores on the same windows.

A node running both models (one acting, one in shadow) calls :func:`measure` once per
period with the two score arrays of the windows both scored, the challenger's inference
latencies and its error count; the result travels up as an
:class:`~edgeloop.rollout.policy.EdgeMeasurement`. Vectorized numpy; no I/O.

>>> import numpy as np
>>> champ = np.array([0.1, 0.2, 0.7, 0.1])
>>> chall = np.array([0.1, 0.6, 0.8, 0.2])
>>> m = measure("gw1", "v2", 0, 10, chall, champ, 0.5, 0.5, latency_ms=[1.0, 2.0])
>>> (m.windows, m.challenger_alerts, m.champion_alerts, m.agreements, m.score_shift)
(4, 2, 1, 3, 0.25)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edgeloop.errors import ConfigError
from edgeloop.rollout.policy import EdgeMeasurement


def ks_distance(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Two-sample Kolmogorov–Smirnov distance ``max |F_a - F_b|`` (0 when either is empty)."""
    xa = np.sort(np.asarray(a, dtype=np.float64).ravel())
    xb = np.sort(np.asarray(b, dtype=np.float64).ravel())
    if not xa.size or not xb.size:
        return 0.0
    grid = np.concatenate([xa, xb])
    fa = np.searchsorted(xa, grid, side="right") / xa.size
    fb = np.searchsorted(xb, grid, side="right") / xb.size
    return float(np.abs(fa - fb).max())


def measure(
    node: str,
    version: str,
    period_start_ns: int,
    period_end_ns: int,
    challenger: npt.ArrayLike,
    champion: npt.ArrayLike,
    challenger_threshold: float,
    champion_threshold: float,
    *,
    latency_ms: npt.ArrayLike = (),
    errors: int = 0,
) -> EdgeMeasurement:
    """Summarise one period of side-by-side scoring.

    Args:
        node, version: the reporting node and the challenger version.
        period_start_ns, period_end_ns: the period.
        challenger, champion: scores of the same windows, in the same order.
        challenger_threshold, champion_threshold: each model's alert threshold (a window
            alerts at or above it).
        latency_ms: the challenger's inference latencies in the period.
        errors: the challenger's failures in the period.

    Raises:
        ConfigError: the score arrays differ in length or hold non-finite values.
    """
    ch = np.asarray(challenger, dtype=np.float64).ravel()
    cp = np.asarray(champion, dtype=np.float64).ravel()
    if ch.shape != cp.shape:
        raise ConfigError(
            f"measure: challenger has {ch.size} scores, champion {cp.size}; they must score "
            "the same windows"
        )
    for name, arr in (("challenger", ch), ("champion", cp)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise ConfigError(f"measure: {name} scores: {bad} non-finite values")
    a_ch = ch >= challenger_threshold
    a_cp = cp >= champion_threshold
    lat = np.asarray(latency_ms, dtype=np.float64).ravel()
    lat = lat[np.isfinite(lat)]
    return EdgeMeasurement(
        node=node,
        version=version,
        period_start_ns=period_start_ns,
        period_end_ns=period_end_ns,
        windows=int(ch.size),
        challenger_alerts=int(np.count_nonzero(a_ch)),
        champion_alerts=int(np.count_nonzero(a_cp)),
        agreements=int(np.count_nonzero(a_ch == a_cp)),
        score_shift=ks_distance(ch, cp),
        latency_p99_ms=float(np.percentile(lat, 99)) if lat.size else 0.0,
        errors=errors,
    )

"""Rows of a block grouped by rank within their key, for streaming state updates.

A detector whose state advances row by row (an EWMA, a latch) takes a block of rows of
many keys (sensors, machines) one *rank* at a time: the first row of every key, then the
second, ... Each rank touches every key at most once, so one vectorized update per rank
serves all keys, and a key's rows are still taken in time order.

>>> import numpy as np
>>> [r.tolist() for r in ranks(np.array([5, 2, 5, 5]), np.array([30, 10, 10, 20]))]
[[1, 2], [3], [0]]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["ranks"]


def ranks(key: npt.ArrayLike, t: npt.ArrayLike) -> list[npt.NDArray[np.intp]]:
    """Row indices grouped by rank: the k-th row (by ``t``) of every key, for k = 0, 1, ..."""
    key, t = np.asarray(key), np.asarray(t)
    n = key.shape[0]
    if n == 0:
        return []
    order = np.lexsort((t, key))
    k = key[order]
    new = np.empty(n, np.bool_)
    new[0] = True
    np.not_equal(k[1:], k[:-1], out=new[1:])
    if new.all():  # one row per key: a single rank
        return [order]
    first = np.flatnonzero(new)
    rank = np.arange(n) - np.repeat(first, np.diff(np.append(first, n)))
    by_rank = order[np.argsort(rank, kind="stable")]
    bounds = np.cumsum(np.bincount(rank))
    return np.split(by_rank, bounds[:-1])

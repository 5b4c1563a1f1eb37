"""Local actions: callbacks a node fires within milliseconds of the data that warrants them.

An action is any ``Callable[[Event], None]`` registered by name. The node measures the
latency from the *arrival* of the frame that completed the triggering window to the
moment the callback is invoked, and keeps it in a :class:`LatencyRecorder`.

>>> reg = ActionRegistry()
>>> seen = []
>>> @reg.register("log")
... def _log(event):
...     seen.append(event)
>>> "log" in reg
True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgeloop.telemetry.records import Event

Action = Callable[["Event"], None]


class LatencyRecorder:
    """Bounded reservoir of latencies (ns); percentiles on demand.

    Keeps every value up to ``capacity`` and then a uniform reservoir sample, so memory
    stays bounded on a long-running node.
    """

    def __init__(self, capacity: int = 20_000, seed: int = 0) -> None:
        self._buf = np.empty(capacity, dtype=np.int64)
        self._n = 0
        self._seen = 0
        self._rng = np.random.default_rng(seed)

    def add(self, ns: int) -> None:
        self._seen += 1
        if self._n < self._buf.shape[0]:
            self._buf[self._n] = ns
            self._n += 1
            return
        j = int(self._rng.integers(0, self._seen))
        if j < self._buf.shape[0]:
            self._buf[j] = ns

    def samples(self) -> list[int]:
        """The retained latencies (ns), for merging several recorders."""
        return [int(x) for x in self._buf[: self._n]]

    @property
    def count(self) -> int:
        return self._seen

    def percentile_ms(self, q: float) -> float | None:
        """The ``q``-th percentile in milliseconds, or ``None`` when nothing was recorded."""
        if self._n == 0:
            return None
        return float(np.percentile(self._buf[: self._n], q)) / 1e6


class ActionRegistry:
    """Named local actions. Unknown names are a configuration error, found at start-up."""

    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}
        self.latency = LatencyRecorder()
        self.invocations: dict[str, int] = {}
        self.failures: dict[str, int] = {}

    def register(self, name: str) -> Callable[[Action], Action]:
        def deco(fn: Action) -> Action:
            self._actions[name] = fn
            return fn

        return deco

    def add(self, name: str, fn: Action) -> None:
        self._actions[name] = fn

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def names(self) -> list[str]:
        return sorted(self._actions)

    def fire(self, name: str, event: Event, arrival_ns: int) -> None:
        """Invoke action ``name`` for ``event``; record latency from ``arrival_ns``.

        ``arrival_ns`` is on the ``time.perf_counter_ns`` clock. A failing action is
        counted and does not stop the node.
        """
        fn = self._actions[name]
        self.latency.add(time.perf_counter_ns() - arrival_ns)
        self.invocations[name] = self.invocations.get(name, 0) + 1
        try:
            fn(event)
        except Exception:
            self.failures[name] = self.failures.get(name, 0) + 1

"""A hub job on a timer: the rollout ticker, the drift ticker, the retraining schedule.

:class:`Periodic` calls its job every ``every_s`` seconds in a daemon thread until
stopped. A failing call (the database unreachable, a refused run) is logged and counted
and the next period tries again; it never ends the thread. Several hub replicas may each
run the same job: the jobs serialize on the control-plane lock and a call with nothing to
do changes nothing.
"""

from __future__ import annotations

import logging
import threading
from typing import Self


class Periodic:
    """Run :meth:`job` every ``every_s`` seconds in a daemon thread named ``name``.

    Attributes:
        ticks: calls that returned.
        failures: calls that raised (logged on ``log``).
    """

    name = "periodic"
    log = logging.getLogger("edgeloop.hub")

    def __init__(self, every_s: float) -> None:
        if not every_s > 0:
            raise ValueError(f"{self.name} period: must be > 0 s, got {every_s}")
        self.every_s = every_s
        self.ticks = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=self.name)

    def job(self) -> None:
        """One call (subclasses)."""
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.job()
            except Exception:  # logged; the next period tries again
                self.failures += 1
                self.log.exception("%s failed", self.name)
                continue
            self.ticks += 1


__all__ = ["Periodic"]

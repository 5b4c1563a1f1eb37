"""Judge drift on a timer: ``DriftService.judge_due`` every few seconds (``hub serve
--drift-tick-s``), like :mod:`edgeloop.hub.rollout_ticker` for rollouts. Several hub
replicas may each run one: periods are judged under the control-plane lock, once."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgeloop.hub.drift_service import DriftService

log = logging.getLogger("edgeloop.hub.drift")


class DriftTicker:
    """Call ``service.judge_due()`` every ``every_s`` seconds in a daemon thread."""

    def __init__(self, service: DriftService, every_s: float = 10.0) -> None:
        if not every_s > 0:
            raise ValueError(f"drift tick period: must be > 0 s, got {every_s}")
        self.service = service
        self.every_s = every_s
        self.ticks = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="drift-ticker")

    def start(self) -> DriftTicker:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.service.judge_due()
            except Exception:  # logged; the next period tries again
                self.failures += 1
                log.exception("drift tick failed")
                continue
            self.ticks += 1


__all__ = ["DriftTicker"]

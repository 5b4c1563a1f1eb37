"""Drive the running rollout on a timer: ``ControlPlane.tick`` every few seconds.

Measurements posted by nodes judge a rollout as they arrive; a stage that gathers no
evidence still has to reach its ``stage_timeout_s`` (and roll back), and a stage whose
evidence is complete but whose ``min_duration_s`` has not passed yet has to be judged
again later. This thread does that. The decisions stay the pure state machine's; several
hub replicas may each run one (the control-plane lock serializes their ticks, and a tick
with nothing to decide changes nothing).
"""

from __future__ import annotations

import logging
import threading

from edgeloop.hub.control import ControlPlane

log = logging.getLogger("edgeloop.hub.rollout")


class RolloutTicker:
    """Call ``plane.tick()`` every ``every_s`` seconds in a daemon thread until stopped.

    A failing tick (e.g. the database is unreachable) is logged and retried on the next
    period; it never ends the thread.
    """

    def __init__(self, plane: ControlPlane, every_s: float = 10.0) -> None:
        if not every_s > 0:
            raise ValueError(f"rollout tick period: must be > 0 s, got {every_s}")
        self.plane = plane
        self.every_s = every_s
        self.ticks = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rollout-ticker")

    def start(self) -> RolloutTicker:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                rec = self.plane.tick()
            except Exception:  # logged; the next period tries again
                self.failures += 1
                log.exception("rollout tick failed")
                continue
            self.ticks += 1
            if rec is not None and rec.rollout.outcome != "running":
                log.info("rollout %d: %s", rec.id, rec.rollout.decisions[-1].reason)


__all__ = ["RolloutTicker"]

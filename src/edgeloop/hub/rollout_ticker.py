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

from edgeloop.hub.control import ControlPlane
from edgeloop.hub.periodic import Periodic


class RolloutTicker(Periodic):
    """Call ``plane.tick()`` every ``every_s`` seconds (:class:`Periodic`)."""

    name = "rollout-ticker"
    log = logging.getLogger("edgeloop.hub.rollout")

    def __init__(self, plane: ControlPlane, every_s: float = 10.0) -> None:
        super().__init__(every_s)
        self.plane = plane

    def job(self) -> None:
        rec = self.plane.tick()
        if rec is not None and rec.rollout.outcome != "running":
            self.log.info("rollout %d: %s", rec.id, rec.rollout.decisions[-1].reason)


__all__ = ["RolloutTicker"]

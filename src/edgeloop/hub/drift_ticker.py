"""Judge drift on a timer: ``DriftService.judge_due`` every few seconds (``hub serve
--drift-tick-s``), like :mod:`edgeloop.hub.rollout_ticker` for rollouts. Several hub
replicas may each run one: periods are judged under the control-plane lock, once."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from edgeloop.hub.periodic import Periodic

if TYPE_CHECKING:
    from edgeloop.hub.drift_service import DriftService


class DriftTicker(Periodic):
    """Call ``service.judge_due()`` every ``every_s`` seconds (:class:`Periodic`)."""

    name = "drift-ticker"
    log = logging.getLogger("edgeloop.hub.drift")

    def __init__(self, service: DriftService, every_s: float = 10.0) -> None:
        super().__init__(every_s)
        self.service = service

    def job(self) -> None:
        self.service.judge_due()


__all__ = ["DriftTicker"]

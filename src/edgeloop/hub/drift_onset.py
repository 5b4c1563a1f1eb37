"""Where a drift-triggered retraining run's data starts: the drift's onset, per champion.

A :class:`~edgeloop.drift.RetrainTrigger` fires when a streak of drifted periods reaches
``persistence``; the drift began at the streak's first period, not ``window_s`` back.
Training from the onset keeps the old regime out: a model trained on both regimes
drifted from the new one again and was retrained and promoted in a loop (drift scenario).

Several triggers may be needed before enough rows arrive (curated samples thin out under
drift), so the onset is kept while one champion acts: every trigger against that champion
trains from the first trigger's onset. A different champion (promoted, rolled back)
starts a new onset, and so does a kept onset older than ``max_age_ns`` (the retraining
``window_s``): a champion that drifts now and then over weeks is not retrained on every
regime since the first. Pure bookkeeping, in memory: after a hub restart the next trigger
starts a new onset.
"""

from __future__ import annotations

from edgeloop.drift import RetrainTrigger


def onset_ns(trigger: RetrainTrigger, period_ns: int) -> int:
    """The start of the streak's first drifted period (periods are ``t // period_ns``).

    >>> from edgeloop.drift import RetrainTrigger
    >>> onset_ns(RetrainTrigger(12, "*", 3, (), {}, ""), 60)  # periods 10, 11, 12
    600
    """
    return (trigger.period - trigger.streak + 1) * period_ns


class DriftOnset:
    """The onset retraining trains from, kept while one champion acts (module docstring).

    Not locked: ``DriftService`` delivers one trigger at a time.

    Args:
        period_ns: the drift service's period (``DriftService.period_ns``).
        max_age_ns: a kept onset more than this before the trigger's own is dropped
            (``None``: kept while the champion acts).
    """

    def __init__(self, period_ns: int, max_age_ns: int | None = None) -> None:
        self.period_ns = period_ns
        self.max_age_ns = max_age_ns
        self._kept: tuple[str | None, int] | None = None

    def since(self, champion: str | None, trigger: RetrainTrigger) -> int:
        """The ``since_ns`` of the run ``trigger`` starts while ``champion`` acts: the
        first onset seen under this champion, or this trigger's own after a change.

        >>> from edgeloop.drift import RetrainTrigger
        >>> o = DriftOnset(60)
        >>> o.since("v1", RetrainTrigger(11, "*", 2, (), {}, ""))
        600
        >>> o.since("v1", RetrainTrigger(13, "*", 2, (), {}, ""))  # same champion
        600
        >>> o.since("v2", RetrainTrigger(15, "*", 2, (), {}, ""))  # a new champion
        840
        >>> DriftOnset(60, max_age_ns=300).since("v2", RetrainTrigger(30, "*", 2, (), {}, ""))
        1740
        >>> o.max_age_ns = 300
        >>> o.since("v2", RetrainTrigger(30, "*", 2, (), {}, ""))  # 840 is too old
        1740
        """
        now = onset_ns(trigger, self.period_ns)
        stale = (
            self._kept is not None
            and self.max_age_ns is not None
            and now - self._kept[1] > self.max_age_ns
        )
        if self._kept is None or self._kept[0] != champion or stale:
            self._kept = (champion, now)
        return self._kept[1]


__all__ = ["DriftOnset", "onset_ns"]

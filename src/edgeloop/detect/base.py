"""The detector seam: streaming, state bounded per sensor, scores in [0, 1]."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from edgeloop.pipeline.types import Features, Scores


@runtime_checkable
class Detector(Protocol):
    """A streaming anomaly detector over feature blocks.

    ``score`` must be causal: a window's score depends only on windows seen before it
    (through ``learn``) and on itself. ``learn`` updates state with windows already
    scored; detectors that need no training still learn their baseline this way.
    """

    name: str

    def score(self, features: Features) -> Scores: ...

    def learn(self, features: Features, scores: Scores) -> None: ...

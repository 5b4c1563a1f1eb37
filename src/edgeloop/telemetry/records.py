"""Records that travel upstream: anomaly events and per-window summaries.

Both are immutable values. Summaries are columnar (one :class:`SummaryBatch` holds many
sensors' aggregates) because a node sends hundreds of them per period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

import numpy as np
import numpy.typing as npt

from edgeloop.telemetry.frame import Frame


class Severity(StrEnum):
    ANOMALY = "anomaly"
    ALARM = "alarm"


@dataclass(frozen=True, slots=True)
class Event:
    """An anomaly or alarm raised by a node, with the window context that explains it.

    Attributes:
        node: id of the node that raised it.
        machine: the asset concerned.
        sensor: name of the sensor whose features scored highest.
        severity: ``anomaly`` (worth a look) or ``alarm`` (act now).
        t_start_ns: start of the window that triggered the event.
        t_end_ns: end of that window (exclusive).
        detected_ns: the node clock when the decision was made.
        score: detector score in [0, 1].
        threshold: the threshold the score crossed.
        detector: name of the detector (or ``rule:<name>``).
        reason: a short human-readable reason.
        features: feature values of the triggering window.
        raw: raw samples around the event (the machine's sensors), if captured.
    """

    node: str
    machine: str
    sensor: str
    severity: Severity
    t_start_ns: int
    t_end_ns: int
    detected_ns: int
    score: float
    threshold: float
    detector: str
    reason: str = ""
    features: dict[str, float] = field(default_factory=dict)
    raw: Frame | None = None
    raw_sensors: tuple[str, ...] = ()


class SummaryField(IntEnum):
    COUNT = 0
    MEAN = 1
    STD = 2
    MIN = 3
    MAX = 4


@dataclass(frozen=True, slots=True)
class SummaryBatch:
    """Per-sensor aggregates over one summary period, as columns.

    Every ingested sample is covered by exactly one summary row; ``count`` says how
    many. The hub's accounting of ``samples_accounted`` relies on that.
    """

    sensor: npt.NDArray[np.uint32]
    t0_ns: npt.NDArray[np.int64]
    t1_ns: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]
    mean: npt.NDArray[np.float32]
    std: npt.NDArray[np.float32]
    min: npt.NDArray[np.float32]
    max: npt.NDArray[np.float32]
    sensor_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.sensor.shape[0])

    @property
    def samples(self) -> int:
        return int(self.count.sum())

    @classmethod
    def concat(cls, batches: Sequence[SummaryBatch]) -> SummaryBatch:
        if not batches:
            raise ValueError("concat of no summary batches")
        names = batches[0].sensor_names
        cols = {f: np.concatenate([getattr(b, f) for b in batches]) for f in _SUMMARY_COLS}
        return cls(**cols, sensor_names=names)


_SUMMARY_COLS = ("sensor", "t0_ns", "t1_ns", "count", "mean", "std", "min", "max")

"""Values that flow between pipeline stages and detectors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Windows:
    """Complete windows of one window group, one row per window.

    All rows share the same length ``w`` (count-based windows over fixed-rate sensors).

    Attributes:
        group: name of the window group (e.g. ``"vibration"``).
        sensor: catalog index of each window's sensor, shape ``(n,)``.
        t0_ns: timestamp of each window's first sample, shape ``(n,)``.
        t1_ns: timestamp of each window's last sample, shape ``(n,)``.
        values: the samples, shape ``(n, w)``, float32.
    """

    group: str
    sensor: npt.NDArray[np.uint32]
    t0_ns: npt.NDArray[np.int64]
    t1_ns: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.sensor.shape[0])


@dataclass(frozen=True, slots=True)
class Features:
    """Feature vectors of one window group, one row per window.

    Attributes:
        group: window group name.
        names: feature names, one per column (e.g. ``("mean", "std", ..., "band_0")``).
        sensor, t0_ns, t1_ns: as in :class:`Windows`.
        values: shape ``(n, len(names))``, float32.
    """

    group: str
    names: tuple[str, ...]
    sensor: npt.NDArray[np.uint32]
    t0_ns: npt.NDArray[np.int64]
    t1_ns: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.sensor.shape[0])


@dataclass(frozen=True, slots=True)
class Scores:
    """Detector output for a :class:`Features` block, one row per window.

    Attributes:
        score: anomaly score in [0, 1], shape ``(n,)``.
        threshold: the score at or above which a window is anomalous.
        confidence: in [0, 1]; low while a detector is still warming up.
        top_feature: index into ``Features.names`` of the most deviant feature per row
            (-1 when not applicable).
        detector: detector name.
    """

    score: npt.NDArray[np.float32]
    threshold: float
    confidence: npt.NDArray[np.float32]
    top_feature: npt.NDArray[np.int32]
    detector: str

    @property
    def anomalous(self) -> npt.NDArray[np.bool_]:
        return self.score >= self.threshold

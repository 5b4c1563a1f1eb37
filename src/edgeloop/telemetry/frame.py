"""Columnar micro-batches of telemetry.

A :class:`Frame` is the unit every pipeline stage works on: three numpy columns of
equal length (sensor index, timestamp in ns, value). A Python object per sample never
exists on the hot path; per-sample objects appear only at API boundaries.

Sensor *names* live in a :class:`SensorCatalog`; a frame carries the catalog index
(``uint32``) so that grouping by sensor is an integer operation.

>>> import numpy as np
>>> f = Frame.from_arrays([1, 0, 1], [30, 10, 20], [3.0, 1.0, 2.0])
>>> len(f)
3
>>> f.sorted().ts.tolist()
[10, 20, 30]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

SENSOR_DTYPE = np.uint32
TS_DTYPE = np.int64
VALUE_DTYPE = np.float32

SensorArray = npt.NDArray[np.uint32]
TsArray = npt.NDArray[np.int64]
ValueArray = npt.NDArray[np.float32]


class SensorKind(StrEnum):
    """What a sensor measures; decides which features a pipeline computes for it."""

    VIBRATION = "vibration"
    TEMPERATURE = "temperature"
    PRESSURE = "pressure"
    CURRENT = "current"
    GENERIC = "generic"


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """A sensor known to a node: its stable name, machine (asset), kind and nominal rate."""

    name: str
    machine: str
    kind: SensorKind = SensorKind.GENERIC
    rate_hz: float = 1.0
    unit: str = ""


@dataclass(slots=True)
class SensorCatalog:
    """Bidirectional map between sensor names and the ``uint32`` index used in frames.

    Indices are dense and assigned in registration order; a catalog only grows, so an
    index, once given, always names the same sensor.
    """

    specs: list[SensorSpec] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, specs: Iterable[SensorSpec]) -> SensorCatalog:
        cat = cls()
        for s in specs:
            cat.add(s)
        return cat

    def add(self, spec: SensorSpec) -> int:
        """Register ``spec`` and return its index (the existing one if already known)."""
        idx = self._index.get(spec.name)
        if idx is not None:
            return idx
        idx = len(self.specs)
        self.specs.append(spec)
        self._index[spec.name] = idx
        return idx

    def index(self, name: str) -> int:
        """Index of sensor ``name``; raises ``KeyError`` for an unknown sensor."""
        return self._index[name]

    def get(self, name: str) -> int | None:
        return self._index.get(name)

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, idx: int) -> SensorSpec:
        return self.specs[idx]

    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def indices_of_kind(self, kind: SensorKind) -> npt.NDArray[np.uint32]:
        return np.array([i for i, s in enumerate(self.specs) if s.kind == kind], dtype=SENSOR_DTYPE)

    def machines(self) -> list[str]:
        """Distinct machine names in registration order."""
        return list(dict.fromkeys(s.machine for s in self.specs))

    def machine_codes(self) -> npt.NDArray[np.int32]:
        """For each sensor index, the position of its machine in :meth:`machines`."""
        order = {m: i for i, m in enumerate(self.machines())}
        return np.array([order[s.machine] for s in self.specs], dtype=np.int32)


@dataclass(frozen=True, slots=True)
class Frame:
    """A batch of samples as three aligned columns.

    Attributes:
        sensor: catalog index of each sample's sensor (``uint32``).
        ts: sample time in nanoseconds since the Unix epoch (``int64``).
        value: the measurement (``float32``).
    """

    sensor: SensorArray
    ts: TsArray
    value: ValueArray

    def __post_init__(self) -> None:
        n = self.sensor.shape[0]
        if self.ts.shape[0] != n or self.value.shape[0] != n:
            raise ValueError(
                f"frame columns differ in length: sensor={n} ts={self.ts.shape[0]} "
                f"value={self.value.shape[0]}"
            )

    @classmethod
    def from_arrays(
        cls,
        sensor: npt.ArrayLike,
        ts: npt.ArrayLike,
        value: npt.ArrayLike,
    ) -> Frame:
        """Build a frame, converting each column to its canonical dtype."""
        return cls(
            np.ascontiguousarray(sensor, dtype=SENSOR_DTYPE),
            np.ascontiguousarray(ts, dtype=TS_DTYPE),
            np.ascontiguousarray(value, dtype=VALUE_DTYPE),
        )

    @classmethod
    def empty(cls) -> Frame:
        return cls(np.empty(0, SENSOR_DTYPE), np.empty(0, TS_DTYPE), np.empty(0, VALUE_DTYPE))

    @classmethod
    def concat(cls, frames: Sequence[Frame]) -> Frame:
        frames = [f for f in frames if len(f)]
        if not frames:
            return cls.empty()
        if len(frames) == 1:
            return frames[0]
        return cls(
            np.concatenate([f.sensor for f in frames]),
            np.concatenate([f.ts for f in frames]),
            np.concatenate([f.value for f in frames]),
        )

    def __len__(self) -> int:
        return int(self.sensor.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.sensor.nbytes + self.ts.nbytes + self.value.nbytes)

    def take(self, idx: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Frame:
        """Rows selected by an index array or boolean mask."""
        return Frame(self.sensor[idx], self.ts[idx], self.value[idx])

    def sorted(self) -> Frame:
        """Rows ordered by (sensor, ts); stable, so equal timestamps keep arrival order."""
        if len(self) < 2:
            return self
        order = np.lexsort((self.ts, self.sensor))
        return self.take(order)

    def is_sorted(self) -> bool:
        """True when rows are already grouped by sensor with time ascending inside each."""
        if len(self) < 2:
            return True
        ds = np.diff(self.sensor.astype(np.int64))
        if (ds < 0).any():
            return False
        same = ds == 0
        return bool((np.diff(self.ts)[same] >= 0).all())

    def between(self, t0_ns: int, t1_ns: int) -> Frame:
        """Rows with ``t0_ns <= ts < t1_ns``."""
        return self.take((self.ts >= t0_ns) & (self.ts < t1_ns))

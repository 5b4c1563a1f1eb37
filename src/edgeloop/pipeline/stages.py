"""Pure stages around the windowed path: sensor/value filters and the anonymiser.

:class:`FilterStage` drops samples from frames (by sensor kind, by name glob, or by
value range) and counts what it dropped per reason. :class:`Anonymiser` rewrites
records *going upstream* (:class:`Event`, :class:`SummaryBatch`): named fields are
dropped or replaced by a keyed hash ``h:<12 hex digits>`` (BLAKE2b with a secret key),
so the hub can still group by machine or sensor without learning their names, and
nobody without the key can test a guess.

>>> a = Anonymiser(b"k" * 16, hash_fields=("machine",))
>>> a.hash("press-1") == a.hash("press-1") != a.hash("press-2")
True
>>> a.hash("press-1")[:2], len(a.hash("press-1"))
('h:', 14)
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
from collections.abc import Collection, Sequence
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from edgeloop.errors import ConfigError
from edgeloop.telemetry.frame import Frame, SensorCatalog, SensorKind
from edgeloop.telemetry.records import Event, SummaryBatch

__all__ = ["ANON_FIELDS", "Anonymiser", "FilterMode", "FilterStage"]

FilterMode = Literal["keep", "drop", "range"]


class FilterStage:
    """Drop samples by sensor selection or value range; count the drops per reason.

    The *selection* is the sensors whose kind is in ``kinds`` (any kind if empty) and
    whose name matches one of the ``sensors`` globs (any name if empty).

    Args:
        catalog: the node's sensors; sensors registered later are classified lazily.
        mode: ``"keep"`` keeps only selected sensors, ``"drop"`` drops them, ``"range"``
            drops samples of selected sensors whose value lies outside ``value_range``
            (NaN included) and leaves other sensors untouched.
        kinds: sensor kinds of the selection.
        sensors: ``fnmatch`` globs over sensor names (e.g. ``"press-*/temp"``).
        value_range: ``(lo, hi)``, inclusive; required for ``"range"`` only.

    Attributes:
        dropped: samples dropped so far, per reason (``"sensor"``, ``"range"``).
    """

    def __init__(
        self,
        catalog: SensorCatalog,
        mode: FilterMode = "keep",
        kinds: Collection[SensorKind | str] = (),
        sensors: Sequence[str] = (),
        value_range: tuple[float, float] | None = None,
    ) -> None:
        if mode not in ("keep", "drop", "range"):
            raise ConfigError(f"filters.mode: must be keep, drop or range (got {mode!r})")
        if (mode == "range") != (value_range is not None):
            raise ConfigError("filters.range: required for mode 'range' and only there")
        if value_range is not None and not value_range[0] <= value_range[1]:
            raise ConfigError(f"filters.range: lo must be <= hi (got {value_range})")
        self.catalog = catalog
        self.mode: FilterMode = mode
        self.kinds = frozenset(SensorKind(k) for k in kinds)
        self.globs = tuple(sensors)
        self.value_range = value_range
        self.dropped: dict[str, int] = {"sensor": 0, "range": 0}
        self._selected = np.zeros(0, np.bool_)

    def selects(self, index: int) -> bool:
        """Whether catalog sensor ``index`` belongs to this filter's selection."""
        spec = self.catalog[index]
        if self.kinds and spec.kind not in self.kinds:
            return False
        return not self.globs or any(fnmatch.fnmatchcase(spec.name, g) for g in self.globs)

    def _selection(self, max_index: int) -> npt.NDArray[np.bool_]:
        """Selection flag per sensor index up to ``max_index`` (unknown: not selected)."""
        known = self._selected.shape[0]
        if len(self.catalog) > known:  # the catalog grew: classify the newcomers once
            extra = np.array([self.selects(i) for i in range(known, len(self.catalog))])
            self._selected = np.concatenate([self._selected, extra.astype(np.bool_)])
        if max_index >= self._selected.shape[0]:
            pad = np.zeros(max_index + 1 - self._selected.shape[0], np.bool_)
            return np.concatenate([self._selected, pad])
        return self._selected

    def process(self, frame: Frame, now_ns: int = 0) -> Frame:
        """The samples of ``frame`` that pass; ``frame`` itself when all pass."""
        if len(frame) == 0:
            return frame
        sel = self._selection(int(frame.sensor.max()))[frame.sensor]
        if self.mode == "keep":
            keep, reason = sel, "sensor"
        elif self.mode == "drop":
            keep, reason = ~sel, "sensor"
        else:
            assert self.value_range is not None
            lo, hi = self.value_range
            v = frame.value
            # NaN fails both comparisons, so it is dropped as out of range.
            keep, reason = ~sel | ((v >= lo) & (v <= hi)), "range"
        n_keep = int(np.count_nonzero(keep))
        if n_keep == len(frame):
            return frame
        self.dropped[reason] += len(frame) - n_keep
        return frame.take(keep)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


ANON_FIELDS = ("node", "machine", "sensor", "detector", "reason", "features", "raw")
"""Fields the :class:`Anonymiser` can drop; all but ``features`` and ``raw`` can be hashed.

``sensor`` covers every place a sensor name appears: ``Event.sensor``,
``Event.raw_sensors`` and ``SummaryBatch.sensor_names``; ``raw`` covers ``Event.raw``
and ``Event.raw_sensors``.
"""
_HASHABLE = frozenset(ANON_FIELDS) - {"features", "raw"}

R = TypeVar("R", Event, SummaryBatch)


class Anonymiser:
    """Drop or keyed-hash identifying fields of upstream records. Pure and deterministic.

    Args:
        key: the secret hash key (1..64 bytes), from node configuration.
        hash_fields: fields replaced by ``h:<blake2b hex 12>``.
        drop_fields: fields removed (set to their empty value).
    """

    def __init__(
        self, key: bytes, hash_fields: Sequence[str] = (), drop_fields: Sequence[str] = ()
    ) -> None:
        bad = [f for f in hash_fields if f not in _HASHABLE]
        bad += [f for f in drop_fields if f not in ANON_FIELDS]
        if bad:
            raise ConfigError(
                f"anonymise: cannot anonymise {bad} (hash: {sorted(_HASHABLE)}; "
                f"drop: {list(ANON_FIELDS)})"
            )
        both = set(hash_fields) & set(drop_fields)
        if both:
            raise ConfigError(f"anonymise: {sorted(both)} both hashed and dropped")
        if hash_fields and not 1 <= len(key) <= 64:
            raise ConfigError(f"anonymise.key: must be 1..64 bytes (got {len(key)})")
        self._key = bytes(key)
        self.hash_fields = frozenset(hash_fields)
        self.drop_fields = frozenset(drop_fields)
        self._memo: dict[str, str] = {}

    def hash(self, value: str) -> str:
        """``h:`` and the first 12 hex digits of the keyed BLAKE2b of ``value``."""
        h = self._memo.get(value)
        if h is None:
            digest = _blake2b(value.encode(), self._key)
            h = self._memo[value] = "h:" + digest
            if len(self._memo) > 100_000:  # names are few; bound it anyway
                self._memo.clear()
        return h

    def _str(self, field: str, value: str) -> str:
        if field in self.drop_fields:
            return ""
        return self.hash(value) if field in self.hash_fields and value else value

    def _names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        if "sensor" in self.drop_fields:
            return ()
        if "sensor" in self.hash_fields:
            return tuple(self.hash(n) for n in names)
        return names

    def event(self, e: Event) -> Event:
        """``e`` with its identifying fields dropped or hashed."""
        drop = self.drop_fields
        raw_sensors = () if "raw" in drop else self._names(e.raw_sensors)
        return dataclasses.replace(
            e,
            node=self._str("node", e.node),
            machine=self._str("machine", e.machine),
            sensor=self._str("sensor", e.sensor),
            detector=self._str("detector", e.detector),
            reason=self._str("reason", e.reason),
            features={} if "features" in drop else e.features,
            raw=None if "raw" in drop else e.raw,
            raw_sensors=raw_sensors,
        )

    def summary(self, b: SummaryBatch) -> SummaryBatch:
        """``b`` with its sensor names dropped or hashed (indices stay)."""
        return dataclasses.replace(b, sensor_names=self._names(b.sensor_names))

    def process(self, record: R) -> R:
        """Dispatch on the record type (:class:`Event` or :class:`SummaryBatch`)."""
        if isinstance(record, Event):
            return self.event(record)
        return self.summary(record)


def _blake2b(data: bytes, key: bytes) -> str:
    return hashlib.blake2b(data, key=key, digest_size=6).hexdigest()

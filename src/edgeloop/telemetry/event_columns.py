"""Events as columns: many :class:`~edgeloop.telemetry.records.Event` values without a
Python object per event.

:class:`EventColumns` is what the codec decodes an events payload into and what the hub
stores from. It is a ``Sequence[Event]``: indexing or iterating builds the events (for
callers that want them one by one); column-wise consumers read the arrays.

Strings (node, machine, sensor, severity, detector, reason, feature keys, raw sensor
names) are one table, :attr:`EventColumns.strings`; the columns hold ``uint32`` indices
into it, so a name repeated by every event is stored once. Variable-length parts
(features, raw sensor names, raw samples) are flat arrays cut per event by offsets
(``offsets[i]:offsets[i + 1]`` are event ``i``'s items).

>>> from edgeloop.telemetry.records import Event, Severity
>>> e = Event("gw1", "m1", "m1.vib", Severity.ALARM, 10, 20, 30, 0.9, 0.8, "z", "hot",
...           features={"rms": 2.5})
>>> cols = EventColumns.from_events([e, e])
>>> len(cols), cols.strings[cols.codes[CODE_COLUMNS.index("machine")][1]]
(2, 'm1')
>>> cols[1] == e
True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from edgeloop.telemetry.frame import Frame
from edgeloop.telemetry.records import Event, Severity

CODE_COLUMNS = ("node", "machine", "sensor", "severity", "detector", "reason")
"""The string-valued fields, in the row order of :attr:`EventColumns.codes`."""
TIME_COLUMNS = ("t_start_ns", "t_end_ns", "detected_ns")
"""The int64 fields, in the row order of :attr:`EventColumns.times`."""
SCORE_COLUMNS = ("score", "threshold")
"""The float64 fields, in the row order of :attr:`EventColumns.scores`."""

_SEVERITIES = {s.value: s for s in Severity}


@dataclass(frozen=True, eq=False)
class EventColumns(Sequence[Event]):
    """``n`` events as columns (see the module docstring).

    Attributes:
        strings: the string table every ``uint32`` code below indexes.
        codes: ``(6, n)`` codes of :data:`CODE_COLUMNS`.
        times: ``(3, n)`` int64 values of :data:`TIME_COLUMNS`.
        scores: ``(2, n)`` float64 values of :data:`SCORE_COLUMNS`.
        feature_offsets: ``(n + 1,)`` cuts of ``feature_keys`` / ``feature_values``.
        feature_keys: codes of the feature names, event after event.
        feature_values: the feature values (float64), aligned with ``feature_keys``.
        raw_sensor_offsets: ``(n + 1,)`` cuts of ``raw_sensor_names``.
        raw_sensor_names: codes of each event's ``raw_sensors``, event after event.
        raw_offsets: ``(n + 1,)`` cuts of ``raw`` (the samples of each event).
        has_raw: ``(n,)`` whether the event's ``raw`` is a frame (``False``: ``None``).
        raw: every event's raw samples, concatenated; ``sensor`` indexes the event's
            own ``raw_sensors``.
        wire: the encoded payload these columns were decoded from, when they were
            decoded from the current wire version (``b""`` otherwise): a store can keep
            it as it is instead of encoding the columns again.
    """

    strings: tuple[str, ...]
    codes: npt.NDArray[np.uint32]
    times: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]
    feature_offsets: npt.NDArray[np.int64]
    feature_keys: npt.NDArray[np.uint32]
    feature_values: npt.NDArray[np.float64]
    raw_sensor_offsets: npt.NDArray[np.int64]
    raw_sensor_names: npt.NDArray[np.uint32]
    raw_offsets: npt.NDArray[np.int64]
    has_raw: npt.NDArray[np.bool_]
    raw: Frame
    wire: bytes = b""

    def __len__(self) -> int:
        return int(self.codes.shape[1])

    def code(self, name: str) -> npt.NDArray[np.uint32]:
        """The codes of one string field (a name of :data:`CODE_COLUMNS`)."""
        out: npt.NDArray[np.uint32] = self.codes[CODE_COLUMNS.index(name)]
        return out

    def time(self, name: str) -> npt.NDArray[np.int64]:
        """One int64 field (a name of :data:`TIME_COLUMNS`)."""
        out: npt.NDArray[np.int64] = self.times[TIME_COLUMNS.index(name)]
        return out

    def score(self, name: str) -> npt.NDArray[np.float64]:
        """One float64 field (a name of :data:`SCORE_COLUMNS`)."""
        out: npt.NDArray[np.float64] = self.scores[SCORE_COLUMNS.index(name)]
        return out

    @overload
    def __getitem__(self, i: int) -> Event: ...

    @overload
    def __getitem__(self, i: slice) -> list[Event]: ...

    def __getitem__(self, i: int | slice) -> Event | list[Event]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"event {i} out of range ({n} events)")
        return self._event(i % n)

    def __iter__(self) -> Iterator[Event]:
        return (self._event(i) for i in range(len(self)))

    def features(self, i: int) -> dict[str, float]:
        """Event ``i``'s features."""
        a, b = int(self.feature_offsets[i]), int(self.feature_offsets[i + 1])
        s = self.strings
        keys = self.feature_keys[a:b].tolist()
        return {s[k]: v for k, v in zip(keys, self.feature_values[a:b].tolist(), strict=True)}

    def raw_sensors(self, i: int) -> tuple[str, ...]:
        """Event ``i``'s raw sensor names."""
        a, b = int(self.raw_sensor_offsets[i]), int(self.raw_sensor_offsets[i + 1])
        s = self.strings
        return tuple(s[k] for k in self.raw_sensor_names[a:b].tolist())

    def raw_frame(self, i: int) -> Frame | None:
        """Event ``i``'s raw samples (indices into :meth:`raw_sensors`), or ``None``."""
        if not self.has_raw[i]:
            return None
        a, b = int(self.raw_offsets[i]), int(self.raw_offsets[i + 1])
        r = self.raw
        return Frame(r.sensor[a:b].copy(), r.ts[a:b].copy(), r.value[a:b].copy())

    def _event(self, i: int) -> Event:
        s = self.strings
        node, machine, sensor, severity, detector, reason = (s[c] for c in self.codes[:, i])
        t_start, t_end, detected = (int(x) for x in self.times[:, i])
        score, threshold = (float(x) for x in self.scores[:, i])
        return Event(
            node=node,
            machine=machine,
            sensor=sensor,
            severity=_SEVERITIES.get(severity, severity),  # type: ignore[arg-type]
            t_start_ns=t_start,
            t_end_ns=t_end,
            detected_ns=detected,
            score=score,
            threshold=threshold,
            detector=detector,
            reason=reason,
            features=self.features(i),
            raw=self.raw_frame(i),
            raw_sensors=self.raw_sensors(i),
        )

    @classmethod
    def from_events(cls, events: Sequence[Event]) -> EventColumns:
        """Columns of ``events`` (the sender's side: one pass over the events).

        Raises:
            TypeError: an item is not an :class:`Event`.
        """
        table: dict[str, int] = {}
        code = table.setdefault
        codes: list[list[int]] = [[] for _ in CODE_COLUMNS]
        times: list[list[int]] = [[] for _ in TIME_COLUMNS]
        scores: list[list[float]] = [[] for _ in SCORE_COLUMNS]
        f_count: list[int] = []
        f_keys: list[int] = []
        f_values: list[float] = []
        r_count: list[int] = []
        r_names: list[int] = []
        raw_count: list[int] = []
        has_raw: list[bool] = []
        frames: list[Frame] = []
        for i, e in enumerate(events):
            if not isinstance(e, Event):
                raise TypeError(f"events[{i}]: expected Event, got {type(e).__name__}")
            severity = str(getattr(e.severity, "value", e.severity))
            for col, word in zip(
                codes,
                (e.node, e.machine, e.sensor, severity, e.detector, e.reason),
                strict=True,
            ):
                col.append(code(word, len(table)))
            for col, t in zip(times, (e.t_start_ns, e.t_end_ns, e.detected_ns), strict=True):
                col.append(int(t))
            scores[0].append(float(e.score))
            scores[1].append(float(e.threshold))
            f_count.append(len(e.features))
            for k, v in e.features.items():
                f_keys.append(code(str(k), len(table)))
                f_values.append(float(v))
            r_count.append(len(e.raw_sensors))
            r_names.extend(code(str(s), len(table)) for s in e.raw_sensors)
            has_raw.append(e.raw is not None)
            raw_count.append(0 if e.raw is None else len(e.raw))
            if e.raw is not None and len(e.raw):
                frames.append(e.raw)
        raw = Frame.concat(frames) if frames else Frame.empty()
        return cls(
            strings=tuple(table),
            codes=np.array(codes, dtype=np.uint32).reshape(len(CODE_COLUMNS), -1),
            times=np.array(times, dtype=np.int64).reshape(len(TIME_COLUMNS), -1),
            scores=np.array(scores, dtype=np.float64).reshape(len(SCORE_COLUMNS), -1),
            feature_offsets=offsets(f_count),
            feature_keys=np.array(f_keys, dtype=np.uint32),
            feature_values=np.array(f_values, dtype=np.float64),
            raw_sensor_offsets=offsets(r_count),
            raw_sensor_names=np.array(r_names, dtype=np.uint32),
            raw_offsets=offsets(raw_count),
            has_raw=np.array(has_raw, dtype=bool),
            raw=raw,
        )


def offsets(counts: Any) -> npt.NDArray[np.int64]:
    """Cut points ``[0, c0, c0 + c1, ...]`` of consecutive runs of ``counts`` items."""
    c = np.asarray(counts, dtype=np.int64)
    out = np.zeros(c.shape[0] + 1, dtype=np.int64)
    np.cumsum(c, out=out[1:])
    return out


__all__ = ["CODE_COLUMNS", "SCORE_COLUMNS", "TIME_COLUMNS", "EventColumns", "offsets"]

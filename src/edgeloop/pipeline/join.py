"""Join the per-sensor feature rows of one machine into one multivariate row.

A window group with ``join: machine`` is scored machine by machine: the feature rows of
a machine's sensors whose windows end at the same time become one row whose columns are
``<channel>.<feature>`` for every channel of the machine, in a fixed order. The channel
of a sensor is its name without the ``<machine>.`` (or ``<machine>/``) prefix, so that
machines with the same sensors share one column layout; the layout is fixed by the
first machine of the group (channels in catalog order), and every machine must have the
same channels.

Rows of a (machine, time) key that are not all there yet are carried to the next block
(a live node may get one machine's sensors in different frames). A carried key is given
up, and counted in :attr:`Joiner.incomplete`, once a later key of the same machine is
complete: a sensor that missed a time step (a rejected sample) does not hold up the rest.
Memory is bounded by the keys still open per machine.

>>> import numpy as np
>>> from edgeloop.pipeline.types import Features
>>> j = Joiner(machine=[0, 0], channel=["a", "b"])
>>> f = Features("g", ("mean",), np.array([0, 1, 0, 1], np.uint32),
...     np.array([1, 1, 2, 2]), np.array([1, 1, 2, 2]),
...     np.array([[1.0], [10.0], [2.0], [20.0]], np.float32))
>>> out = j.process(f)
>>> out.names, out.values.tolist(), out.sensor.tolist()
(('a.mean', 'b.mean'), [[1.0, 10.0], [2.0, 20.0]], [0, 0])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edgeloop.errors import ConfigError
from edgeloop.pipeline.types import Features
from edgeloop.telemetry.frame import SENSOR_DTYPE, TS_DTYPE, VALUE_DTYPE, SensorCatalog

__all__ = ["Joiner", "catalog_layout", "channel_of", "joiner_for"]


def channel_of(name: str, machine: str) -> str:
    """A sensor's channel: its name without the ``<machine>.`` / ``<machine>/`` prefix."""
    for sep in (".", "/"):
        if machine and name.startswith(machine + sep):
            return name[len(machine) + 1 :]
    return name


class Joiner:
    """Joins feature rows by (machine, window end).

    Args:
        machine: per catalog index, the machine number of the sensor (-1: not joined).
        channel: per catalog index, the sensor's channel name.
        sensors: the catalog indices of the group (default: every index given).

    The output row of a machine carries, as ``sensor``, the catalog index of the
    machine's first sensor in the group: detectors key their state by it.
    """

    def __init__(
        self,
        machine: Sequence[int],
        channel: Sequence[str],
        sensors: Sequence[int] | npt.NDArray[np.uint32] | None = None,
    ) -> None:
        self._machine_of = np.asarray(machine, np.int64)
        self._channel_names = list(channel)
        self.channels: tuple[str, ...] = ()
        self._slot = np.full(len(self._machine_of), -1, np.int64)
        self._rep = np.zeros(0, np.int64)
        self.incomplete = 0
        self._carry: Features | None = None
        idx = range(len(self._machine_of)) if sensors is None else [int(i) for i in sensors]
        self.add_sensors(idx)

    def grow(self, machine: Sequence[int], channel: Sequence[str]) -> None:
        """Take the machine numbers and channels of a catalog that has grown."""
        n_old = len(self._machine_of)
        self._machine_of = np.asarray(machine, np.int64)
        self._channel_names = list(channel)
        slot = np.full(len(self._machine_of), -1, np.int64)
        slot[:n_old] = self._slot
        self._slot = slot

    def add_sensors(self, sensors: Sequence[int] | npt.NDArray[np.uint32]) -> None:
        """Place more sensors (catalog indices) in the column layout."""
        sensors = [int(s) for s in sensors]
        if not sensors:
            return
        m = self._machine_of[sensors]
        if not self.channels:
            first = m[0]
            self.channels = tuple(
                self._channel_names[s] for s, mi in zip(sensors, m, strict=True) if mi == first
            )
            if len(set(self.channels)) != len(self.channels):
                raise ConfigError(f"join: channel names repeat within a machine: {self.channels}")
        col = {c: i for i, c in enumerate(self.channels)}
        problems = []
        for s, mi in zip(sensors, m, strict=True):
            c = self._channel_names[s]
            if c not in col:
                problems.append(f"sensor {s} ({c!r}) is not a channel of {list(self.channels)}")
                continue
            self._slot[s] = col[c]
            if mi >= len(self._rep):
                grown = np.full(mi + 1, -1, np.int64)
                grown[: len(self._rep)] = self._rep
                self._rep = grown
            if self._rep[mi] < 0 or s < self._rep[mi]:
                self._rep[mi] = s
        if problems:
            raise ConfigError("join: machines must share their channels: " + "; ".join(problems))

    def process(self, feats: Features) -> Features:
        """Joined rows completed by ``feats`` (plus carried rows), time-ordered per machine."""
        if self._carry is not None and len(self._carry):
            feats = _concat(self._carry, feats)
            self._carry = None
        r = len(self.channels)
        names = tuple(f"{c}.{n}" for c in self.channels for n in feats.names)
        if len(feats) == 0:
            return _empty(feats.group, names)
        sensor = feats.sensor.astype(np.int64)
        mach = self._machine_of[sensor]
        slot = self._slot[sensor]
        order = np.lexsort((slot, feats.t1_ns, mach))
        mach, t1, slot = mach[order], feats.t1_ns[order], slot[order]
        new_key = np.ones(len(order), bool)
        new_key[1:] = (mach[1:] != mach[:-1]) | (t1[1:] != t1[:-1])
        starts = np.flatnonzero(new_key)
        counts = np.diff(np.append(starts, len(order)))
        # a key is complete with one row per channel (a repeated channel: not complete)
        dup = np.zeros(len(order), bool)
        dup[1:] = ~new_key[1:] & (slot[1:] == slot[:-1])
        key_id = np.cumsum(new_key) - 1
        has_dup = np.bincount(key_id, weights=dup, minlength=len(starts)) > 0
        complete = (counts == r) & ~has_dup
        key_mach, key_t1 = mach[starts], t1[starts]
        # an open key is given up once a later key of its machine is complete
        last_done = np.full(int(mach.max()) + 1, np.iinfo(np.int64).min)
        np.maximum.at(last_done, key_mach[complete], key_t1[complete])
        stale = ~complete & (key_t1 < last_done[key_mach])
        self.incomplete += int(stale.sum())
        keep_open = ~complete & ~stale
        if keep_open.any():
            rows = order[keep_open[key_id]]
            self._carry = _take(feats, rows)
        done = np.flatnonzero(complete)
        k, f = len(done), feats.values.shape[1]
        if k == 0:
            return _empty(feats.group, names)
        rows = order[complete[key_id]].reshape(k, r)  # slots ascending inside each key
        values = feats.values[rows].reshape(k, r * f)
        return Features(
            group=feats.group,
            names=names,
            sensor=self._rep[key_mach[done]].astype(SENSOR_DTYPE),
            t0_ns=feats.t0_ns[rows].min(axis=1),
            t1_ns=key_t1[done],
            values=np.ascontiguousarray(values, dtype=VALUE_DTYPE),
        )


def catalog_layout(catalog: SensorCatalog) -> tuple[list[int], list[str]]:
    """Per catalog index: machine number (by first appearance) and channel name."""
    machines: dict[str, int] = {}
    machine = [machines.setdefault(s.machine, len(machines)) for s in catalog.specs]
    return machine, [channel_of(s.name, s.machine) for s in catalog.specs]


def joiner_for(catalog: SensorCatalog, sensors: npt.NDArray[np.uint32]) -> Joiner:
    """A :class:`Joiner` for the group ``sensors`` of ``catalog`` (machines by name)."""
    machine, channel = catalog_layout(catalog)
    return Joiner(machine, channel, sensors)


def _take(f: Features, rows: npt.NDArray[np.intp]) -> Features:
    return Features(f.group, f.names, f.sensor[rows], f.t0_ns[rows], f.t1_ns[rows], f.values[rows])


def _concat(a: Features, b: Features) -> Features:
    return Features(
        b.group,
        b.names,
        np.concatenate([a.sensor, b.sensor]),
        np.concatenate([a.t0_ns, b.t0_ns]),
        np.concatenate([a.t1_ns, b.t1_ns]),
        np.concatenate([a.values, b.values]),
    )


def _empty(group: str, names: tuple[str, ...]) -> Features:
    return Features(
        group,
        names,
        np.empty(0, SENSOR_DTYPE),
        np.empty(0, TS_DTYPE),
        np.empty(0, TS_DTYPE),
        np.empty((0, len(names)), VALUE_DTYPE),
    )

"""Fault models with ground-truth labels, and a seeded fault scheduler.

A :class:`FaultSpec` says what goes wrong, where and when; the simulator
(:mod:`edgeloop.sim.factory`) applies it to the signals and publishes its
:class:`FaultLabel` as ground truth. Every kind touches only the sensors its label names
and only samples with ``start_ns <= ts < end_ns``; outside that window the telemetry is
bit-identical to a run without the fault.

Magnitudes (``severity=1``) are realistic in kind but deliberately unambiguous, so a
sound detector over 0.5 s vibration windows / 1 s process windows catches each fault
within a window or two of onset:

* ``bearing_wear`` — impacts at the outer-race defect frequency (``bearing_ratio`` x shaft
  speed, ~3.6x) each ringing a structural resonance (550-800 Hz, decay 3 ms), amplitude
  modulated by shaft rotation. Peak impact amplitude grows linearly from 1.2x to 3x the
  machine's 1x vibration amplitude: in the first second the 500-1000 Hz band holds 4-8x
  its normal energy (kurtosis ~2 -> ~2.5, RMS +12 %), by the end 13-35x (kurtosis ~4).
  Early real wear is subtler, but a fault that needs a spectral expert to see makes a
  poor benchmark label; the spectral bands of a 1024-sample window see this at once.
* ``imbalance`` — the 1x (shaft-rate) component rises 3x on the radial axes (x, y) and
  1.6x on the axial axis (z), over a 0.25 s onset: overall RMS ~2.5x on x/y. ISO 10816
  severity zones are a factor ~2.5 apart, so this is "one zone worse".
* ``overheating`` — temperature rises at 2 degC/s for the first 75 % of the fault, then
  cools back to normal by ``end_ns`` (the whole excursion stays inside the label). Under
  the default load temperature moves < 0.02 degC/s with sensor noise 0.15 degC, so the
  excursion is +2 degC (13 sigma) after 1 s and peaks at +4.5 degC or more.
* ``stuck_sensor`` — one sensor repeats its last value before onset exactly: std and
  peak-to-peak are exactly 0, which noise never produces. (A plain z-score of a 10-sample
  std sees only ~4 sigma, since such a std varies +-24 %; detectors should treat exact
  zero variance after a noisy baseline as the anomaly it is.)
* ``dropout`` — one sensor emits no samples at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from edgeloop.errors import ConfigError

F64 = npt.NDArray[np.float64]

VIB_AXES = ("vib_x", "vib_y", "vib_z")
PROCESS_SENSORS = ("temp", "pressure", "current")
SENSOR_SUFFIXES = VIB_AXES + PROCESS_SENSORS
"""Sensor name suffixes of every simulated machine, in catalog order."""

# Magnitudes at severity 1; see the module docstring for the reasoning.
BEARING_ONSET_AMP = 1.2
BEARING_PEAK_AMP = 3.0
BEARING_DECAY_S = 0.003
BEARING_AXIS_GAIN = (1.0, 0.7, 0.4)
IMBALANCE_GAIN = (3.0, 3.0, 1.6)
IMBALANCE_ONSET_S = 0.25
OVERHEAT_RATE_C_PER_S = 2.0
OVERHEAT_RISE_FRACTION = 0.75


class FaultKind(StrEnum):
    """The kinds of fault the simulator can inject."""

    BEARING_WEAR = "bearing_wear"
    IMBALANCE = "imbalance"
    OVERHEATING = "overheating"
    STUCK_SENSOR = "stuck_sensor"
    DROPOUT = "dropout"


_SENSOR_FAULTS = (FaultKind.STUCK_SENSOR, FaultKind.DROPOUT)


@dataclass(frozen=True, slots=True)
class FaultLabel:
    """Ground truth: ``machine`` had fault ``kind`` on ``sensors`` during [start, end)."""

    machine: str
    kind: FaultKind
    start_ns: int
    end_ns: int
    sensors: tuple[str, ...]

    def covers(self, ts_ns: int) -> bool:
        """True when ``ts_ns`` falls inside the fault window."""
        return self.start_ns <= ts_ns < self.end_ns


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault to inject.

    Attributes:
        kind: what goes wrong.
        machine: the machine name (e.g. ``"gw1.m03"``).
        start_ns: first affected timestamp (inclusive).
        end_ns: end of the fault (exclusive).
        sensor: full sensor name, required for ``stuck_sensor`` and ``dropout``
            (e.g. ``"gw1.m03.temp"``), ignored otherwise.
        severity: multiplies the fault's magnitude (1.0 = the documented default).
    """

    kind: FaultKind
    machine: str
    start_ns: int
    end_ns: int
    sensor: str | None = None
    severity: float = 1.0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", FaultKind(self.kind))
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise ConfigError(f"fault.kind: unknown kind {self.kind!r} (known: {known})") from None
        if self.end_ns <= self.start_ns:
            raise ConfigError(
                f"fault.end_ns: must be after start_ns (got {self.end_ns} <= {self.start_ns})"
            )
        if not self.severity > 0:
            raise ConfigError(f"fault.severity: must be > 0 (got {self.severity})")
        if self.kind in _SENSOR_FAULTS:
            if self.sensor is None:
                raise ConfigError(f"fault.sensor: required for kind {self.kind.value!r}")
            if not self.sensor.startswith(self.machine + "."):
                raise ConfigError(
                    f"fault.sensor: {self.sensor!r} is not a sensor of machine {self.machine!r}"
                )

    def sensors(self) -> tuple[str, ...]:
        """Full names of the sensors this fault changes."""
        if self.kind in _SENSOR_FAULTS:
            assert self.sensor is not None
            return (self.sensor,)
        if self.kind == FaultKind.OVERHEATING:
            return (f"{self.machine}.temp",)
        return tuple(f"{self.machine}.{axis}" for axis in VIB_AXES)

    def label(self) -> FaultLabel:
        """The ground-truth label of this fault."""
        return FaultLabel(self.machine, self.kind, self.start_ns, self.end_ns, self.sensors())


# --- signal effects: pure functions of time (seconds since the simulation start) -----


def bearing_bursts(
    t: F64,
    revolutions: F64,
    inst_hz: F64,
    t0: float,
    t1: float,
    ratio: float,
    resonance_hz: float,
    amp: float,
) -> F64:
    """Impulse train of a bearing defect, zero outside ``[t0, t1)``.

    Args:
        t: sample times (s).
        revolutions: shaft angle in turns (unwrapped) at ``t``.
        inst_hz: instantaneous shaft speed (Hz) at ``t``.
        t0, t1: fault window (s).
        ratio: defect frequency / shaft speed.
        resonance_hz: frequency of the ringing each impact excites.
        amp: 1x vibration amplitude of the machine times severity.

    Returns:
        The burst signal (same shape as ``t``), to add to each axis times its gain.
    """
    inside = (t >= t0) & (t < t1)
    out = np.zeros_like(t)
    if not inside.any():
        return out
    active = slice(None) if inside.all() else inside  # a view in the common case
    ta, rev = t[active], revolutions[active]
    cycles = rev * ratio
    # Time since the last impact, from the shaft angle rather than a stored impact list, so
    # the signal is a pure function of time and identical for every step size. It is
    # short (< 15 ms), so float32 transcendentals (~8x cheaper) lose nothing.
    since = ((cycles - np.floor(cycles)) / (ratio * inst_hz[active])).astype(np.float32)
    ring = np.exp(since * np.float32(-1.0 / BEARING_DECAY_S)) * np.sin(
        since * np.float32(2 * np.pi * resonance_hz)
    )
    grow = (ta - t0) / (t1 - t0)
    peak = amp * (BEARING_ONSET_AMP + (BEARING_PEAK_AMP - BEARING_ONSET_AMP) * grow)
    # Inner/rolling-element defects pass through the load zone once per turn.
    turn = ((rev - np.floor(rev)) * (2 * np.pi)).astype(np.float32)
    out[active] = peak * (1.0 + 0.3 * np.sin(turn)) * ring
    return out


def imbalance_ramp(t: F64, t0: float, t1: float) -> F64:
    """0 outside ``[t0, t1)``, rising to 1 over the first ``IMBALANCE_ONSET_S``."""
    ramp = np.clip((t - t0) / IMBALANCE_ONSET_S, 0.0, 1.0)
    return np.where((t >= t0) & (t < t1), ramp, 0.0)


def overheat_excess(t: F64, t0: float, t1: float, rate: float) -> F64:
    """Temperature excess (degC): a rise at ``rate`` then a cool-down ending at ``t1``."""
    duration = t1 - t0
    t_peak = OVERHEAT_RISE_FRACTION * duration
    peak = rate * t_peak
    rel = t - t0
    rising = rate * rel
    cooling = peak * (duration - rel) / (duration - t_peak)
    excess = np.where(rel < t_peak, rising, cooling)
    return np.where((t >= t0) & (t < t1), excess, 0.0)


# --- scheduling ------------------------------------------------------------------------


def schedule_faults(
    machines: Sequence[str],
    start_ns: int,
    duration_s: float,
    n_faults: int,
    kinds: Sequence[FaultKind | str] = tuple(FaultKind),
    seed: int = 0,
    min_gap_s: float = 5.0,
    fault_s: tuple[float, float] = (3.0, 6.0),
    warmup_s: float = 8.0,
) -> list[FaultSpec]:
    """Spread ``n_faults`` faults over time and machines, deterministically for ``seed``.

    The span after the warm-up is cut into ``n_faults`` equal slots, one fault per slot
    at a random offset, so faults are spread over the whole run. Each fault goes to the
    least-used machine that has been free for ``min_gap_s`` (random tie-break), so faults
    never overlap on one machine and are spread over machines.

    Args:
        machines: machine names.
        start_ns: simulation start; all times are relative to it.
        duration_s: length of the run; every fault ends by ``start_ns + duration_s``.
        n_faults: how many faults.
        kinds: kinds to draw from; when ``n_faults >= len(kinds)`` each appears at least once.
        seed: random seed.
        min_gap_s: minimum quiet time between two faults of one machine.
        fault_s: (min, max) fault duration in seconds.
        warmup_s: no fault starts before this many seconds (detectors need a baseline).

    Returns:
        The faults, ordered by start time. Stuck-sensor and dropout faults name a random
        sensor of their machine.

    Raises:
        ConfigError: an argument is invalid or the faults cannot fit.
    """
    kinds_ = _check_schedule_args(
        machines, duration_s, n_faults, kinds, min_gap_s, fault_s, warmup_s
    )
    if n_faults == 0:
        return []
    rng = np.random.default_rng([seed, 0x5EED])
    if n_faults >= len(kinds_):
        extra = rng.choice(len(kinds_), size=n_faults - len(kinds_)).tolist()
        drawn = list(kinds_) + [kinds_[i] for i in extra]
    else:
        drawn = [kinds_[i] for i in rng.choice(len(kinds_), size=n_faults, replace=False)]
    order = rng.permutation(n_faults)
    # Whole milliseconds throughout: labels stay readable and every bound is exact.
    lo_ms, hi_ms = math.ceil(fault_s[0] * 1e3), math.floor(fault_s[1] * 1e3)
    durations = rng.integers(lo_ms, max(lo_ms, hi_ms) + 1, size=n_faults)
    offsets = rng.uniform(0.0, 1.0, size=n_faults)
    warm_ms, end_ms = math.ceil(warmup_s * 1e3), math.floor(duration_s * 1e3)
    gap_ms = math.ceil(min_gap_s * 1e3)

    slot = (end_ms - warm_ms) / n_faults
    free_at = dict.fromkeys(machines, -math.inf)
    used = dict.fromkeys(machines, 0)
    out: list[FaultSpec] = []
    for i in range(n_faults):
        dur = int(durations[i])
        latest = end_ms - dur
        begin = min(math.ceil(warm_ms + i * slot + offsets[i] * max(slot - dur, 0.0)), latest)
        ready = [m for m in machines if free_at[m] <= begin]
        if not ready:
            # Wait for the first machine to become free, if the run still has room.
            first = min(machines, key=lambda m: free_at[m])
            begin = int(free_at[first])
            if begin > latest:
                raise ConfigError(
                    f"n_faults: cannot fit {n_faults} faults of {fault_s[0]}-{fault_s[1]} s "
                    f"with min_gap_s={min_gap_s} on {len(machines)} machine(s) in "
                    f"{duration_s - warmup_s:g} s after warm-up"
                )
            ready = [first]
        fewest = min(used[m] for m in ready)
        candidates = [m for m in ready if used[m] == fewest]
        machine = candidates[int(rng.integers(len(candidates)))]
        kind = FaultKind(drawn[int(order[i])])
        sensor = None
        if kind in _SENSOR_FAULTS:
            sensor = f"{machine}.{SENSOR_SUFFIXES[int(rng.integers(len(SENSOR_SUFFIXES)))]}"
        t0 = start_ns + begin * 1_000_000
        out.append(FaultSpec(kind, machine, t0, t0 + dur * 1_000_000, sensor))
        free_at[machine] = begin + dur + gap_ms
        used[machine] += 1
    out.sort(key=lambda f: (f.start_ns, f.machine))
    return out


def _check_schedule_args(
    machines: Sequence[str],
    duration_s: float,
    n_faults: int,
    kinds: Sequence[FaultKind | str],
    min_gap_s: float,
    fault_s: tuple[float, float],
    warmup_s: float,
) -> list[FaultKind]:
    if not machines:
        raise ConfigError("machines: at least one machine is required")
    if len(set(machines)) != len(machines):
        raise ConfigError("machines: names must be unique")
    if n_faults < 0:
        raise ConfigError(f"n_faults: must be >= 0 (got {n_faults})")
    try:
        kinds_ = list(dict.fromkeys(FaultKind(k) for k in kinds))
    except ValueError as exc:
        raise ConfigError(f"kinds: {exc}") from None
    if not kinds_:
        raise ConfigError("kinds: at least one fault kind is required")
    lo, hi = fault_s
    if not 0 < lo <= hi:
        raise ConfigError(f"fault_s: need 0 < min <= max (got {fault_s})")
    if min_gap_s < 0 or warmup_s < 0:
        raise ConfigError("min_gap_s, warmup_s: must be >= 0")
    if n_faults and duration_s - warmup_s < hi:
        raise ConfigError(
            f"duration_s: {duration_s:g} s leaves no room for a {hi:g} s fault "
            f"after a {warmup_s:g} s warm-up"
        )
    return kinds_

"""A seeded factory-floor simulator: machines, sensors, load regimes and faults.

Each machine has three vibration channels (x, y, z at ``vib_rate_hz``, default 2 kHz)
and temperature, pressure and motor current (at ``process_rate_hz``, default 10 Hz):

* vibration = the shaft-rate (1x) sinusoid plus smaller 2x and 3x harmonics, scaled by
  load, plus broadband noise; the shaft speed wobbles slowly around its nominal value;
* temperature = a first-order (``temp_tau_s``) response to load plus sensor noise;
* pressure and current follow load directly, plus noise;
* load = piecewise regimes joined by linear ramps, plus a smooth wander
  (:class:`LoadProfile`).

Every sample is a pure function of (seed, sensor, sample index): phase and thermal
response have closed forms and noise comes from a counter-based hash, not a stateful
generator. That is what makes :meth:`FactorySim.step` exact for any step size: 1 s as
10 x 100 ms or at once gives bit-identical samples, so windows spanning steps see no seam.

>>> sim = FactorySim(FactoryConfig.generate(n_machines=2), seed=1)
>>> frame = sim.step(1_000_000_000)
>>> len(frame), frame.is_sorted()
(12060, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgeloop.errors import ConfigError
from edgeloop.sim import faults as fx
from edgeloop.sim.faults import FaultKind, FaultLabel, FaultSpec
from edgeloop.telemetry.frame import (
    SENSOR_DTYPE,
    TS_DTYPE,
    VALUE_DTYPE,
    Frame,
    SensorCatalog,
    SensorKind,
    SensorSpec,
)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]

_M64 = (1 << 64) - 1
_GOLDEN64 = 0x9E3779B97F4A7C15
_GOLDEN32 = 0x9E3779B9
_PROCESS = {
    "temp": (SensorKind.TEMPERATURE, "degC"),
    "pressure": (SensorKind.PRESSURE, "bar"),
    "current": (SensorKind.CURRENT, "A"),
}
_WANDER_WEIGHTS = (0.5, 0.3, 0.2)
_CHUNK_ELEMS = 16384


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoadProfile(_Model):
    """How a machine's load (0 = idle, 1 = rated) moves over time.

    Load = regime level (plateaus joined by linear ramps of ``ramp_s``) + wander (three
    slow sinusoids with periods in ``wander_period_s``, peak ``wander``). With
    ``regimes`` unset, levels are drawn around ``base`` within ``+-regime_span`` and held
    for a random time in ``regime_every_s``. The default keeps regime changes smaller
    than the wander a detector sees during its first seconds, so a sound detector does
    not false-alarm on it; big explicit ``regimes`` (e.g. ``[(0, 0.4), (60, 0.95)]``)
    produce genuine drift.
    """

    base: float = Field(default=0.7, ge=0.0, le=1.5)
    wander: float = Field(default=0.04, ge=0.0, le=0.5)
    wander_period_s: tuple[float, float] = (5.0, 15.0)
    regimes: tuple[tuple[float, float], ...] | None = None
    regime_every_s: tuple[float, float] = (30.0, 90.0)
    regime_span: float = Field(default=0.01, ge=0.0, le=1.0)
    ramp_s: float = Field(default=5.0, gt=0.0)

    @field_validator("wander_period_s", "regime_every_s")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError(f"need 0 < min <= max (got {v})")
        return v

    @model_validator(mode="after")
    def _regimes_ordered(self) -> LoadProfile:
        if self.regimes is not None:
            if not self.regimes:
                raise ValueError("regimes: give at least one (at_s, level) or leave unset")
            prev = -np.inf
            for i, (at, level) in enumerate(self.regimes):
                if at < 0 or not 0 <= level <= 1.5:
                    raise ValueError(f"regimes[{i}]: need at_s >= 0 and 0 <= level <= 1.5")
                if at < prev + self.ramp_s:
                    raise ValueError(f"regimes[{i}]: at_s must be >= previous at_s + ramp_s")
                prev = at
        return self


class MachineSpec(_Model):
    """One machine: shaft, vibration signature and process baselines."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
    shaft_hz: float = Field(default=25.0, gt=0.0)
    speed_wobble: float = Field(default=0.01, ge=0.0, lt=0.2)
    wobble_period_s: float = Field(default=17.0, gt=0.0)
    vib_amp: float = Field(default=0.3, gt=0.0)
    harmonics: tuple[float, float] = (0.3, 0.12)
    axis_gain: tuple[float, float, float] = (1.0, 0.8, 0.45)
    vib_noise: float = Field(default=0.06, ge=0.0)
    bearing_ratio: float = Field(default=3.58, gt=1.0)
    resonance_hz: float = Field(default=650.0, gt=0.0)
    temp_base: float = 35.0
    temp_gain: float = 10.0
    temp_tau_s: float = Field(default=40.0, gt=0.0)
    temp_noise: float = Field(default=0.15, ge=0.0)
    pressure_base: float = 4.0
    pressure_gain: float = 1.0
    pressure_noise: float = Field(default=0.05, ge=0.0)
    current_base: float = 4.0
    current_gain: float = 6.0
    current_noise: float = Field(default=0.25, ge=0.0)
    load: LoadProfile | None = None


class FactoryConfig(_Model):
    """The floor: machines, sample rates and the default load profile."""

    machines: tuple[MachineSpec, ...] = Field(min_length=1)
    vib_rate_hz: int = Field(default=2000, gt=0)
    process_rate_hz: int = Field(default=10, gt=0)
    load: LoadProfile = Field(default_factory=LoadProfile)

    @field_validator("vib_rate_hz", "process_rate_hz")
    @classmethod
    def _integral_period(cls, v: int) -> int:
        if 1_000_000_000 % v:
            raise ValueError(f"1e9 / rate must be a whole number of ns (got {v} Hz)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> FactoryConfig:
        names = [m.name for m in self.machines]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"machines: duplicate names {dup}")
        nyquist = self.vib_rate_hz / 2
        for i, m in enumerate(self.machines):
            if max(3 * m.shaft_hz, m.resonance_hz) >= nyquist:
                raise ValueError(
                    f"machines[{i}]: 3x shaft_hz and resonance_hz must be below the "
                    f"vibration Nyquist frequency {nyquist:g} Hz"
                )
        return self

    @classmethod
    def parse(cls, data: Any, where: str = "factory config") -> FactoryConfig:
        """Validate a mapping (e.g. from YAML); problems raise ConfigError naming each field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            lines = [f"{where}: {exc.error_count()} problem(s)"]
            for err in exc.errors():
                path = ".".join(str(p) for p in err["loc"]) or "(root)"
                lines.append(f"  {path}: {err['msg']}")
            raise ConfigError("\n".join(lines)) from None

    @classmethod
    def generate(
        cls,
        n_machines: int = 6,
        gateway: str = "gw1",
        seed: int = 0,
        load: LoadProfile | None = None,
    ) -> FactoryConfig:
        """A floor of ``n_machines`` named ``{gateway}.m01`` ... with per-machine variation.

        Shaft speeds are spread over 20-30 Hz; amplitudes, noise and process baselines
        vary by +-20-30 % around :class:`MachineSpec` defaults.
        """
        if n_machines < 1:
            raise ConfigError(f"n_machines: must be >= 1 (got {n_machines})")
        rng = np.random.default_rng([seed, 0xF10])

        def vary(x: float, rel: float) -> float:
            return float(x * rng.uniform(1 - rel, 1 + rel))

        machines = [
            MachineSpec(
                name=f"{gateway}.m{i + 1:02d}",
                shaft_hz=round(float(rng.uniform(20.0, 30.0)), 2),
                vib_amp=vary(0.3, 0.3),
                vib_noise=vary(0.06, 0.2),
                harmonics=(vary(0.3, 0.3), vary(0.12, 0.3)),
                bearing_ratio=vary(3.58, 0.05),
                resonance_hz=float(rng.uniform(550.0, 800.0)),
                temp_base=float(rng.uniform(30.0, 40.0)),
                temp_gain=vary(10.0, 0.2),
                temp_tau_s=vary(40.0, 0.25),
                pressure_base=vary(4.0, 0.2),
                pressure_gain=vary(1.0, 0.2),
                current_base=vary(4.0, 0.2),
                current_gain=vary(6.0, 0.2),
            )
            for i in range(n_machines)
        ]
        return cls(machines=tuple(machines), load=load or LoadProfile())


# --- counter-based noise ------------------------------------------------------------------


def _mix_int(x: int) -> int:
    """splitmix64 finaliser on a Python int (no numpy scalar overflow warnings)."""
    x = (x + _GOLDEN64) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _hash32(x: U32) -> U32:
    """In-place 32-bit integer hash (lowbias32); a bijection, SIMD-fast in numpy."""
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


class _Noise:
    """Standard normal noise indexed by (sensor key, sample index), with no state.

    A counter-based generator: any sample can be drawn on its own, which is what makes
    output independent of step size. The hash picks one of 65,536 standardised normal
    draws (a 256 KiB table that stays in cache); that is ~5x faster than Box-Muller here
    and the marginal is normal to within sampling error (tails to ~4.3 sigma).
    """

    def __init__(self, seed: int) -> None:
        table = np.random.default_rng([seed, 0x401]).standard_normal(1 << 16)
        self.table = ((table - table.mean()) / table.std()).astype(np.float32)

    def draw(self, keys: U32, n: I64) -> F32:
        """Normals of shape ``(len(keys), len(n))``."""
        lo = (n & 0xFFFFFFFF).astype(np.uint32) * np.uint32(_GOLDEN32)
        hi = (n >> 32).astype(np.uint32) * np.uint32(0x85EBCA6B)
        base = _hash32(lo ^ _hash32(hi))  # per sample index, shared by all sensors
        x = _hash32(base[None, :] + keys[:, None])
        out: F32 = np.take(self.table, x >> np.uint32(16))
        return out


# --- load ----------------------------------------------------------------------------------


class _Regimes:
    """One machine's regime level: plateaus joined by linear ramps, and its first-order
    response at each breakpoint.

    Breakpoints are generated lazily, in order, from the machine's own generator, so they
    do not depend on how far ahead a step looks. The first-order response to a linear
    segment has a closed form, so the state at each breakpoint is computed once.
    """

    def __init__(self, profile: LoadProfile, tau_s: float, rng: np.random.Generator) -> None:
        self._p = profile
        self._tau = tau_s
        self._rng = rng
        self._pending = list(profile.regimes or ())
        if self._pending and self._pending[0][0] == 0:
            level = self._pending.pop(0)[1]
        elif profile.regimes is not None:
            level = profile.base
        else:
            level = self._draw()
        # Start in steady state: no warm-up transient for detectors to trip on.
        self.t, self.u, self.y = [0.0], [level], [level]
        self.extend_to(0.0)

    def _draw(self) -> float:
        p = self._p
        return float(np.clip(p.base + self._rng.uniform(-p.regime_span, p.regime_span), 0, 1.5))

    def _add(self, t: float, u: float) -> None:
        t0, u0, y0 = self.t[-1], self.u[-1], self.y[-1]
        mt = (u - u0) / (t - t0) * self._tau
        self.y.append(float(u - mt + (y0 - u0 + mt) * np.exp(-(t - t0) / self._tau)))
        self.t.append(t)
        self.u.append(u)

    def extend_to(self, t_max: float) -> None:
        """Generate breakpoints until the last one lies beyond ``t_max``."""
        p = self._p
        while self.t[-1] <= t_max:
            level = self.u[-1]
            if p.regimes is None:
                self._add(self.t[-1] + float(self._rng.uniform(*p.regime_every_s)), level)
                self._add(self.t[-1] + p.ramp_s, self._draw())
            elif self._pending:
                at, new = self._pending.pop(0)
                if at > self.t[-1]:
                    self._add(at, level)
                self._add(at + p.ramp_s, new)
            else:  # constant after the last explicit regime; fixed knots, whatever t_max
                self._add(self.t[-1] + 1e4, level)


class _Loads:
    """Load of every machine, and its first-order response, vectorised over machines.

    Load = regime level (piecewise linear, :class:`_Regimes`) + wander (three sinusoids).
    The response of the regime part is the closed form per linear segment; that of each
    sinusoid is its steady state (gain and delay of a first-order lag).
    """

    def __init__(self, profiles: Sequence[LoadProfile], taus: F64, seed: int) -> None:
        self._regimes = [
            _Regimes(p, float(tau), np.random.default_rng([seed, 1, i]))
            for i, (p, tau) in enumerate(zip(profiles, taus, strict=True))
        ]
        self._tau = taus[:, None]
        self._horizon = -np.inf
        rng = np.random.default_rng([seed, 2])
        lo = np.array([p.wander_period_s[0] for p in profiles])[:, None]
        hi = np.array([p.wander_period_s[1] for p in profiles])[:, None]
        hz = 1.0 / rng.uniform(lo, hi, size=(len(profiles), 3))
        wander = np.array([p.wander for p in profiles])[:, None]
        omega_tau = 2 * np.pi * hz * taus[:, None]
        self._hz = hz[:, :, None]
        self._cyc0 = rng.uniform(0, 1, size=(len(profiles), 3, 1))
        self._amp = (wander * np.asarray(_WANDER_WEIGHTS))[:, :, None]
        self._lag_amp = self._amp / np.sqrt(1 + omega_tau**2)[:, :, None]
        self._lag_cyc = (np.arctan(omega_tau) / (2 * np.pi))[:, :, None]

    def _segments(self, t: F64) -> tuple[F64, F64, F64, F64]:
        """Per machine and time: segment start, level and response there, and slope."""
        if t[-1] >= self._horizon:
            for r in self._regimes:
                r.extend_to(float(t[-1]))
            self._horizon = min(r.t[-1] for r in self._regimes)
            self._bt = [np.asarray(r.t) for r in self._regimes]
            sizes = np.array([len(r.t) for r in self._regimes])
            self._row0 = (np.cumsum(sizes) - sizes)[:, None]
            self._t0, self._u0, self._y0 = (
                np.concatenate([getattr(r, a) for r in self._regimes]) for a in "tuy"
            )
            dt = np.diff(self._t0, append=np.inf)
            self._slope = np.where(np.isfinite(dt), np.diff(self._u0, append=0.0) / dt, 0.0)
        # t >= 0 = first breakpoint and t < last breakpoint: the index is a valid segment.
        i = np.stack([np.searchsorted(bt, t, side="right") for bt in self._bt])
        i += self._row0 - 1
        return self._t0[i], self._u0[i], self._y0[i], self._slope[i]

    def _wander(self, t: F64, amp: F64, shift: F64 | float) -> F64:
        cyc = self._hz * t + (self._cyc0 - shift)
        # Reduce in float64, evaluate in float32: float64 sin costs ~8x more.
        frac = ((cyc - np.floor(cyc)) * (2 * np.pi)).astype(np.float32)
        out: F64 = (amp * np.sin(frac)).sum(axis=1)
        return out

    def load(self, t: F64) -> F64:
        """Load, shape ``(machines, len(t))``, at ascending times ``t >= 0`` (s)."""
        t0, u0, _, slope = self._segments(t)
        return u0 + slope * (t - t0) + self._wander(t, self._amp, 0.0)

    def load_and_response(self, t: F64) -> tuple[F64, F64]:
        """Load and its first-order response (each machine's ``temp_tau_s``)."""
        t0, u0, y0, slope = self._segments(t)
        dt = t - t0
        level = u0 + slope * dt
        mt = slope * self._tau
        response = level - mt + (y0 - u0 + mt) * np.exp(-dt / self._tau)
        return (
            level + self._wander(t, self._amp, 0.0),
            response + self._wander(t, self._lag_amp, self._lag_cyc),
        )


# --- the simulator -------------------------------------------------------------------------


class _Group:
    """Sensors sharing one sample rate; catalog indices shaped (machine, channel)."""

    def __init__(self, index: npt.NDArray[np.uint32], rate_hz: int, seed: int) -> None:
        self.index = index
        self.flat = index.reshape(-1)
        self.period_ns = 1_000_000_000 // rate_hz
        self.dt_s = 1.0 / rate_hz
        keys = [_mix_int((seed << 20) + int(s)) & 0xFFFFFFFF for s in self.flat]
        self.keys = np.array(keys, np.uint32)

    def span(self, t0_ns: int, t1_ns: int) -> I64:
        """Sample indices n with ``t0 <= n * period < t1`` (ns relative to the start)."""
        p = self.period_ns
        return np.arange(-(-t0_ns // p), -(-t1_ns // p), dtype=np.int64)


Block = tuple[_Group, I64, F32, npt.NDArray[np.bool_] | None]


class FactorySim:
    """Deterministic, step-able telemetry of a factory floor.

    Args:
        config: the floor.
        seed: every random choice (phases, regimes, noise) derives from it (>= 0).
        start_ns: timestamp of the first sample.
        faults: faults to inject (see :mod:`edgeloop.sim.faults`).

    Attributes:
        catalog: one :class:`SensorSpec` per sensor, machine by machine, in the order
            ``vib_x, vib_y, vib_z, temp, pressure, current``.
        emitted: samples returned by :meth:`step` so far (for loss accounting).
        suppressed: samples that dropout faults kept from being emitted.
    """

    def __init__(
        self,
        config: FactoryConfig,
        seed: int = 0,
        start_ns: int = 0,
        faults: Sequence[FaultSpec] = (),
    ) -> None:
        if seed < 0:
            raise ConfigError(f"seed: must be >= 0 (got {seed})")
        self.config = config
        self.seed = seed
        self.start_ns = int(start_ns)
        self._now = self.start_ns
        ms = config.machines
        self._pos = {m.name: i for i, m in enumerate(ms)}
        self.catalog = SensorCatalog()
        vib_hz, proc_hz = float(config.vib_rate_hz), float(config.process_rate_hz)
        for m in ms:
            for axis in fx.VIB_AXES:
                self.catalog.add(
                    SensorSpec(f"{m.name}.{axis}", m.name, SensorKind.VIBRATION, vib_hz, "g")
                )
            for suffix, (kind, unit) in _PROCESS.items():
                self.catalog.add(SensorSpec(f"{m.name}.{suffix}", m.name, kind, proc_hz, unit))
        idx = np.arange(len(self.catalog), dtype=np.uint32).reshape(len(ms), 6)
        self._vib = _Group(idx[:, :3], config.vib_rate_hz, seed)
        self._proc = _Group(idx[:, 3:], config.process_rate_hz, seed)
        self._env_every = max(1, config.vib_rate_hz // 100)  # load envelope knots: 100 Hz
        self._noise = _Noise(seed)

        def col(attr: str) -> F64:
            return np.array([getattr(m, attr) for m in ms], np.float64)[:, None]

        rng = np.random.default_rng([seed, 3])
        self._f0, self._wob = col("shaft_hz"), col("speed_wobble")
        self._wob_hz = 1.0 / col("wobble_period_s")
        self._wob_cyc0 = rng.uniform(0, 1, (len(ms), 1))
        self._amp = col("vib_amp")
        self._coef = self._harmonic_coefficients(rng)
        self._vib_noise = np.repeat(col("vib_noise").astype(np.float32), 3, axis=0)
        self._proc_base = np.array([[m.temp_base, m.pressure_base, m.current_base] for m in ms])
        self._proc_gain = np.array([[m.temp_gain, m.pressure_gain, m.current_gain] for m in ms])
        noise = [[m.temp_noise, m.pressure_noise, m.current_noise] for m in ms]
        self._proc_noise = np.array(noise, np.float32).reshape(-1, 1)
        profiles = [m.load or config.load for m in ms]
        self._loads = _Loads(profiles, col("temp_tau_s")[:, 0], seed)
        self._faults: list[FaultSpec] = []
        self._stuck: dict[FaultSpec, np.float32] = {}
        self.emitted = 0
        self.suppressed = 0
        for f in faults:
            self.inject(f)

    # -- public API ----------------------------------------------------------------------

    @property
    def now_ns(self) -> int:
        """Start of the next step: every sample before it has been emitted."""
        return self._now

    @property
    def faults(self) -> list[FaultLabel]:
        """Ground truth of every injected fault, by start time."""
        return [f.label() for f in self._faults]

    @property
    def machines(self) -> list[str]:
        """Machine names in catalog order."""
        return [m.name for m in self.config.machines]

    def inject(self, fault: FaultSpec) -> None:
        """Add a fault. Samples already emitted are not changed."""
        if fault.machine not in self._pos:
            raise ConfigError(f"fault.machine: unknown machine {fault.machine!r}")
        if fault.sensor is not None and self.catalog.get(fault.sensor) is None:
            raise ConfigError(f"fault.sensor: unknown sensor {fault.sensor!r}")
        self._faults.append(fault)
        self._faults.sort(key=lambda f: (f.start_ns, f.machine))
        self._stuck.clear()  # a stuck value may now include the new fault's effect

    def step(self, dt_ns: int) -> Frame:
        """Advance by ``dt_ns`` and return every sample with ``now <= ts < now + dt_ns``.

        Rows are sorted by (sensor, ts); a dropped-out sensor contributes no rows.
        """
        if dt_ns < 0:
            raise ConfigError(f"dt_ns: must be >= 0 (got {dt_ns})")
        t0 = self._now - self.start_ns
        t1 = t0 + int(dt_ns)
        self._now += int(dt_ns)
        blocks: list[Block] = []
        for group in (self._vib, self._proc):
            n = group.span(t0, t1)
            if n.size:
                values = self._values(group, n)
                blocks.append((group, n, values, self._sensor_faults(group, n, values)))
        return self._assemble(blocks)

    # -- signals ---------------------------------------------------------------------------

    def _harmonic_coefficients(self, rng: np.random.Generator) -> F32:
        """(M, 3 axes, 6): weights of sin/cos of the 1x, 2x, 3x shaft phase per axis."""
        ms = self.config.machines
        coef = np.zeros((len(ms), 3, 6))
        for i, m in enumerate(ms):
            rel = (1.0, *m.harmonics)
            # x and y see the rotating 1x force 90 degrees apart; the rest is random.
            offsets = np.array([[0.0, np.pi / 2, rng.uniform(0, 2 * np.pi)]] * 3)
            offsets[1:] = rng.uniform(0, 2 * np.pi, (2, 3))
            for h in range(3):
                g = rel[h] * np.asarray(m.axis_gain)
                coef[i, :, 2 * h] = g * np.cos(offsets[h])  # weight of sin(h * phase)
                coef[i, :, 2 * h + 1] = g * np.sin(offsets[h])  # weight of cos(h * phase)
        return coef.astype(np.float32)

    def _rel(self, f: FaultSpec) -> tuple[float, float]:
        return (f.start_ns - self.start_ns) / 1e9, (f.end_ns - self.start_ns) / 1e9

    def _values(self, group: _Group, n: I64) -> F32:
        fn = self._vib_values if group is self._vib else self._proc_values
        per_chunk = max(64, _CHUNK_ELEMS // group.flat.size)
        if n.size <= per_chunk:
            return fn(n)
        # Chunks keep temporaries small: glibc serves big ones from fresh pages, and
        # page faults then cost more than the arithmetic (values depend only on n).
        out = np.empty((group.flat.size, n.size), np.float32)
        for i in range(0, n.size, per_chunk):
            out[:, i : i + per_chunk] = fn(n[i : i + per_chunk])
        return out

    def _vib_values(self, n: I64) -> F32:
        t = n.astype(np.float64) * self._vib.dt_s
        # Shaft speed f0 * (1 + wob * sin(2 pi w t + c0)) integrates in closed form; work
        # in cycles so the float64 -> float32 reduction is a cheap floor.
        wcyc = self._wob_hz * t + self._wob_cyc0
        wrad = ((wcyc - np.floor(wcyc)) * (2 * np.pi)).astype(np.float32)
        k = self._f0 * self._wob / (2 * np.pi * self._wob_hz)
        cycles = self._f0 * t + k * (np.cos(2 * np.pi * self._wob_cyc0) - np.cos(wrad))
        red = ((cycles - np.floor(cycles)) * (2 * np.pi)).astype(np.float32)
        s, c = np.sin(red), np.cos(red)
        basis = (s, c, 2 * s * c, c * c - s * s, s * (3 - 4 * s * s), c * (4 * c * c - 3))
        coef = self._coef
        vib = coef[:, :, 0, None] * basis[0][:, None, :]
        tmp = np.empty_like(vib)  # one scratch buffer: big temporaries cost page faults
        for j in range(1, 6):
            vib += np.multiply(coef[:, :, j, None], basis[j][:, None, :], out=tmp)
        amp = self._envelope(n)
        vib *= amp[:, None, :]
        for f in self._faults:
            r0, r1 = self._rel(f)
            if t[0] >= r1 or t[-1] < r0:
                continue
            i = self._pos[f.machine]
            if f.kind == FaultKind.IMBALANCE:
                one_x = coef[i, :, 0, None] * s[i] + coef[i, :, 1, None] * c[i]
                gain = (np.asarray(fx.IMBALANCE_GAIN)[:, None] - 1) * f.severity
                vib[i] += (gain * fx.imbalance_ramp(t, r0, r1) * amp[i] * one_x).astype(np.float32)
            elif f.kind == FaultKind.BEARING_WEAR:
                m = self.config.machines[i]
                speed = self._f0[i] * (1 + self._wob[i] * np.sin(wrad[i]))
                burst = fx.bearing_bursts(
                    t,
                    cycles[i],
                    speed,
                    r0,
                    r1,
                    m.bearing_ratio,
                    m.resonance_hz,
                    m.vib_amp * f.severity,
                )
                vib[i] += (np.asarray(fx.BEARING_AXIS_GAIN)[:, None] * burst).astype(np.float32)
        out: F32 = vib.reshape(-1, n.size)
        noise = self._noise.draw(self._vib.keys, n)
        out += np.multiply(noise, self._vib_noise, out=noise)
        return out

    def _envelope(self, n: I64) -> F32:
        """1x amplitude (M, len(n)) from load, held between knots every 10 ms (load moves
        slowly, and evaluating it per 2 kHz sample would double the cost of a step)."""
        knot = n // self._env_every
        k0 = int(knot[0])
        tk = np.arange(k0, int(knot[-1]) + 1, dtype=np.float64) * (self._env_every * self._vib.dt_s)
        amp = (self._amp * (0.6 + 0.4 * self._loads.load(tk))).astype(np.float32)
        out: F32 = amp[:, knot - k0]
        return out

    def _proc_values(self, n: I64) -> F32:
        t = n.astype(np.float64) * self._proc.dt_s
        load, response = self._loads.load_and_response(t)
        drive = np.stack([response, load, load], axis=1)  # temperature lags the load
        vals = self._proc_base[:, :, None] + self._proc_gain[:, :, None] * drive
        for f in self._faults:
            r0, r1 = self._rel(f)
            if f.kind == FaultKind.OVERHEATING and t[0] < r1 and t[-1] >= r0:
                rate = fx.OVERHEAT_RATE_C_PER_S * f.severity
                vals[self._pos[f.machine], 0] += fx.overheat_excess(t, r0, r1, rate)
        out = vals.reshape(-1, n.size).astype(np.float32)
        out += self._noise.draw(self._proc.keys, n) * self._proc_noise
        return out

    def _sensor_faults(self, group: _Group, n: I64, values: F32) -> npt.NDArray[np.bool_] | None:
        """Apply stuck sensors in place; return the keep-mask for dropouts (None: keep all)."""
        keep = None
        ts = n * group.period_ns + self.start_ns
        for f in self._faults:
            if f.sensor is None or f.kind not in (FaultKind.STUCK_SENSOR, FaultKind.DROPOUT):
                continue
            hit = np.flatnonzero(group.flat == self.catalog.index(f.sensor))
            if hit.size == 0 or ts[0] >= f.end_ns or ts[-1] < f.start_ns:
                continue
            row = int(hit[0])
            inside = (ts >= f.start_ns) & (ts < f.end_ns)
            if f.kind == FaultKind.DROPOUT:
                keep = np.ones(values.shape, np.bool_) if keep is None else keep
                keep[row, inside] = False
            else:
                values[row, inside] = self._stuck_value(f, group, row)
        return keep

    def _stuck_value(self, f: FaultSpec, group: _Group, row: int) -> np.float32:
        """The value the sensor emitted just before the fault: a pure function of it."""
        if f not in self._stuck:
            first = -(-(f.start_ns - self.start_ns) // group.period_ns)
            n = np.array([max(first - 1, 0)], np.int64)
            self._stuck[f] = self._values(group, n)[row, 0]
        return self._stuck[f]

    def _assemble(self, blocks: list[Block]) -> Frame:
        """Lay the groups' (rows, m) blocks out as one frame sorted by (sensor, ts).

        Each machine's row is [vib_x, vib_y, vib_z | temp, pressure, current], so the
        frame is two slice copies per column, no scatter; dropouts are then masked out.
        """
        n_machines = len(self.config.machines)
        width = sum(3 * n.size for _, n, _, _ in blocks)
        sensor = np.empty((n_machines, width), SENSOR_DTYPE)
        ts_out = np.empty((n_machines, width), TS_DTYPE)
        value = np.empty((n_machines, width), VALUE_DTYPE)
        keep_all = None
        col = 0
        for group, n, vals, keep in blocks:
            cols = slice(col, col + 3 * n.size)
            shape = (n_machines, 3, n.size)
            sensor[:, cols].reshape(shape)[...] = group.index[:, :, None]
            ts_out[:, cols].reshape(shape)[...] = n * group.period_ns + self.start_ns
            value[:, cols] = vals.reshape(n_machines, -1)
            if keep is not None:
                keep_all = np.ones((n_machines, width), np.bool_) if keep_all is None else keep_all
                keep_all[:, cols] = keep.reshape(n_machines, -1)
            col += 3 * n.size
        frame = Frame(sensor.reshape(-1), ts_out.reshape(-1), value.reshape(-1))
        if keep_all is not None:
            frame = frame.take(keep_all.reshape(-1))
            self.suppressed += keep_all.size - len(frame)
        self.emitted += len(frame)
        return frame

"""A seeded factory-floor simulator: machines, sensors, load regimes and faults.

The floor itself (machines, rates, load profiles) is described in
:mod:`edgeloop.sim.config`; this module is the numpy engine that turns it into telemetry.

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

import numpy as np
import numpy.typing as npt

from edgeloop.errors import ConfigError
from edgeloop.sim import faults as fx
from edgeloop.sim.config import FactoryConfig, LoadProfile, MachineSpec
from edgeloop.sim.faults import FaultKind, FaultLabel, FaultSpec
from edgeloop.sim.load import Loads
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

__all__ = ["FactoryConfig", "FactorySim", "LoadProfile", "MachineSpec"]

_M64 = (1 << 64) - 1
_GOLDEN64 = 0x9E3779B97F4A7C15
_GOLDEN32 = 0x9E3779B9
_PROCESS = {
    "temp": (SensorKind.TEMPERATURE, "degC"),
    "pressure": (SensorKind.PRESSURE, "bar"),
    "current": (SensorKind.CURRENT, "A"),
}
_CHUNK_ELEMS = 16384


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
        self._loads = Loads(profiles, col("temp_tau_s")[:, 0], seed)
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

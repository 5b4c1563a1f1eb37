"""What a simulated floor looks like: machines, their signatures and load profiles.

Frozen dataclasses (see :mod:`edgeloop._plain`): :meth:`FactoryConfig.parse` validates
untrusted data (a launcher; imports pydantic on first use), :meth:`FactoryConfig.generate`
draws a varied floor from a seed, and a running gateway rebuilds a validated floor from
its plan without pydantic. The engine that turns a floor into telemetry is
:mod:`edgeloop.sim.factory`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np

from edgeloop._plain import FORBID_EXTRA, FieldProblem, Ge, Gt, Le, Lt, MinLen, validate
from edgeloop.errors import ConfigError

__all__ = ["FactoryConfig", "LoadProfile", "MachineSpec"]

_MACHINE = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


def _min_max(name: str, v: tuple[float, float]) -> None:
    if not 0 < v[0] <= v[1]:
        raise FieldProblem(name, f"need 0 < min <= max (got {v})")


@dataclass(frozen=True, kw_only=True)
class LoadProfile:
    """How a machine's load (0 = idle, 1 = rated) moves over time.

    Load = regime level (plateaus joined by linear ramps of ``ramp_s``) + wander (three
    slow sinusoids with periods in ``wander_period_s``, peak ``wander``). With
    ``regimes`` unset, levels are drawn around ``base`` within ``+-regime_span`` and held
    for a random time in ``regime_every_s``. The default keeps regime changes smaller
    than the wander a detector sees during its first seconds, so a sound detector does
    not false-alarm on it; big explicit ``regimes`` (e.g. ``[(0, 0.4), (60, 0.95)]``)
    produce genuine drift.
    """

    __pydantic_config__ = FORBID_EXTRA
    base: Annotated[float, Ge(0.0), Le(1.5)] = 0.7
    wander: Annotated[float, Ge(0.0), Le(0.5)] = 0.04
    wander_period_s: tuple[float, float] = (5.0, 15.0)
    regimes: tuple[tuple[float, float], ...] | None = None
    regime_every_s: tuple[float, float] = (30.0, 90.0)
    regime_span: Annotated[float, Ge(0.0), Le(1.0)] = 0.01
    ramp_s: Annotated[float, Gt(0.0)] = 5.0

    @classmethod
    def parse(cls, data: Any, where: str = "load") -> LoadProfile:
        """Validate a mapping (e.g. from YAML); problems raise ConfigError naming each field."""
        return validate(cls, data, where)

    def __post_init__(self) -> None:
        _min_max("wander_period_s", self.wander_period_s)
        _min_max("regime_every_s", self.regime_every_s)
        if self.regimes is None:
            return
        if not self.regimes:
            raise FieldProblem("regimes", "give at least one (at_s, level) or leave unset")
        prev = float("-inf")
        for i, (at, level) in enumerate(self.regimes):
            if at < 0 or not 0 <= level <= 1.5:
                raise FieldProblem(f"regimes.{i}", "need at_s >= 0 and 0 <= level <= 1.5")
            if at < prev + self.ramp_s:
                raise FieldProblem(f"regimes.{i}", "at_s must be >= previous at_s + ramp_s")
            prev = at


@dataclass(frozen=True, kw_only=True)
class MachineSpec:
    """One machine: shaft, vibration signature and process baselines."""

    __pydantic_config__ = FORBID_EXTRA
    name: str
    shaft_hz: Annotated[float, Gt(0.0)] = 25.0
    speed_wobble: Annotated[float, Ge(0.0), Lt(0.2)] = 0.01
    wobble_period_s: Annotated[float, Gt(0.0)] = 17.0
    vib_amp: Annotated[float, Gt(0.0)] = 0.3
    harmonics: tuple[float, float] = (0.3, 0.12)
    axis_gain: tuple[float, float, float] = (1.0, 0.8, 0.45)
    vib_noise: Annotated[float, Ge(0.0)] = 0.06
    bearing_ratio: Annotated[float, Gt(1.0)] = 3.58
    resonance_hz: Annotated[float, Gt(0.0)] = 650.0
    temp_base: float = 35.0
    temp_gain: float = 10.0
    temp_tau_s: Annotated[float, Gt(0.0)] = 40.0
    temp_noise: Annotated[float, Ge(0.0)] = 0.15
    pressure_base: float = 4.0
    pressure_gain: float = 1.0
    pressure_noise: Annotated[float, Ge(0.0)] = 0.05
    current_base: float = 4.0
    current_gain: float = 6.0
    current_noise: Annotated[float, Ge(0.0)] = 0.25
    load: LoadProfile | None = None

    def __post_init__(self) -> None:
        if not _MACHINE.match(self.name):
            raise FieldProblem("name", f"String should match pattern '{_MACHINE.pattern}'")


@dataclass(frozen=True, kw_only=True)
class FactoryConfig:
    """The floor: machines, sample rates and the default load profile."""

    __pydantic_config__ = FORBID_EXTRA
    machines: Annotated[tuple[MachineSpec, ...], MinLen(1)]
    vib_rate_hz: Annotated[int, Gt(0)] = 2000
    process_rate_hz: Annotated[int, Gt(0)] = 10
    load: LoadProfile = field(default_factory=LoadProfile)

    def __post_init__(self) -> None:
        for name in ("vib_rate_hz", "process_rate_hz"):
            rate = getattr(self, name)
            if 1_000_000_000 % rate:
                raise FieldProblem(name, f"1e9 / rate must be a whole number of ns (got {rate} Hz)")
        names = [m.name for m in self.machines]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise FieldProblem("machines", f"duplicate names {dup}")
        nyquist = self.vib_rate_hz / 2
        for i, m in enumerate(self.machines):
            if max(3 * m.shaft_hz, m.resonance_hz) >= nyquist:
                raise FieldProblem(
                    f"machines.{i}",
                    "3x shaft_hz and resonance_hz must be below the vibration Nyquist "
                    f"frequency {nyquist:g} Hz",
                )

    @classmethod
    def parse(cls, data: Any, where: str = "factory config") -> FactoryConfig:
        """Validate a mapping (e.g. from YAML); problems raise ConfigError naming each field."""
        return validate(cls, data, where)

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

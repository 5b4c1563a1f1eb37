"""The factory simulator: catalog, determinism, step-size independence, rates, signals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import edgeloop.sim as sim_pkg
from edgeloop.errors import ConfigError
from edgeloop.sim.factory import FactoryConfig, FactorySim, LoadProfile, MachineSpec
from edgeloop.sim.faults import FaultKind, FaultSpec
from edgeloop.telemetry.frame import Frame, SensorKind

SEC = 1_000_000_000
START = 1_700_000_000 * SEC


def run(sim: FactorySim, steps: list[int]) -> Frame:
    frames = [sim.step(s) for s in steps]
    assert all(f.is_sorted() for f in frames)
    return Frame.concat(frames).sorted()


def series(frame: Frame, sim: FactorySim, name: str) -> tuple[np.ndarray, np.ndarray]:
    sel = frame.sensor == sim.catalog.index(name)
    return frame.ts[sel], frame.value[sel].astype(np.float64)


def quiet(cfg: FactoryConfig) -> FactoryConfig:
    """The same floor without process noise, to look at the load-driven signal itself."""
    machines = tuple(
        dataclasses.replace(m, temp_noise=0.0, pressure_noise=0.0, current_noise=0.0)
        for m in cfg.machines
    )
    return dataclasses.replace(cfg, machines=machines)


def all_kinds_faults(cfg: FactoryConfig) -> list[FaultSpec]:
    m1, m2 = cfg.machines[0].name, cfg.machines[1].name
    return [
        FaultSpec(FaultKind.BEARING_WEAR, m1, START + SEC // 3, START + 2 * SEC),
        FaultSpec(FaultKind.STUCK_SENSOR, m1, START + 2 * SEC + 7, START + 3 * SEC, f"{m1}.temp"),
        FaultSpec(FaultKind.IMBALANCE, m2, START + SEC // 7, START + SEC + SEC // 2),
        FaultSpec(FaultKind.DROPOUT, m2, START + 1_600_000_001, START + 2 * SEC, f"{m2}.vib_y"),
        FaultSpec(
            FaultKind.STUCK_SENSOR, m2, START + 2_100_000_000, START + 3 * SEC, f"{m2}.vib_x"
        ),
        FaultSpec(FaultKind.OVERHEATING, m2, START + 2 * SEC, START + 3 * SEC),
    ]


def test_catalog_layout() -> None:
    sim = FactorySim(FactoryConfig.generate(n_machines=6), seed=0)
    cat = sim.catalog
    assert len(cat) == 36
    assert sim.machines == [f"gw1.m{i:02d}" for i in range(1, 7)]
    assert cat.names()[:6] == [
        "gw1.m01.vib_x",
        "gw1.m01.vib_y",
        "gw1.m01.vib_z",
        "gw1.m01.temp",
        "gw1.m01.pressure",
        "gw1.m01.current",
    ]
    assert len(cat.indices_of_kind(SensorKind.VIBRATION)) == 18
    for kind in (SensorKind.TEMPERATURE, SensorKind.PRESSURE, SensorKind.CURRENT):
        assert len(cat.indices_of_kind(kind)) == 6
    for spec in cat.specs:
        assert spec.rate_hz == (2000.0 if spec.kind == SensorKind.VIBRATION else 10.0)
        assert spec.name.startswith(spec.machine + ".")
    assert cat.machines() == sim.machines


def test_same_seed_same_frames_other_seed_differs() -> None:
    cfg = FactoryConfig.generate(n_machines=2, seed=4)
    a = run(FactorySim(cfg, seed=9, start_ns=START), [SEC // 2] * 4)
    b = run(FactorySim(cfg, seed=9, start_ns=START), [SEC // 2] * 4)
    c = run(FactorySim(cfg, seed=10, start_ns=START), [SEC // 2] * 4)
    assert np.array_equal(a.sensor, b.sensor) and np.array_equal(a.ts, b.ts)
    assert np.array_equal(a.value, b.value)
    assert np.array_equal(a.ts, c.ts)
    assert not np.allclose(a.value, c.value)


@pytest.mark.parametrize(
    "steps",
    [
        [SEC // 10] * 30,
        [SEC // 4, 1, 333_333, SEC // 2 - 333_334, 2 * SEC + SEC // 4],
        [499_999, 500_001] * 300 + [2 * SEC + 700_000_000],  # steps straddling samples
    ],
    ids=["100ms", "irregular", "sub-sample"],
)
def test_step_size_does_not_change_samples(steps: list[int]) -> None:
    cfg = FactoryConfig.generate(n_machines=2, seed=1)
    faults = all_kinds_faults(cfg)
    whole = run(FactorySim(cfg, seed=3, start_ns=START, faults=faults), [3 * SEC])
    parts = run(FactorySim(cfg, seed=3, start_ns=START, faults=faults), steps)
    assert sum(steps) == 3 * SEC
    assert np.array_equal(whole.sensor, parts.sensor)
    assert np.array_equal(whole.ts, parts.ts)
    assert np.array_equal(whole.value, parts.value)  # bit-identical, no seam at steps


def test_frames_are_sorted_typed_and_cover_the_step_exactly() -> None:
    sim = FactorySim(FactoryConfig.generate(n_machines=3), seed=2, start_ns=START)
    f = sim.step(SEC)
    assert f.is_sorted()
    assert (f.sensor.dtype, f.ts.dtype, f.value.dtype) == (np.uint32, np.int64, np.float32)
    assert f.ts.min() == START and f.ts.max() < START + SEC
    assert sim.now_ns == START + SEC
    assert np.isfinite(f.value).all()
    g = sim.step(SEC)
    assert g.ts.min() == START + SEC


def test_rates_and_timestamps_per_sensor() -> None:
    sim = FactorySim(FactoryConfig.generate(n_machines=2), seed=0, start_ns=START)
    f = sim.step(2 * SEC)
    counts = np.bincount(f.sensor, minlength=len(sim.catalog))
    for i, spec in enumerate(sim.catalog.specs):
        assert counts[i] == 2 * spec.rate_hz
        ts = f.ts[f.sensor == i]
        assert ts[0] == START
        assert (np.diff(ts) == SEC // int(spec.rate_hz)).all()


def test_zero_step_is_empty_and_negative_step_is_refused() -> None:
    sim = FactorySim(FactoryConfig.generate(n_machines=1), seed=0, start_ns=START)
    assert len(sim.step(0)) == 0
    assert sim.now_ns == START
    with pytest.raises(ConfigError, match="dt_ns"):
        sim.step(-1)


def test_vibration_peaks_at_shaft_speed_with_smaller_harmonics() -> None:
    cfg = FactoryConfig.generate(n_machines=2, seed=5)
    sim = FactorySim(cfg, seed=5)
    f = sim.step(8 * SEC)
    for m in cfg.machines:
        _, v = series(f, sim, f"{m.name}.vib_x")
        spec = np.abs(np.fft.rfft(v - v.mean()))
        freqs = np.fft.rfftfreq(v.size, 1 / 2000)
        peak = freqs[spec.argmax()]
        assert abs(peak - m.shaft_hz) < 0.5  # speed wobbles by 1 %
        one_x, two_x, three_x = (
            spec[np.abs(freqs - h * m.shaft_hz) < 1.0].max() for h in (1, 2, 3)
        )
        assert two_x < one_x / 1.5
        assert three_x > 5 * np.median(spec)  # harmonics stand out of the noise


def test_explicit_regimes_drive_process_signals_and_temperature_lags() -> None:
    load = LoadProfile(regimes=((0.0, 0.3), (20.0, 0.9)), ramp_s=2.0, wander=0.0)
    machine = MachineSpec(name="gw9.m01", temp_tau_s=10.0)
    cfg = quiet(FactoryConfig(machines=(machine,), load=load))
    sim = FactorySim(cfg, seed=0)
    f = sim.step(80 * SEC)
    _, p = series(f, sim, "gw9.m01.pressure")
    _, c = series(f, sim, "gw9.m01.current")
    _, temp = series(f, sim, "gw9.m01.temp")
    t = np.arange(800) / 10
    before, after = t < 20, t >= 22
    assert np.allclose(p[before], 4.0 + 1.0 * 0.3, atol=1e-5)
    assert np.allclose(p[after], 4.0 + 1.0 * 0.9, atol=1e-5)
    assert np.allclose(c[after], 4.0 + 6.0 * 0.9, atol=1e-5)
    # First-order lag: steady before, ~63 % of the step one tau after the ramp's middle.
    assert np.allclose(temp[before], 35.0 + 10.0 * 0.3, atol=1e-4)
    rise = (temp - temp[0]) / (10.0 * 0.6)
    assert 0.55 < rise[t == 31][0] < 0.70
    assert rise[-1] > 0.99
    assert (np.diff(temp[t >= 20]) >= 0).all()  # smooth, monotone approach


def test_default_load_varies_moderately() -> None:
    cfg = quiet(FactoryConfig.generate(n_machines=3, seed=2))
    sim = FactorySim(cfg, seed=2)
    f = sim.step(300 * SEC)
    for m in cfg.machines:
        _, p = series(f, sim, f"{m.name}.pressure")
        _, temp = series(f, sim, f"{m.name}.temp")
        load = (p - m.pressure_base) / m.pressure_gain
        assert load.min() > 0.62 and load.max() < 0.78  # 0.7 +- wander +- regime span
        assert load.max() - load.min() > 0.04  # it does move
        assert np.abs(np.diff(temp)).max() * 10 < 0.02  # degC/s: far below overheating


def test_config_parse_names_bad_fields() -> None:
    good = {"machines": [{"name": "gw1.m01"}]}
    assert FactoryConfig.parse(good).machines[0].shaft_hz == 25.0
    cases = {
        "vib_rate_hz": {**good, "vib_rate_hz": 3000},
        "machines.0.shaft_hz": {"machines": [{"name": "gw1.m01", "shaft_hz": -1}]},
        "duplicate": {"machines": [{"name": "a"}, {"name": "a"}]},
        "Nyquist": {"machines": [{"name": "a", "resonance_hz": 1200}]},
        "regimes": {**good, "load": {"regimes": [[10, 0.5], [11, 0.6]]}},
        "machines.0.colour": {"machines": [{"name": "a", "colour": "red"}]},
    }
    for needle, data in cases.items():
        with pytest.raises(ConfigError, match=needle):
            FactoryConfig.parse(data)


def test_generate_varies_machines_deterministically() -> None:
    a = FactoryConfig.generate(n_machines=6, gateway="gw3", seed=11)
    assert a == FactoryConfig.generate(n_machines=6, gateway="gw3", seed=11)
    assert a != FactoryConfig.generate(n_machines=6, gateway="gw3", seed=12)
    speeds = [m.shaft_hz for m in a.machines]
    assert all(20 <= s <= 30 for s in speeds) and len(set(speeds)) == 6
    assert len({round(m.vib_amp, 6) for m in a.machines}) == 6
    assert a.machines[2].name == "gw3.m03"
    with pytest.raises(ConfigError, match="n_machines"):
        FactoryConfig.generate(n_machines=0)
    with pytest.raises(ConfigError, match="seed"):
        FactorySim(a, seed=-1)


def test_public_api() -> None:
    assert sim_pkg.__all__ == sorted(sim_pkg.__all__)
    for name in sim_pkg.__all__:
        assert getattr(sim_pkg, name) is not None

"""Faults: each kind changes the right statistic, only on its sensors and inside its window;
labels match; the scheduler's constraints; a reference detector catches every kind."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgeloop.errors import ConfigError
from edgeloop.sim.factory import FactoryConfig, FactorySim
from edgeloop.sim.faults import FaultKind, FaultSpec, schedule_faults
from edgeloop.telemetry.frame import Frame, SensorKind

SEC = 1_000_000_000
START = 1_800_000_000 * SEC
CFG = FactoryConfig.generate(n_machines=2, seed=21)
M1, M2 = CFG.machines[0].name, CFG.machines[1].name
T0, T1 = START + 10 * SEC, START + 15 * SEC  # the fault window of the single-fault tests


def run(
    faults: list[FaultSpec], seconds: int = 18, cfg: FactoryConfig = CFG
) -> tuple[Frame, FactorySim]:
    sim = FactorySim(cfg, seed=8, start_ns=START, faults=faults)
    frames = [sim.step(SEC) for _ in range(seconds)]
    assert all(f.is_sorted() for f in frames)
    return Frame.concat(frames), sim


def series(frame: Frame, sim: FactorySim, name: str) -> tuple[np.ndarray, np.ndarray]:
    sel = frame.sensor == sim.catalog.index(name)
    return frame.ts[sel], frame.value[sel].astype(np.float64)


def high_band(x: np.ndarray, rate: float = 2000.0) -> float:
    """Energy above 500 Hz."""
    p = np.abs(np.fft.rfft(x - x.mean())) ** 2
    return float(p[np.fft.rfftfreq(x.size, 1 / rate) >= 500].sum())


def kurtosis(x: np.ndarray) -> float:
    c = x - x.mean()
    var = (c**2).mean()
    return float((c**4).mean() / var**2) if var > 0 else 0.0


def amplitude_at(x: np.ndarray, hz: float, rate: float = 2000.0) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    return float(spec[np.abs(freqs - hz) < 1.5].max())


SPECS = {
    FaultKind.BEARING_WEAR: FaultSpec(FaultKind.BEARING_WEAR, M1, T0, T1),
    FaultKind.IMBALANCE: FaultSpec(FaultKind.IMBALANCE, M1, T0, T1),
    FaultKind.OVERHEATING: FaultSpec(FaultKind.OVERHEATING, M1, T0, T1),
    FaultKind.STUCK_SENSOR: FaultSpec(FaultKind.STUCK_SENSOR, M1, T0, T1, f"{M1}.pressure"),
    FaultKind.DROPOUT: FaultSpec(FaultKind.DROPOUT, M1, T0, T1, f"{M1}.vib_y"),
}
CLEAN, CLEAN_SIM = run([])


@pytest.mark.parametrize("kind", list(FaultKind))
def test_fault_touches_only_its_sensors_inside_its_window(kind: FaultKind) -> None:
    spec = SPECS[kind]
    frame, sim = run([spec])
    (label,) = sim.faults
    assert (label.machine, label.kind, label.start_ns, label.end_ns) == (M1, kind, T0, T1)
    assert label.sensors == spec.sensors()
    for name in sim.catalog.names():
        ts, v = series(frame, sim, name)
        ts0, v0 = series(CLEAN, CLEAN_SIM, name)
        if name not in label.sensors:
            assert np.array_equal(ts, ts0) and np.array_equal(v, v0), name
            continue
        out0 = (ts0 < T0) | (ts0 >= T1)
        out = (ts < T0) | (ts >= T1)
        assert np.array_equal(ts[out], ts0[out0]) and np.array_equal(v[out], v0[out0]), name
        if kind != FaultKind.DROPOUT:
            assert not np.array_equal(v[~out], v0[~out0]), name  # and it does change inside


def test_labels_name_the_affected_sensors() -> None:
    assert SPECS[FaultKind.BEARING_WEAR].sensors() == tuple(f"{M1}.vib_{a}" for a in "xyz")
    assert SPECS[FaultKind.IMBALANCE].sensors() == tuple(f"{M1}.vib_{a}" for a in "xyz")
    assert SPECS[FaultKind.OVERHEATING].sensors() == (f"{M1}.temp",)
    assert SPECS[FaultKind.STUCK_SENSOR].label().sensors == (f"{M1}.pressure",)
    label = SPECS[FaultKind.DROPOUT].label()
    assert label.covers(T0) and label.covers(T1 - 1) and not label.covers(T1)


def test_bearing_wear_raises_high_band_energy_and_grows() -> None:
    frame, sim = run([SPECS[FaultKind.BEARING_WEAR]])
    for axis, min_gain in (("x", 3.0), ("y", 2.0)):
        ts, v = series(frame, sim, f"{M1}.vib_{axis}")
        before = v[(ts >= T0 - SEC) & (ts < T0)]
        first = v[(ts >= T0) & (ts < T0 + SEC)]
        last = v[(ts >= T1 - SEC) & (ts < T1)]
        assert high_band(first) > min_gain * high_band(before)
        assert high_band(last) > 2 * high_band(first)  # wear grows over the fault
        assert kurtosis(last) > kurtosis(before) + 0.5  # impulsive


def test_imbalance_multiplies_the_shaft_rate_component() -> None:
    frame, sim = run([SPECS[FaultKind.IMBALANCE]])
    shaft = CFG.machines[0].shaft_hz
    for axis in "xy":
        ts, v = series(frame, sim, f"{M1}.vib_{axis}")
        before = v[(ts >= T0 - 2 * SEC) & (ts < T0)]
        during = v[(ts >= T0 + SEC) & (ts < T0 + 3 * SEC)]
        ratio = amplitude_at(during, shaft) / amplitude_at(before, shaft)
        assert 2.6 < ratio < 3.4
        assert np.sqrt((during**2).mean()) > 2 * np.sqrt((before**2).mean())


def test_overheating_drifts_up_fast_and_returns() -> None:
    frame, sim = run([SPECS[FaultKind.OVERHEATING]])
    ts, v = series(frame, sim, f"{M1}.temp")
    before = v[(ts >= T0 - 5 * SEC) & (ts < T0)]
    t = (ts - T0) / 1e9
    rising = (t >= 0) & (t < 3.75)
    slope = np.polyfit(t[rising], v[rising], 1)[0]
    slope_before = np.polyfit(t[t < 0][-50:], v[t < 0][-50:], 1)[0]
    assert 1.8 < slope < 2.2 and abs(slope_before) < 0.1  # degC/s
    normal_top = before.max()
    assert v[(t >= 1.0) & (t < 2.0)].min() > normal_top + 1.0  # out of range within 1-2 s
    after = v[(ts >= T1) & (ts < T1 + 2 * SEC)]
    assert abs(after.mean() - before.mean()) < 0.3  # back to normal


def test_stuck_sensor_repeats_its_last_value_exactly() -> None:
    frame, sim = run([SPECS[FaultKind.STUCK_SENSOR]])
    ts, v = series(frame, sim, f"{M1}.pressure")
    inside = (ts >= T0) & (ts < T1)
    last_before = v[ts < T0][-1]
    assert inside.sum() == 50
    assert (v[inside] == last_before).all()
    assert v[(ts >= T1) & (ts < T1 + 2 * SEC)].std() > 0.01  # unstuck afterwards


def test_stuck_vibration_channel_has_zero_variance() -> None:
    frame, sim = run([FaultSpec(FaultKind.STUCK_SENSOR, M2, T0, T1, f"{M2}.vib_z")])
    ts, v = series(frame, sim, f"{M2}.vib_z")
    inside = (ts >= T0) & (ts < T1)
    assert v[inside].std() == 0.0 and v[inside][0] == v[ts < T0][-1]


def test_dropout_emits_nothing_then_resumes() -> None:
    frame, sim = run([SPECS[FaultKind.DROPOUT]])
    ts, _ = series(frame, sim, f"{M1}.vib_y")
    assert ((ts >= T0) & (ts < T1)).sum() == 0
    assert ts[ts < T0][-1] == T0 - 500_000 and ts[ts >= T1][0] == T1
    assert len(ts) == 18 * 2000 - 5 * 2000
    assert sim.suppressed == 5 * 2000 and sim.emitted == len(frame)
    assert CLEAN_SIM.emitted == len(CLEAN) == len(frame) + sim.suppressed


def test_severity_scales_the_fault() -> None:
    mild = FaultSpec(FaultKind.OVERHEATING, M1, T0, T1, severity=0.5)
    frame, sim = run([mild])
    ts, v = series(frame, sim, f"{M1}.temp")
    t = (ts - T0) / 1e9
    rising = (t >= 0) & (t < 3.75)
    assert 0.8 < np.polyfit(t[rising], v[rising], 1)[0] < 1.2


def test_injecting_mid_run_equals_configuring_up_front() -> None:
    spec = SPECS[FaultKind.STUCK_SENSOR]
    planned, _ = run([spec])
    sim = FactorySim(CFG, seed=8, start_ns=START)
    frames = [sim.step(SEC) for _ in range(9)]
    sim.inject(spec)  # e.g. the demo's "break something now"
    frames += [sim.step(SEC) for _ in range(9)]
    live = Frame.concat(frames)
    assert sim.faults == [spec.label()]
    assert np.array_equal(live.ts, planned.ts) and np.array_equal(live.value, planned.value)


def test_fault_spec_and_injection_are_validated() -> None:
    with pytest.raises(ConfigError, match="end_ns"):
        FaultSpec(FaultKind.IMBALANCE, M1, T1, T0)
    with pytest.raises(ConfigError, match=r"fault\.sensor: required"):
        FaultSpec(FaultKind.DROPOUT, M1, T0, T1)
    with pytest.raises(ConfigError, match="not a sensor of machine"):
        FaultSpec(FaultKind.STUCK_SENSOR, M1, T0, T1, f"{M2}.temp")
    with pytest.raises(ConfigError, match="unknown kind"):
        FaultSpec("melting", M1, T0, T1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="severity"):
        FaultSpec(FaultKind.IMBALANCE, M1, T0, T1, severity=0)
    assert FaultSpec("imbalance", M1, T0, T1).kind is FaultKind.IMBALANCE  # type: ignore[arg-type]
    sim = FactorySim(CFG, seed=0)
    with pytest.raises(ConfigError, match="unknown machine"):
        sim.inject(FaultSpec(FaultKind.IMBALANCE, "gw7.m01", T0, T1))
    with pytest.raises(ConfigError, match="unknown sensor"):
        sim.inject(FaultSpec(FaultKind.DROPOUT, M1, T0, T1, f"{M1}.humidity"))


# --- scheduling ------------------------------------------------------------------------

MACHINES = [f"gw1.m{i:02d}" for i in range(1, 7)]


@pytest.mark.parametrize("seed", range(12))
def test_schedule_respects_every_constraint(seed: int) -> None:
    n, duration, gap, warmup = 12, 120.0, 4.0, 8.0
    specs = schedule_faults(MACHINES, START, duration, n, seed=seed, min_gap_s=gap, warmup_s=warmup)
    assert len(specs) == n
    assert {s.kind for s in specs} == set(FaultKind)  # every kind at least once
    assert set(s.machine for s in specs) == set(MACHINES)  # spread over machines
    starts = [s.start_ns for s in specs]
    assert starts == sorted(starts)
    for s in specs:
        assert s.start_ns >= START + warmup * SEC
        assert s.end_ns <= START + duration * SEC
        assert 3 * SEC <= s.end_ns - s.start_ns <= 6 * SEC
        if s.kind in (FaultKind.STUCK_SENSOR, FaultKind.DROPOUT):
            assert s.sensor is not None and s.sensor.startswith(s.machine + ".")
    for m in MACHINES:
        mine = [s for s in specs if s.machine == m]
        for a, b in itertools.pairwise(mine):
            assert b.start_ns >= a.end_ns + gap * SEC  # no overlap, with the gap
    # Spread over time: every third of the post-warm-up span holds some fault.
    thirds = np.floor((np.array(starts) - START - warmup * SEC) / ((duration - warmup) * SEC / 3))
    assert set(thirds.tolist()) == {0.0, 1.0, 2.0}


def test_schedule_is_deterministic_and_handles_few_faults() -> None:
    a = schedule_faults(MACHINES, 0, 60, 3, seed=5)
    assert a == schedule_faults(MACHINES, 0, 60, 3, seed=5)
    assert a != schedule_faults(MACHINES, 0, 60, 3, seed=6)
    assert len({s.kind for s in a}) == 3  # fewer faults than kinds: distinct kinds
    only = schedule_faults(MACHINES, 0, 60, 4, kinds=["dropout"], seed=1)
    assert {s.kind for s in only} == {FaultKind.DROPOUT}
    assert schedule_faults(MACHINES, 0, 60, 0) == []


def test_schedule_refuses_what_cannot_fit() -> None:
    with pytest.raises(ConfigError, match="n_faults"):
        schedule_faults(["gw1.m01"], 0, 40, 10, min_gap_s=5)
    with pytest.raises(ConfigError, match="duration_s"):
        schedule_faults(MACHINES, 0, 10, 2, warmup_s=8)
    with pytest.raises(ConfigError, match="kinds"):
        schedule_faults(MACHINES, 0, 60, 2, kinds=["melting"])
    with pytest.raises(ConfigError, match="machines"):
        schedule_faults([], 0, 60, 2)
    with pytest.raises(ConfigError, match="fault_s"):
        schedule_faults(MACHINES, 0, 60, 2, fault_s=(5, 3))


# --- a reference detector catches every kind within two windows ----------------------


def _windows(ts: np.ndarray, v: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = v.size // w
    return v[: k * w].reshape(k, w), ts[: k * w : w], ts[w - 1 : k * w : w]


def _features(x: np.ndarray, vibration: bool) -> np.ndarray:
    if vibration:
        hb = np.log(np.array([high_band(row) for row in x]) + 1e-12)
        kurt = [kurtosis(row) for row in x]
        return np.column_stack([np.sqrt((x**2).mean(1)), hb, kurt])
    return np.column_stack([x.mean(1), x.std(1)])


def _robust_z(feats: np.ndarray, base: np.ndarray) -> np.ndarray:
    med = np.median(feats[base], 0)
    mad = np.median(np.abs(feats[base] - med), 0) * 1.4826
    return np.abs(feats - med) / np.maximum(mad, 1e-9)


def test_reference_detector_catches_each_kind_within_two_windows() -> None:
    """A plain robust-z detector over 1024-sample vibration windows and 10-sample process
    windows (baseline: windows between warm-up and onset) flags every fault in one of the
    first two windows that reach its onset: |z| >= 8, exactly zero variance, or silence."""
    cfg = FactoryConfig.generate(n_machines=3, seed=31)
    specs = schedule_faults([m.name for m in cfg.machines], START, 70, 10, seed=31)
    frame, sim = run(specs, seconds=70, cfg=cfg)
    for label in sim.faults:
        caught = False
        for name in label.sensors:
            ts, v = series(frame, sim, name)
            if label.kind == FaultKind.DROPOUT:
                later = ts[ts >= label.start_ns]
                silence = (later[0] if later.size else START + 70 * SEC) - ts[ts < label.start_ns][
                    -1
                ]
                caught |= bool(silence >= SEC)  # stale after 1 s, i.e. within two windows
                continue
            vib = sim.catalog[sim.catalog.index(name)].kind == SensorKind.VIBRATION
            x, w0, w1 = _windows(ts, v, 1024 if vib else 10)
            feats = _features(x, vib)
            base = (w0 >= START + 8 * SEC) & (w1 < label.start_ns)
            first_two = np.flatnonzero(w1 >= label.start_ns)[:2]
            z = _robust_z(feats, base)[first_two]
            zero_var = x[first_two].std(axis=1) == 0
            caught |= bool((z >= 8).any() or zero_var.any())
        assert caught, label


def test_default_load_does_not_trip_the_reference_detector() -> None:
    """No faults: after a 30 s baseline the same detector stays below |z| = 8 for 90 s of
    default load (regime shifts, wander, speed wobble) on every sensor and feature."""
    cfg = FactoryConfig.generate(n_machines=3, seed=32)
    frame, sim = run([], seconds=120, cfg=cfg)
    worst = 0.0
    for i, spec in enumerate(sim.catalog.specs):
        sel = frame.sensor == i
        vib = spec.kind == SensorKind.VIBRATION
        x, w0, _ = _windows(frame.ts[sel], frame.value[sel].astype(np.float64), 1024 if vib else 10)
        z = _robust_z(_features(x, vib), w0 < START + 30 * SEC)
        worst = max(worst, float(z[w0 >= START + 30 * SEC].max()))
    assert worst < 8.0

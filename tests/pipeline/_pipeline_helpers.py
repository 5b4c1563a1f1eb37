"""Helpers shared by the pipeline tests: small catalogs and seeded synthetic streams.

Imported as a plain module (pytest puts this directory on ``sys.path``).
"""

from __future__ import annotations

import numpy as np

from edgeloop.telemetry.frame import Frame, SensorCatalog, SensorKind, SensorSpec

T0 = 1_700_000_000_000_000_000


def factory_catalog(machines: int = 2) -> SensorCatalog:
    """Per machine: one vibration (2 kHz) and temperature/pressure/current (10 Hz)."""
    specs = []
    for m in range(machines):
        specs += [
            SensorSpec(f"m{m}/vib", f"m{m}", SensorKind.VIBRATION, 2000.0, "g"),
            SensorSpec(f"m{m}/temp", f"m{m}", SensorKind.TEMPERATURE, 10.0, "C"),
            SensorSpec(f"m{m}/press", f"m{m}", SensorKind.PRESSURE, 10.0, "bar"),
            SensorSpec(f"m{m}/current", f"m{m}", SensorKind.CURRENT, 10.0, "A"),
        ]
    return SensorCatalog.of(specs)


def factory_frame(
    catalog: SensorCatalog, t0_s: float, seconds: float, rng: np.random.Generator
) -> Frame:
    """``seconds`` of data from ``t0_s`` for every sensor at its rate, sorted by sensor."""
    sensors, ts, vals = [], [], []
    for i, spec in enumerate(catalog.specs):
        k0 = round(t0_s * spec.rate_hz)
        k = np.arange(k0, k0 + round(seconds * spec.rate_hz))
        t = k / spec.rate_hz
        if spec.kind is SensorKind.VIBRATION:
            v = np.sin(2 * np.pi * 50 * t) + 0.1 * rng.standard_normal(k.size)
        else:
            v = 20.0 + i + 0.2 * rng.standard_normal(k.size)
        sensors.append(np.full(k.size, i))
        ts.append(T0 + np.round(t * 1e9).astype(np.int64))
        vals.append(v)
    return Frame.from_arrays(np.concatenate(sensors), np.concatenate(ts), np.concatenate(vals))

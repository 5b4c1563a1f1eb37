"""Throughput of the codec, the validator and the boundary (not a test; run it directly).

    .venv/bin/python tests/telemetry/bench_telemetry.py

Workload: 10 vibration sensors x 10,000 samples at 10 kHz (50 Hz and 120 Hz tones, a
1.8 kHz harmonic, Gaussian noise), float32, sorted by (sensor, ts) = 100,000 samples.
Every figure is the median of repeated runs; the machine is shared, so expect noise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np

from edgeloop.telemetry import codec
from edgeloop.telemetry.boundary import frame_from_csv, frame_from_records
from edgeloop.telemetry.frame import Frame, SensorCatalog, SensorKind, SensorSpec
from edgeloop.telemetry.validate import FrameValidator

T0 = 1_700_000_000_000_000_000


def median_s(f: Callable[[], object], reps: int = 31) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return sorted(times)[reps // 2]


def vibration_frame(sensors: int = 10, per: int = 10_000, rate: int = 10_000) -> Frame:
    rng = np.random.default_rng(0)
    t = np.arange(per) / rate
    value = np.concatenate(
        [
            0.8 * np.sin(2 * np.pi * 50 * t + s)
            + 0.3 * np.sin(2 * np.pi * 120 * t)
            + 0.05 * np.sin(2 * np.pi * 1800 * t)
            + 0.1 * rng.standard_normal(per)
            for s in range(sensors)
        ]
    )
    sensor = np.repeat(np.arange(sensors), per)
    ts = np.tile(T0 + np.arange(per) * (10**9 // rate), sensors)
    return Frame.from_arrays(sensor, ts, value)


def main() -> None:
    frame = vibration_frame()
    names = [f"m{i // 3:02d}.vib.{i}" for i in range(10)]
    cat = SensorCatalog.of(SensorSpec(n, n[:3], SensorKind.VIBRATION) for n in names)
    mb = frame.nbytes / 1e6

    data = codec.encode_frame(frame, names)
    te = median_s(lambda: codec.encode_frame(frame, names))
    td = median_s(lambda: codec.decode_frame(data))
    value_ratio = frame.value.nbytes / len(codec._enc_f4_shuffled(frame.value))
    adc = (np.round(frame.value / 4.0 * 32767) * (4.0 / 32767)).astype(np.float32)
    adc_ratio = adc.nbytes / len(codec._enc_f4_shuffled(adc))
    print(f"codec: {len(frame)} samples, {frame.nbytes} B raw -> {len(data)} B")
    print(f"  ratio {frame.nbytes / len(data):.2f} (value column {value_ratio:.2f}; ", end="")
    print(f"16-bit-ADC-quantised values {adc_ratio:.2f})")
    print(f"  encode {te * 1e3:.2f} ms ({mb / te:.0f} MB/s raw), ", end="")
    print(f"decode {td * 1e3:.2f} ms ({mb / td:.0f} MB/s raw)")

    now = int(frame.ts.max()) + 10**9
    interleaved = frame.take(np.argsort(frame.ts, kind="stable"))
    with_nan = Frame(frame.sensor, frame.ts, frame.value.copy())
    with_nan.value[::1000] = np.nan
    late = Frame(interleaved.sensor, interleaved.ts.copy(), interleaved.value)
    late.ts[500::1000] -= 10**9
    cases = {
        "valid, sorted by sensor": frame,
        "valid, time-interleaved": interleaved,
        "100 NaNs, sorted": with_nan,
        "100 out-of-order, interleaved (sort path)": late,
    }
    print("validator (fresh FrameValidator per run):")
    for label, f in cases.items():

        def run(f: Frame = f) -> float:
            v = FrameValidator(cat)
            start = time.perf_counter()
            v.process(f, now)
            return time.perf_counter() - start

        t = sorted(run() for _ in range(31))[15]
        print(f"  {label}: {t * 1e3:.3f} ms ({len(f) / t / 1e6:.0f} M samples/s)")

    n = 100_000
    rows = list(
        zip(frame.sensor[:n].tolist(), frame.ts[:n].tolist(), frame.value[:n].tolist(), strict=True)
    )
    text = "sensor,ts,value\n" + "".join(f"{names[s]},{t},{x!r}\n" for s, t, x in rows)
    records = json.loads(
        json.dumps([{"sensor": names[s], "ts": t, "value": x} for s, t, x in rows])
    )
    tc = median_s(lambda: frame_from_csv(text, cat), 5)
    tr = median_s(lambda: frame_from_records(records, cat), 5)
    print(f"boundary: frame_from_csv {n / tc / 1e6:.2f} M rows/s, ", end="")
    print(f"frame_from_records {n / tr / 1e6:.2f} M records/s")


if __name__ == "__main__":
    main()

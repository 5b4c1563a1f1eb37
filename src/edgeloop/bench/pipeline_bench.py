"""Benchmark: the edge pipeline against River's HalfSpaceTrees on the same stream.

The workload is a seeded, vibration-like stream (per sensor: a fundamental between 20
and 120 Hz, two harmonics and Gaussian noise, sampled at 2 kHz), cut into frames of
``frame_s`` seconds sorted by sensor, exactly as the simulator emits them. Generation is
not timed.

* **pipeline**: a fresh :class:`~edgeloop.pipeline.Pipeline` per repetition with one
  window group (1024-sample tumbling windows; mean, std, rms, p2p, kurtosis, crest and
  8 log rfft band energies), the robust detector, and the node's decision step
  (:class:`~edgeloop.node.decide.Decider`: incidents per machine, dropout check, rules).
* **river**: ``anomaly.HalfSpaceTrees`` (seeded, value limits given) doing ``score_one``
  and ``learn_one`` per sample on the first ``river_samples`` samples of the same
  stream, fed as ``{"value": v}`` dicts — the documented way to use River.

Throughput is the median over ``reps``. Everything runs on one core: numpy's FFT is
single-threaded, and BLAS pools are limited to one thread with ``threadpoolctl`` when it
is installed (otherwise set ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
MKL_NUM_THREADS=1``; ``threads_limited`` in the result says which).

Run it with::

    python -m edgeloop.bench.pipeline_bench --sensors 100 --seconds 20 --reps 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgeloop.node.decide import Decider
from edgeloop.pipeline.pipeline import Pipeline
from edgeloop.pipeline.spec import load_spec
from edgeloop.telemetry.frame import Frame, SensorCatalog, SensorKind, SensorSpec

__all__ = ["BENCH_SPEC", "bench_pipeline", "make_stream"]

RATE_HZ = 2000
T0_NS = 1_700_000_000_000_000_000

BENCH_SPEC = """
version: 1
name: bench
windows:
  - group: vibration
    kinds: [vibration]
    size: 1024
    hop: 1024
    features: [mean, std, rms, p2p, kurtosis, crest]
    spectrum: {bands: 8, log: true}
summaries: null
detectors:
  - {group: vibration, type: robust, params: {alpha: 0.02, z_threshold: 6.0, warmup: 20}}
"""


def make_stream(
    n_sensors: int, seconds: float, frame_s: float = 1.0, seed: int = 0
) -> tuple[SensorCatalog, list[Frame]]:
    """A seeded vibration-like stream as frames sorted by (sensor, ts).

    Returns:
        the catalog (``n_sensors`` vibration sensors at 2 kHz) and the frames.
    """
    rng = np.random.default_rng(seed)
    catalog = SensorCatalog.of(
        SensorSpec(f"m{i // 4}/vib{i % 4}", f"m{i // 4}", SensorKind.VIBRATION, RATE_HZ, "g")
        for i in range(n_sensors)
    )
    f0 = rng.uniform(20.0, 120.0, n_sensors)[:, None]
    amp = rng.uniform(0.5, 2.0, n_sensors)[:, None]
    phase = rng.uniform(0, 2 * np.pi, (n_sensors, 3))
    per_frame = max(1, round(frame_s * RATE_HZ))
    total = max(per_frame, round(seconds * RATE_HZ))
    sensor_col = np.repeat(np.arange(n_sensors, dtype=np.uint32), per_frame)
    step_ns = 1_000_000_000 // RATE_HZ
    frames = []
    for start in range(0, total - per_frame + 1, per_frame):
        k = np.arange(start, start + per_frame)
        t = (k / RATE_HZ)[None, :]
        w = 2 * np.pi * f0 * t
        x = amp * (
            np.sin(w + phase[:, :1])
            + 0.5 * np.sin(2 * w + phase[:, 1:2])
            + 0.25 * np.sin(3 * w + phase[:, 2:3])
        )
        x += rng.normal(0.0, 0.1, x.shape) * amp
        ts = T0_NS + k.astype(np.int64) * step_ns
        frames.append(
            Frame(
                sensor_col,
                np.tile(ts, n_sensors),
                np.ascontiguousarray(x, dtype=np.float32).ravel(),
            )
        )
    return catalog, frames


@contextlib.contextmanager
def _one_thread() -> Iterator[bool]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - depends on the environment
        yield False
        return
    with threadpool_limits(limits=1):
        yield True


def _time_pipeline(
    catalog: SensorCatalog, frames: list[Frame], summaries: bool = False
) -> tuple[float, int, int]:
    """Seconds to run a fresh pipeline over ``frames``; windows and incidents opened."""
    spec = (
        BENCH_SPEC.replace("summaries: null", "summaries: {period_s: 1.0}")
        if summaries
        else BENCH_SPEC
    )
    pipe = Pipeline.from_spec(load_spec(spec), catalog)
    # The node's own decision step: incidents per machine, dropout checks, rules.
    decider = Decider("bench", catalog)
    step = 1_000_000_000 // RATE_HZ
    windows = anomalous = 0
    t = time.perf_counter()
    for frame in frames:
        now = int(frame.ts[-1]) + step
        out = pipe.process(frame, now)
        windows += out.windows
        decider.observe(frame, now)
        anomalous += len(decider.decide(out.features, out.scores, now))
    return time.perf_counter() - t, windows, anomalous


def _time_river(values: np.ndarray[Any, Any], seed: int) -> float:
    from river import anomaly

    lim = float(np.abs(values).max()) or 1.0
    hst: Any = anomaly.HalfSpaceTrees(seed=seed, limits={"value": (-lim, lim)})  # untyped
    xs = values.tolist()
    t = time.perf_counter()
    for v in xs:
        x = {"value": v}
        hst.score_one(x)
        hst.learn_one(x)
    return time.perf_counter() - t


def bench_pipeline(
    n_sensors: int = 100,
    seconds: float = 20.0,
    reps: int = 3,
    river_samples: int = 20_000,
    frame_s: float = 1.0,
    seed: int = 0,
    summaries: bool = False,
) -> dict[str, Any]:
    """Time the pipeline and River's HalfSpaceTrees on one seeded stream.

    Args:
        n_sensors: vibration sensors in the stream.
        seconds: stream length (each sensor at 2 kHz).
        reps: repetitions; figures are medians.
        river_samples: samples River processes per repetition (it is ~1000x slower).
        frame_s: seconds of data per frame.
        seed: seeds the stream and River.
        summaries: also time the pipeline with per-second summaries of every sample
            (``pipeline_with_summaries_samples_per_s``); not part of the comparison.

    Returns:
        ``pipeline_samples_per_s``, ``river_samples_per_s``, ``ratio_vs_river`` and the
        details of the run (sizes, per-repetition seconds, window counts).
    """
    catalog, frames = make_stream(n_sensors, seconds, frame_s, seed)
    samples = sum(len(f) for f in frames)
    river_values = np.concatenate([f.value for f in frames])[:river_samples]
    pipe_s: list[float] = []
    river_s: list[float] = []
    summ_s: list[float] = []
    windows = anomalous = 0
    with _one_thread() as limited:
        for _ in range(reps):
            dt, windows, anomalous = _time_pipeline(catalog, frames)
            pipe_s.append(dt)
            river_s.append(_time_river(river_values, seed))
            if summaries:
                summ_s.append(_time_pipeline(catalog, frames, summaries=True)[0])
    pipe_rate = samples / statistics.median(pipe_s)
    river_rate = river_values.size / statistics.median(river_s)
    extra = {}
    if summaries:
        extra["pipeline_with_summaries_samples_per_s"] = samples / statistics.median(summ_s)
    return {
        **extra,
        "pipeline_samples_per_s": pipe_rate,
        "river_samples_per_s": river_rate,
        "ratio_vs_river": pipe_rate / river_rate,
        "n_sensors": n_sensors,
        "samples": samples,
        "frames": len(frames),
        "frame_samples": len(frames[0]) if frames else 0,
        "windows": windows,
        "incidents": anomalous,
        "river_samples": int(river_values.size),
        "reps": reps,
        "pipeline_s": pipe_s,
        "river_s": river_s,
        "threads_limited": limited,
        "numpy": np.__version__,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sensors", type=int, default=100)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--river-samples", type=int, default=20_000)
    p.add_argument("--frame-s", type=float, default=1.0)
    p.add_argument("--summaries", action="store_true", help="also time with summaries")
    a = p.parse_args(argv)
    r = bench_pipeline(
        a.sensors, a.seconds, a.reps, a.river_samples, a.frame_s, summaries=a.summaries
    )
    print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()

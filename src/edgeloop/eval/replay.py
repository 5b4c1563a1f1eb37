"""Replay recorded series through a node's processing, as a gateway would run them.

Every series becomes a sensor of one node (:class:`~edgeloop.node.core.NodeCore`: the
validator, the pipeline of the given spec with its detectors, the decider), and the
series are fed side by side in frames of ``rows_per_frame`` rows each, in file order:
streaming and causal, a row's score is computed before any later row is seen. The
scores the node computes are taken from its ``score_sink`` and mapped back to rows.
Summaries are switched off: they feed only the uplink, which a replay does not have.

The replay clock is each file's own timestamps made strictly increasing by the
smallest step (1 ns) where a file repeats a timestamp or steps back: the validator
would otherwise reject the step back, and a joined group keys rows by time. Rows the
node did not score (before a detector's first window, or rejected as invalid) get 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edgeloop.node.build import build_core
from edgeloop.node.config import parse_node_config
from edgeloop.pipeline.spec import PipelineSpec
from edgeloop.pipeline.types import Features, Scores
from edgeloop.telemetry.frame import Frame, SensorCatalog, SensorKind, SensorSpec

__all__ = ["ReplayResult", "Stream", "replay", "replay_clock"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Stream:
    """One recorded series: a sensor ``name`` of ``machine``, times (ns) and values."""

    name: str
    machine: str
    ts_ns: I64
    values: F64


@dataclass(slots=True)
class ReplayResult:
    """Per-row scores of every stream that a detector scored (joined groups: the first
    sensor of each machine), the threshold they were combined under, and timings."""

    scores: dict[str, F64]
    threshold: float
    samples: int
    seconds: float
    cpu_seconds: float
    detector_seconds: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def samples_per_s(self) -> float:
        """Wall-clock throughput of the whole node path."""
        return self.samples / self.seconds if self.seconds > 0 else float("inf")

    @property
    def cpu_samples_per_s(self) -> float:
        """Throughput per core: samples over the process's CPU time (one thread works)."""
        return self.samples / self.cpu_seconds if self.cpu_seconds > 0 else float("inf")


def replay_clock(ts_ns: I64) -> I64:
    """``ts_ns`` made strictly increasing, moving each row forward by as little as needed."""
    k = np.arange(len(ts_ns), dtype=np.int64)
    out: I64 = np.maximum.accumulate(ts_ns - k) + k
    return out


def replay(
    streams: Sequence[Stream],
    spec: PipelineSpec,
    *,
    rows_per_frame: int = 1024,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Run ``streams`` through a node built from ``spec``; see the module docstring.

    Args:
        streams: the series; names must be unique.
        spec: the pipeline spec (e.g. a bundled preset).
        rows_per_frame: rows of each series per frame.
        progress: called as ``progress(stream_index, rows_done)`` after each frame.
    """
    # Summaries only feed the uplink, which a replay does not have.
    spec = spec.model_copy(update={"summaries": None})
    catalog = SensorCatalog.of(
        SensorSpec(s.name, s.machine, SensorKind.GENERIC, 1.0) for s in streams
    )
    config = parse_node_config(
        {"node_id": f"eval-{spec.name}", "decide": {"stale_after_s": 1e9}}, "eval node"
    )
    core = build_core(config, catalog, spec=spec)
    clocks = [replay_clock(s.ts_ns) for s in streams]
    got: list[tuple[npt.NDArray[np.uint32], I64, npt.NDArray[np.float32]]] = []
    thresholds: set[float] = set()

    def sink(feats: Features, scores: Scores) -> None:
        got.append((feats.sensor.copy(), feats.t1_ns.copy(), scores.score.copy()))
        thresholds.add(scores.threshold)

    core.score_sink = sink
    longest = max((len(s.ts_ns) for s in streams), default=0)
    samples = 0
    t_start, cpu_start = time.perf_counter(), time.process_time()
    for lo in range(0, longest, rows_per_frame):
        hi = lo + rows_per_frame
        live = [i for i, s in enumerate(streams) if len(s.ts_ns) > lo]
        frame = Frame.from_arrays(
            np.concatenate([np.full(len(clocks[i][lo:hi]), i, np.uint32) for i in live]),
            np.concatenate([clocks[i][lo:hi] for i in live]),
            np.concatenate([streams[i].values[lo:hi] for i in live]),
        )
        now = int(frame.ts.max())
        core.process(frame, now_ns=now, arrival_ns=time.perf_counter_ns())
        samples += len(frame)
        if progress is not None:
            for i in live:
                progress(i, min(hi, len(streams[i].ts_ns)))
    core.flush(now_ns=int(time.time_ns()))
    seconds = time.perf_counter() - t_start
    cpu_seconds = time.process_time() - cpu_start
    if len(thresholds) > 1:
        raise ValueError(f"the spec's groups score under different thresholds: {thresholds}")
    return ReplayResult(
        scores=_by_row(streams, clocks, got),
        threshold=thresholds.pop() if thresholds else 1.0,
        samples=samples,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        detector_seconds={f"{g}/{d}": ns / 1e9 for (g, d), ns in core.pipeline.detector_ns.items()},
        rejected={str(k): v for k, v in core.validator.rejects.items() if v},
    )


def _by_row(
    streams: Sequence[Stream],
    clocks: Sequence[I64],
    got: Sequence[tuple[npt.NDArray[np.uint32], I64, npt.NDArray[np.float32]]],
) -> dict[str, F64]:
    if not got:
        return {}
    sensor = np.concatenate([g[0] for g in got])
    t1 = np.concatenate([g[1] for g in got])
    score = np.concatenate([g[2] for g in got]).astype(np.float64)
    out: dict[str, F64] = {}
    for i in np.unique(sensor):
        mine = sensor == i
        rows = np.searchsorted(clocks[i], t1[mine])
        full = np.zeros(len(clocks[i]))
        full[rows] = score[mine]
        out[streams[i].name] = full
    return out

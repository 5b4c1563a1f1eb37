"""``edgeloop eval skab``: replay the SKAB experiments through a node and score them.

Each experiment is a machine of one node with its eight sensors; the pipeline preset
(``skab`` by default) joins them into one row per time step (``join: machine``). A row
is an outlier when the node's score reaches the preset's threshold; a change point is
the first row of each run of outliers (0 -> 1), unless the detector class defines its own
rule: a static ``changepoints(scores)`` over one machine's scores in time order. Outputs
follow SKAB's layout:
``<out>/<folder>/<file>.csv`` with ``datetime,anomaly,changepoint`` for every row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeloop.eval import skab
from edgeloop.eval.replay import ReplayResult, Stream, replay
from edgeloop.pipeline.spec import PipelineSpec

__all__ = ["SkabEval", "evaluate_skab", "rising_edges", "skab_streams"]

Bool = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class SkabEval:
    """Outlier and change-point scores over the experiments, and the replay's figures."""

    files: int
    rows: int
    threshold: float
    outliers: skab.OutlierResult
    changepoints: skab.ChangepointResult
    replay: ReplayResult

    def to_json(self) -> dict[str, Any]:
        o, c = self.outliers, self.changepoints
        return {
            "benchmark": "skab",
            "files": self.files,
            "rows": self.rows,
            "threshold": self.threshold,
            "outliers": {
                "f1": round(o.f1, 4),
                "far_pct": round(o.far, 2),
                "mar_pct": round(o.mar, 2),
                "tp": o.tp,
                "fp": o.fp,
                "fn": o.fn,
                "tn": o.tn,
            },
            "changepoints": {
                "scores": {p: round(v, 3) for p, v in c.scores.items()},
                "changepoints": c.changepoints,
                "detected": c.detected,
                "false_alarms": c.false_alarms,
            },
            "samples_per_s": round(self.replay.samples_per_s),
            "cpu_samples_per_s": round(self.replay.cpu_samples_per_s),
            "detector_samples_per_s": {
                d: round(self.replay.samples / s) if s > 0 else None
                for d, s in self.replay.detector_seconds.items()
            },
            "rows_per_s": round(self.rows / self.replay.seconds) if self.replay.seconds else None,
            "rejected": self.replay.rejected,
        }


def skab_streams(files: Sequence[skab.SkabFile]) -> list[Stream]:
    """Eight streams per experiment, ``<file>.<sensor>``, machine ``<file>``."""
    out = []
    for f in files:
        ts = f.timestamps.astype("datetime64[ns]").astype(np.int64)
        for j, sensor in enumerate(skab.SENSORS):
            out.append(Stream(f"{f.name}.{sensor}", f.name, ts, f.values[:, j]))
    return out


def rising_edges(anomalous: Bool) -> Bool:
    """True on the first row of every run of True."""
    edge = anomalous.copy()
    edge[1:] &= ~anomalous[:-1]
    return edge


def write_skab_results(
    out_dir: Path,
    files: Sequence[skab.SkabFile],
    anomaly: Mapping[str, Bool],
    cps: Mapping[str, Bool],
) -> None:
    for f in files:
        path = out_dir / f.name
        path.parent.mkdir(parents=True, exist_ok=True)
        stamps = np.datetime_as_string(f.timestamps, unit="s")
        lines = ["datetime,anomaly,changepoint"]
        lines += [
            f"{t.replace('T', ' ')},{int(a)},{int(c)}"
            for t, a, c in zip(stamps, anomaly[f.name], cps[f.name], strict=True)
        ]
        path.write_text("\n".join(lines) + "\n")


def evaluate_skab(
    data_dir: str | Path,
    spec: PipelineSpec,
    *,
    out_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    files: Sequence[skab.SkabFile] | None = None,
) -> SkabEval:
    """Replay the labelled experiments under ``data_dir``, write outputs, score."""
    files = list(files) if files is not None else skab.load_skab(data_dir)
    streams = skab_streams(files)
    first = {f.name: f"{f.name}.{skab.SENSORS[0]}" for f in files}
    per_stream = None if progress is None else _per_file(progress, len(skab.SENSORS))
    result = replay(streams, spec, progress=per_stream)
    rule = _changepoint_rule(spec)
    anomaly, cps = {}, {}
    for f in files:
        score = result.scores.get(first[f.name], np.zeros(len(f.timestamps)))
        anomaly[f.name] = score >= result.threshold
        cps[f.name] = rule(score) if rule is not None else rising_edges(anomaly[f.name])
    if out_dir is not None:
        write_skab_results(Path(out_dir), files, anomaly, cps)
    return SkabEval(
        files=len(files),
        rows=sum(len(f.timestamps) for f in files),
        threshold=result.threshold,
        outliers=skab.outlier_score(files, anomaly),
        changepoints=skab.changepoint_score(files, cps),
        replay=result,
    )


def _per_file(progress: Callable[[int, int], None], k: int) -> Callable[[int, int], None]:
    def each(stream: int, rows: int) -> None:
        if stream % k == 0:
            progress(stream // k, rows)

    return each


def _changepoint_rule(spec: PipelineSpec) -> Callable[[npt.NDArray[np.float64]], Bool] | None:
    """The detector's own ``changepoints(scores)`` rule when its class has one."""
    from edgeloop.detect import registry
    from edgeloop.pipeline.spec import RegisteredDetectorSpec

    for d in spec.detectors:
        if isinstance(d, RegisteredDetectorSpec):
            cls = registry.detector_class(d.type)
            rule = getattr(cls, "changepoints", None)
            if rule is not None:
                return rule  # type: ignore[no-any-return]
    return None

"""``edgeloop eval nab``: replay the NAB corpus through a node and score it.

Each file is a sensor of one node running the pipeline preset (``nab`` by default);
the scores are written in NAB's results layout (``<out>/<folder>/<detector>_<file>``,
columns ``timestamp,anomaly_score``, one row per data row) and scored two ways:

* **scoreboard**: one threshold per profile optimised over the files scored, as the
  published NAB scoreboard does;
* **fixed**: the preset's own threshold, unchanged for every file and profile — what a
  gateway running the preset acts on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.eval import nab
from edgeloop.eval.replay import F64, ReplayResult, Stream, replay
from edgeloop.pipeline.spec import PipelineSpec

__all__ = ["NabEval", "evaluate_nab", "nab_streams", "write_nab_results"]


@dataclass(frozen=True, slots=True)
class NabEval:
    """Scores of one detector on a NAB corpus, both ways, and the replay's figures."""

    detector: str
    files: int
    rows: int
    scoreboard: dict[str, nab.NabResult]
    fixed: dict[str, nab.NabResult]
    replay: ReplayResult

    def to_json(self) -> dict[str, Any]:
        def one(r: nab.NabResult) -> dict[str, Any]:
            return {
                "score": round(r.normalised, 3),
                "threshold": r.threshold,
                "windows_detected": r.detected,
                "windows": r.windows,
                "fp_rows": r.fp,
            }

        return {
            "benchmark": "nab",
            "detector": self.detector,
            "files": self.files,
            "rows": self.rows,
            "scoreboard": {p: one(r) for p, r in self.scoreboard.items()},
            "fixed": {p: one(r) for p, r in self.fixed.items()},
            "samples_per_s": round(self.replay.samples_per_s),
            "cpu_samples_per_s": round(self.replay.cpu_samples_per_s),
            "detector_samples_per_s": {
                d: round(self.replay.samples / s) if s > 0 else None
                for d, s in self.replay.detector_seconds.items()
            },
            "rejected": self.replay.rejected,
        }


def nab_streams(corpus: nab.NabCorpus) -> list[Stream]:
    """One stream per file, named by its path relative to the data directory."""
    return [
        Stream(f.name, f.name, f.timestamps.astype("datetime64[ns]").astype(np.int64), f.values)
        for f in corpus.files
    ]


def write_nab_results(
    out_dir: Path, detector: str, corpus: nab.NabCorpus, scores: Mapping[str, F64]
) -> list[Path]:
    """Write ``<out>/<folder>/<detector>_<file>`` with ``timestamp,anomaly_score``."""
    written = []
    for f in corpus.files:
        folder, _, base = f.name.rpartition("/")
        path = out_dir / folder / f"{detector}_{base}"
        path.parent.mkdir(parents=True, exist_ok=True)
        stamps = np.datetime_as_string(f.timestamps, unit="s")
        lines = ["timestamp,anomaly_score"]
        lines += [
            f"{t.replace('T', ' ')},{s:.6g}" for t, s in zip(stamps, scores[f.name], strict=True)
        ]
        path.write_text("\n".join(lines) + "\n")
        written.append(path)
    return written


def evaluate_nab(
    data_dir: str | Path,
    labels_file: str | Path,
    spec: PipelineSpec,
    *,
    out_dir: str | Path | None = None,
    profiles_file: str | Path | None = None,
    detector: str = "edgeloop",
    progress: Callable[[int, int], None] | None = None,
    corpus: nab.NabCorpus | None = None,
) -> NabEval:
    """Replay, write the results (when ``out_dir`` is given) and score.

    ``profiles_file`` defaults to ``profiles.json`` beside ``data_dir`` (NAB's layout).
    """
    data_dir = Path(data_dir)
    corpus = corpus or nab.load_corpus(data_dir, labels_file)
    profiles = nab.load_profiles(profiles_file or data_dir.parent / "profiles.json")
    result = replay(nab_streams(corpus), spec, progress=progress)
    scores = {f.name: result.scores.get(f.name, np.zeros(len(f.values))) for f in corpus.files}
    if out_dir is not None:
        write_nab_results(Path(out_dir), detector, corpus, scores)
    best = nab.optimise_thresholds(scores, corpus, profiles)
    return NabEval(
        detector=detector,
        files=len(corpus.files),
        rows=int(corpus.lengths.sum()),
        scoreboard={
            p: nab.score_corpus(scores, corpus, prof, best[p].threshold)
            for p, prof in profiles.items()
        },
        fixed={
            p: nab.score_corpus(scores, corpus, prof, result.threshold)
            for p, prof in profiles.items()
        },
        replay=result,
    )

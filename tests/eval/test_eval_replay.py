"""Benchmark replay through a node: causal, side by side == one by one, outputs complete."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from edgeloop.eval import nab, skab
from edgeloop.eval.replay import Stream, replay, replay_clock
from edgeloop.eval.run_nab import evaluate_nab
from edgeloop.eval.run_skab import evaluate_skab, rising_edges
from edgeloop.pipeline.spec import load_spec

DATA = Path(__file__).parents[2].parent / "shared" / "data"

UNIVARIATE = load_spec(
    """
name: uni
windows:
  - {group: s, sensors: ["*"], size: 1, features: [mean]}
summaries: null
detectors:
  - {group: s, type: robust, params: {warmup: 20, alpha: 0.05, log_features: []}}
"""
)
JOINED = load_spec(
    """
name: joined
windows:
  - {group: pump, sensors: ["*"], size: 1, features: [mean], join: machine}
summaries: null
detectors:
  - {group: pump, type: robust, params: {warmup: 50, alpha: 0.01, log_features: []}}
"""
)


def _data(sub: str) -> Path:
    if not (DATA / sub).is_dir():
        pytest.fail(f"benchmark data not found at {DATA / sub} (see ../shared/data/README.md)")
    return DATA / sub


def test_replay_clock_is_strictly_increasing_and_moves_rows_minimally() -> None:
    ts = np.array([10, 20, 20, 20, 15, 30, 40], np.int64)
    assert replay_clock(ts).tolist() == [10, 20, 21, 22, 23, 30, 40]


def _streams(n: int, rows: int, seed: int = 0) -> list[Stream]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        v = rng.normal(0, 1, rows)
        v[rows // 2 + 10 * i] += 15  # one spike each
        ts = np.arange(rows, dtype=np.int64) * 60_000_000_000 + i
        out.append(Stream(f"s{i}", f"m{i}", ts, v))
    return out


def test_side_by_side_equals_one_at_a_time_and_is_causal() -> None:
    streams = _streams(3, 700)
    together = replay(streams, UNIVARIATE, rows_per_frame=128)
    for s in streams:
        alone = replay([s], UNIVARIATE, rows_per_frame=300)
        np.testing.assert_array_equal(alone.scores[s.name], together.scores[s.name])
        # appending rows never changes the scores of the rows before them
        cut = Stream(s.name, s.machine, s.ts_ns[:400], s.values[:400])
        np.testing.assert_array_equal(
            replay([cut], UNIVARIATE).scores[s.name], alone.scores[s.name][:400]
        )
    for i, s in enumerate(streams):
        spike = 700 // 2 + 10 * i
        assert together.scores[s.name][spike] >= together.threshold
        assert (together.scores[s.name][:20] == 0).all()  # warm-up: no score yet
    assert together.samples == 3 * 700 and together.samples_per_s > 0
    assert set(together.detector_seconds) == {"s/robust"}


def test_nab_results_have_a_score_for_every_row(tmp_path: Path) -> None:
    root = _data("nab")
    names = ["artificialWithAnomaly/art_daily_jumpsup.csv", "realKnownCause/nyc_taxi.csv"]
    corpus = nab.load_corpus(root / "data", root / "labels" / "combined_windows.json", names)
    res = evaluate_nab(
        root / "data",
        root / "labels" / "combined_windows.json",
        UNIVARIATE,
        out_dir=tmp_path,
        corpus=corpus,
        detector="mine",
    )
    for f in corpus.files:
        folder, _, base = f.name.rpartition("/")
        with (tmp_path / folder / f"mine_{base}").open() as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == ["timestamp", "anomaly_score"] and len(rows) == len(f.values) + 1
        assert rows[1][0] == str(f.timestamps[0].astype("datetime64[s]")).replace("T", " ")
        assert all(0.0 <= float(r[1]) <= 1.0 for r in rows[1:])
    # the written files score the same as the in-memory result
    written = nab.load_results(tmp_path, "mine", corpus)
    profile = nab.load_profiles(root / "profiles.json")["standard"]
    again = nab.score_corpus(written, corpus, profile, res.fixed["standard"].threshold)
    assert again.score == pytest.approx(res.fixed["standard"].score, abs=1e-3)
    best = res.scoreboard["standard"]
    assert best.normalised >= res.fixed["standard"].normalised
    assert res.to_json()["scoreboard"]["standard"]["score"] == round(best.normalised, 3)


def test_skab_outputs_and_scores(tmp_path: Path) -> None:
    files = skab.load_skab(_data("skab/data"))[:3]
    res = evaluate_skab(_data("skab/data"), JOINED, out_dir=tmp_path, files=files)
    assert res.files == 3 and res.rows == sum(len(f.timestamps) for f in files)
    for f in files:
        with (tmp_path / f.name).open() as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == ["datetime", "anomaly", "changepoint"]
        assert len(rows) == len(f.timestamps) + 1
        a = np.array([int(r[1]) for r in rows[1:]], bool)
        c = np.array([int(r[2]) for r in rows[1:]], bool)
        np.testing.assert_array_equal(c, rising_edges(a))
    o = res.outliers
    assert o.tp + o.fp + o.fn + o.tn == res.rows - 3 * skab.FIT_ROWS
    assert 0 < o.f1 <= 1


def test_rising_edges() -> None:
    a = np.array([0, 1, 1, 0, 1, 0, 0, 1], bool)
    assert rising_edges(a).astype(int).tolist() == [0, 1, 0, 0, 1, 0, 0, 1]

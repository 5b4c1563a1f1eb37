"""The pipeline benchmark runs on tiny sizes and reports what it promises (no timing asserts)."""

from __future__ import annotations

import numpy as np

from edgeloop.bench.pipeline_bench import bench_pipeline, make_stream


def test_stream_is_seeded_sorted_and_framed() -> None:
    cat, frames = make_stream(3, 2.0, frame_s=0.5, seed=1)
    _, again = make_stream(3, 2.0, frame_s=0.5, seed=1)
    assert len(cat) == 3 and len(frames) == 4 and len(frames[0]) == 3 * 1000
    assert all(f.is_sorted() for f in frames)
    assert np.array_equal(frames[2].value, again[2].value)
    assert frames[1].ts.min() > frames[0].ts.max()


def test_bench_reports_positive_rates() -> None:
    r = bench_pipeline(n_sensors=2, seconds=3.0, reps=2, river_samples=300, summaries=True)
    keys = ("pipeline_samples_per_s", "river_samples_per_s", "ratio_vs_river")
    for key in (*keys, "pipeline_with_summaries_samples_per_s"):
        assert r[key] > 0, key
    assert r["ratio_vs_river"] == r["pipeline_samples_per_s"] / r["river_samples_per_s"]
    assert r["samples"] == 2 * 3 * 2000 and r["river_samples"] == 300
    assert r["windows"] == 2 * (6000 // 1024)
    assert len(r["pipeline_s"]) == len(r["river_s"]) == 2
    assert "pipeline_with_summaries_samples_per_s" not in bench_pipeline(1, 1.0, 1, 10)

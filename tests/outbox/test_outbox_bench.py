"""The outbox benchmark runs on small sizes and reports every figure."""

from __future__ import annotations

from pathlib import Path

from edgeloop.bench.outbox_bench import bench_outbox


def test_bench_outbox_small(tmp_path: Path) -> None:
    figures = bench_outbox(rows=2_000, batch=250, payload_bytes=32, reps=1, tmpdir=tmp_path)
    assert set(figures) >= {
        "outbox_rows_per_s",
        "sqlite_raw_rows_per_s",
        "ratio_vs_sqlite",
        "outbox_budget_rows_per_s",
        "budget_ratio_vs_sqlite",
        "outbox_drain_rows_per_s",
    }
    assert all(v > 0 for v in figures.values())
    assert figures["ratio_vs_sqlite"] == (
        figures["outbox_rows_per_s"] / figures["sqlite_raw_rows_per_s"]
    )
    assert list(tmp_path.iterdir()) == []  # fresh files, cleaned up

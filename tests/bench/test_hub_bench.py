"""The hub ingest benchmark: both sides store every event of the workload, on a real
PostgreSQL (the figures themselves are not asserted: speed claims come from runs of
``edgeloop bench``, not from tests)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeloop.bench.hub_bench import bench_hub_ingest, peer_rows, workload
from edgeloop.telemetry import codec
from pg_service import pg_server


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    try:
        with pg_server() as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


def test_workload_is_what_a_node_sends_and_the_peer_gets_the_same_rows() -> None:
    batches = workload(2, 3, 10, node="gw7")
    decoded = [codec.decode_batch(b) for b in batches]
    assert [b.node for b in decoded] == ["gw7", "gw7"]
    assert [len(b.entries) for b in decoded] == [3, 3]
    assert decoded[1].after_seq == 3 and decoded[1].epoch == 1
    events = [e for b in decoded for entry in b.entries for e in codec.decode_events(entry.payload)]
    assert len(events) == 60 and sum(e.raw is not None for e in events) == 6
    rows = peer_rows(batches)
    assert [len(r) for r in rows] == [30, 30]
    assert [r[5] for r in rows[0][:10]] == [e.machine for e in events[:10]]


@pytest.mark.parametrize("streams", [1, 2])
def test_both_sides_store_every_event(server: str, streams: int) -> None:
    out = bench_hub_ingest(server, batches=2, entries=2, events=5, streams=streams, reps=1)
    assert set(out) == {
        "hub_ingest_pg_events_per_s",
        "pg_copy_raw_events_per_s",
        "hub_ratio_vs_copy",
        "hub_ratio_min",
        "hub_events_per_batch",
        "hub_streams",
    }
    assert out["hub_ingest_pg_events_per_s"] > 0 and out["pg_copy_raw_events_per_s"] > 0
    assert (out["hub_events_per_batch"], out["hub_streams"]) == (10, streams)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        bench_hub_ingest(batches=0)


def test_cli_bench_reports_the_hub_row_or_why_not(tmp_path: Path) -> None:
    import typer

    from edgeloop.cli.bench import bench

    app = typer.Typer()
    app.command()(bench)
    out = tmp_path / "bench.json"
    # An unreachable server: the other rows stand, the hub row says why.
    result = CliRunner().invoke(
        app,
        [
            "--quick",
            "--reps",
            "1",
            "--json",
            str(out),
            "--pg",
            "postgresql+psycopg://x@127.0.0.1:1/x",
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert figures["hub_ingest_pg_events_per_s"] is None
    assert "OperationalError" in figures["hub_ingest_pg_error"]
    assert figures["outbox_rows_per_s"] > 0
    # The uplink row names the outbox its figure used.
    assert figures["mqtt_outbox_durable"] == 0 and "memory" in result.output

"""``edgeloop bench``: our figures beside the peers', measured in one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

HELP = (
    "Measure the edge pipeline against River's HalfSpaceTrees, the outbox's durable "
    "append against a raw SQLite batch insert, hub ingest into PostgreSQL against a "
    "raw COPY of the same rows and the MQTT uplink (end-to-end acks) against raw "
    "paho-mqtt publishing the same batches, in one run; print the ratios."
)


def bench(
    reps: Annotated[int, typer.Option(help="Repetitions; medians are reported.")] = 5,
    sensors: Annotated[int, typer.Option(help="Sensors in the generated stream.")] = 100,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the figures to this JSON file.")
    ] = None,
    quick: Annotated[
        bool, typer.Option(help="Small sizes (a smoke run, not a measurement).")
    ] = False,
    pg: Annotated[
        str,
        typer.Option(
            help="PostgreSQL server for the hub ingest row (SQLAlchemy URL of a maintenance "
            "database; each repetition creates and drops its own database); '' skips it."
        ),
    ] = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    mqtt: Annotated[
        str,
        typer.Option(
            help="MQTT broker HOST:PORT for the uplink row; 'private' starts a Mosquitto "
            "of its own (else 127.0.0.1:1883 is used); '' skips it."
        ),
    ] = "private",
    mqtt_outbox: Annotated[
        str,
        typer.Option(
            help="The node's outbox in the uplink row: 'memory' (default) or 'sqlite' "
            "(the durable one: its claim and release rate bounds the uplink)."
        ),
    ] = "memory",
) -> None:
    """Run the benchmarks and print a side-by-side table."""
    if mqtt_outbox not in ("memory", "sqlite"):
        raise typer.BadParameter(
            f"expected 'memory' or 'sqlite', got {mqtt_outbox!r}", param_hint="--mqtt-outbox"
        )
    from rich.console import Console
    from rich.table import Table

    from edgeloop.bench.outbox_bench import bench_outbox
    from edgeloop.bench.pipeline_bench import bench_pipeline

    console = Console()
    with console.status("pipeline vs River HalfSpaceTrees ..."):
        if quick:
            pipe = bench_pipeline(n_sensors=8, seconds=2.0, reps=reps, river_samples=2_000)
        else:
            pipe = bench_pipeline(n_sensors=sensors, reps=reps)
    with console.status("outbox vs raw SQLite ..."):
        box = bench_outbox(rows=5000, reps=reps) if quick else bench_outbox(reps=reps)
    figures: dict[str, float | str | None] = {**pipe, **box, "reps": reps}

    # -- hub ingest into PostgreSQL vs raw COPY (issue #4) ----------------------------
    # Two hub processes (two nodes; as hub processes on one shared subscription) against
    # two raw COPY clients: the headline; one hub process against one client beside it.
    from edgeloop.bench.hub_bench import bench_hub_ingest

    hub: dict[str, float] = {}
    hub1: dict[str, float] = {}
    hub_error = "skipped (--pg '')" if not pg else ""
    if pg:
        with console.status("hub ingest into PostgreSQL vs raw COPY ..."):
            try:
                size = {"batches": 4 if quick else 20, "reps": reps}
                hub = bench_hub_ingest(pg, streams=2, **size)
                hub1 = bench_hub_ingest(pg, streams=1, **size)
            except Exception as exc:  # no server: the other rows still stand
                hub, hub1 = {}, {}
                hub_error = f"{type(exc).__name__}: {exc}"[:300]
    figures.update(hub)
    if hub1:
        figures.update(
            hub_ingest_pg_1proc_events_per_s=hub1["hub_ingest_pg_events_per_s"],
            pg_copy_raw_1proc_events_per_s=hub1["pg_copy_raw_events_per_s"],
            hub_1proc_ratio_vs_copy=hub1["hub_ratio_vs_copy"],
        )
    if not hub:
        figures.update(hub_ingest_pg_events_per_s=None, hub_ingest_pg_error=hub_error)
    # ----------------------------------------------------------------------------------

    # -- MQTT uplink with end-to-end acks vs raw paho-mqtt (issue #4) ------------------
    from edgeloop.bench.mqtt_bench import bench_mqtt

    up: dict[str, float] = {}
    up_error = "skipped (--mqtt '')" if not mqtt else ""
    if mqtt:
        broker = None if mqtt == "private" else _host_port(mqtt)
        with console.status("MQTT uplink (end-to-end acks) vs raw paho-mqtt ..."):
            try:
                # One repetition is ~1 s and scatters widely: at least nine.
                up = bench_mqtt(
                    4_000 if quick else 32_000,
                    reps=reps if quick else max(reps, 9),
                    broker=broker,
                    outbox=mqtt_outbox,
                )
            except Exception as exc:  # no broker: the other rows still stand
                up_error = f"{type(exc).__name__}: {exc}"[:300]
    figures.update(up)
    if not up:
        figures.update(mqtt_uplink_samples_per_s=None, mqtt_uplink_error=up_error)
    # ----------------------------------------------------------------------------------

    table = Table(title=f"edgeloop bench (median of {reps})")
    table.add_column("workload")
    table.add_column("edgeloop", justify="right")
    table.add_column("peer", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row(
        "edge pipeline (windows+features+rfft+detector+decide) vs River HalfSpaceTrees",
        f"{pipe['pipeline_samples_per_s'] / 1e6:,.1f} M samples/s",
        f"{pipe['river_samples_per_s'] / 1e3:,.1f} k samples/s",
        f"{pipe['ratio_vs_river']:,.0f}x",
    )
    table.add_row(
        "outbox durable append vs raw SQLite batch insert",
        f"{box['outbox_rows_per_s'] / 1e3:,.0f} k rows/s",
        f"{box['sqlite_raw_rows_per_s'] / 1e3:,.0f} k rows/s",
        f"{box['ratio_vs_sqlite']:.2f}x",
    )
    if hub and hub1:
        per_batch = f"{hub['hub_events_per_batch']:,.0f} events/batch"
        for label, h in (("2 hub processes vs 2 clients", hub), ("1 vs 1", hub1)):
            table.add_row(
                f"hub ingest into PostgreSQL ({per_batch}; {label}) vs raw psycopg COPY",
                f"{h['hub_ingest_pg_events_per_s'] / 1e3:,.0f} k events/s",
                f"{h['pg_copy_raw_events_per_s'] / 1e3:,.0f} k events/s",
                f"{h['hub_ratio_vs_copy']:.2f}x",
            )
    else:
        table.add_row("hub ingest into PostgreSQL vs raw psycopg COPY", hub_error, "", "")
    if up:
        table.add_row(
            f"MQTT uplink, end-to-end acks ({mqtt_outbox} outbox; median of "
            f"{up['mqtt_reps']:.0f}) vs raw paho-mqtt QoS 1, same batches",
            f"{up['mqtt_uplink_samples_per_s'] / 1e6:,.1f} M samples/s",
            f"{up['paho_raw_samples_per_s'] / 1e6:,.1f} M samples/s",
            f"{up['ratio_vs_paho']:.2f}x",
        )
    else:
        table.add_row("MQTT uplink vs raw paho-mqtt", up_error, "", "")
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(figures, indent=2) + "\n")
        console.print(f"figures written to {json_out}")


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise typer.BadParameter(f"expected HOST:PORT, got {text!r}", param_hint="--mqtt")
    return host, int(port)

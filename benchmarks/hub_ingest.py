"""Hub ingest throughput: rows/s through ``HubStore.ingest`` on SQLite and PostgreSQL.

Workload (seeded, the same for every backend): ``--batches`` batches of one node, each
holding ``--entries`` entries; every entry is a summary batch of ``--rows`` rows (sensors
x periods) except each ``--event-every``-th (default 10th; 1: all), which is an events
entry of ``--events`` events (features, no raw context). Reported per run: summary rows/s, event rows/s, ledger entries/s and
all rows/s (wall time of the ingest calls only, one commit per batch as in production).

    .venv/bin/python benchmarks/hub_ingest.py --backend sqlite --runs 3
    .venv/bin/python benchmarks/hub_ingest.py --backend pg --runs 3 \\
        --pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres

On PostgreSQL a fresh database ``edgeloop_bench_<random>`` is created on the server of
``--pg`` and dropped at the end. ``--json PATH`` writes the runs and their medians.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from edgeloop.hub.store import HubStore, IngestItem
from edgeloop.telemetry.records import Event, Severity, SummaryBatch

SEC = 1_000_000_000


def workload(args: argparse.Namespace) -> list[list[IngestItem]]:
    rng = np.random.default_rng(7)
    names = tuple(f"m{m:02d}.s{s}" for m in range(18) for s in range(6))
    batches: list[list[IngestItem]] = []
    seq = 0
    for b in range(args.batches):
        items: list[IngestItem] = []
        for e in range(args.entries):
            seq += 1
            t0 = (b * args.entries + e) * SEC
            if e % args.event_every == args.event_every - 1:
                evs = [
                    Event(
                        node="gw1",
                        machine=f"m{i % 18:02d}",
                        sensor=names[i % len(names)],
                        severity=Severity.ANOMALY,
                        t_start_ns=t0 + i,
                        t_end_ns=t0 + i + SEC,
                        detected_ns=t0 + 2 * SEC,
                        score=float(rng.random()),
                        threshold=0.7,
                        detector="robust",
                        reason="rms up",
                        features={"rms": float(rng.random()), "kurtosis": 3.0},
                    )
                    for i in range(args.events)
                ]
                items.append(IngestItem(seq, 2, "events", 0, 200 * len(evs), decoded=evs))
                continue
            n = args.rows
            sensor = (np.arange(n) % len(names)).astype(np.uint32)
            t0s = t0 + (np.arange(n) // len(names)).astype(np.int64) * SEC // 10
            vals = rng.normal(size=(4, n)).astype(np.float32)
            sb = SummaryBatch(
                sensor=sensor,
                t0_ns=t0s,
                t1_ns=t0s + SEC // 10,
                count=np.full(n, 200, np.int64),
                mean=vals[0],
                std=np.abs(vals[1]),
                min=vals[2] - 3,
                max=vals[3] + 3,
                sensor_names=names,
            )
            items.append(IngestItem(seq, 1, "summaries", sb.samples, 24 * n, decoded=sb))
        batches.append(items)
    return batches


def run_once(url: str, batches: list[list[IngestItem]]) -> dict[str, float]:
    store = HubStore(url)
    try:
        store.create_all()
        n_sum = n_ev = n_led = 0
        elapsed = 0.0
        after = 0
        for i, items in enumerate(batches):
            t = time.perf_counter()
            ack = store.ingest("gw1", after, items, {"frames": i}, now_ns=i, epoch=1)
            elapsed += time.perf_counter() - t
            if ack.accepted != len(items):
                raise SystemExit(f"batch {i}: {ack}")
            after = ack.upto_seq
            for it in items:
                n_led += 1
                if it.kind == "summaries":
                    n_sum += len(it.decoded)  # type: ignore[arg-type]
                else:
                    n_ev += len(it.decoded)  # type: ignore[arg-type]
    finally:
        store.close()
    total = n_sum + n_ev + n_led
    return {
        "seconds": elapsed,
        "summary_rows_per_s": n_sum / elapsed,
        "event_rows_per_s": n_ev / elapsed,
        "entries_per_s": n_led / elapsed,
        "rows_per_s": total / elapsed,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=("sqlite", "pg"), default="sqlite")
    p.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--entries", type=int, default=20)
    p.add_argument("--rows", type=int, default=216)
    p.add_argument("--events", type=int, default=50)
    p.add_argument("--event-every", type=int, default=10, help="every Nth entry is events (1: all)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    batches = workload(args)
    runs: list[dict[str, float]] = []
    for r in range(args.runs):
        if args.backend == "sqlite":
            with tempfile.TemporaryDirectory() as d:
                runs.append(run_once(f"sqlite:///{d}/hub.db", batches))
        else:
            admin = make_url(args.pg)
            name = f"edgeloop_bench_{secrets.token_hex(4)}"
            eng = create_engine(admin, isolation_level="AUTOCOMMIT")
            with eng.connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                runs.append(run_once(admin.set(database=name).render_as_string(False), batches))
            finally:
                with eng.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                eng.dispose()
        runs[-1]["loadavg_1m"] = os.getloadavg()[0]
        print(
            f"run {r + 1}: "
            + ", ".join(f"{k} {v:,.0f}" for k, v in runs[-1].items() if k != "seconds")
        )
    med: dict[str, Any] = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
    print(
        f"median of {len(runs)} ({args.backend}): "
        + ", ".join(f"{k} {v:,.0f}" for k, v in med.items() if k != "seconds")
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, "runs": runs, "median": med},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

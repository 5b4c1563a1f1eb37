"""The embedded factory-floor demo: a hub and several gateway processes on one machine.

What it does, in order:

1. plans the floor: gateways, machines, a seeded fault schedule with ground truth, and
   an uplink partition in the middle of the run;
2. trains the multivariate edge model on simulated *normal* operation in the hub
   (scikit-learn), exports it to ONNX, and writes each gateway's config;
3. starts the hub (FastAPI over SQLite, uvicorn in a thread) and one OS process per
   gateway (``python -m edgeloop.node``), all starting on the same wall-clock instant;
4. shows a live view while they run, then waits for every gateway to drain its outbox;
5. reconciles what the gateways ingested with what the hub stored and scores the
   detections against ground truth (``scenarios/report.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgeloop.hub.app import create_app
from edgeloop.hub.server import BackgroundServer
from edgeloop.hub.store import HubStore
from edgeloop.node.config import parse_node_config
from edgeloop.node.plan import make_plan, plan_to_json
from edgeloop.scenarios import plan as planning
from edgeloop.scenarios.report import build_report
from edgeloop.scenarios.training import train_edge_models


@dataclass(slots=True)
class DemoOptions:
    """Knobs of the demo; the defaults are what ``make demo`` runs."""

    duration_s: float = 30.0
    gateways: int = 3
    machines_per_gateway: int = 6
    faults: int = 12
    seed: int = 7
    pipeline: str = "factory"
    partition: tuple[float, float] | None = (0.40, 0.60)
    ack_loss: float = 0.05
    corrupt_samples: float = 2e-5
    tick_s: float = 0.1
    startup_s: float = 4.0
    drain_timeout_s: float = 60.0
    workdir: Path | None = None
    live: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)


def run_demo(opts: DemoOptions, console: Any = None) -> dict[str, Any]:
    """Run the demo and return its report (see ``scenarios/report.py`` for the keys)."""
    from rich.console import Console

    console = console or Console()
    tmp = None
    if opts.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="edgeloop-demo-")
        workdir = Path(tmp.name)
    else:
        workdir = opts.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    try:
        return _run(opts, workdir, console)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _run(opts: DemoOptions, workdir: Path, console: Any) -> dict[str, Any]:
    t_setup = time.monotonic()
    plan = planning.plan_floor(
        gateways=opts.gateways,
        machines_per_gateway=opts.machines_per_gateway,
        duration_s=opts.duration_s,
        n_faults=opts.faults,
        seed=opts.seed,
        partition=opts.partition,
    )
    with console.status("training the edge model on normal operation (hub side) ..."):
        spec_path = train_edge_models(plan, workdir, seed=opts.seed, pipeline_name=opts.pipeline)
    store = HubStore(f"sqlite:///{workdir / 'hub.db'}")
    store.create_all()
    server = BackgroundServer(create_app(store)).start()
    console.print(f"hub listening on {server.url} (store {workdir / 'hub.db'})")
    start_ns = time.time_ns() + int(opts.startup_s * 1e9)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    status_files: dict[str, Path] = {}
    stats_files: dict[str, Path] = {}
    logs: dict[str, Any] = {}
    try:
        for gw in plan.gateways:
            cfg = planning.gateway_config(
                gw,
                plan,
                spec_path,
                server.url,
                workdir,
                opts.tick_s,
                opts.ack_loss,
                opts.corrupt_samples,
            )
            # The config a human would edit, and the validated plan the gateway runs
            # (the gateway process then needs neither pydantic nor yaml).
            (workdir / f"{gw.name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
            plan_path = workdir / f"{gw.name}.plan.json"
            node_plan = make_plan(parse_node_config(cfg, where=f"{gw.name} config"))
            plan_path.write_text(plan_to_json(node_plan))
            status_files[gw.name] = Path(cfg["status_file"])
            stats_files[gw.name] = workdir / f"{gw.name}.stats.json"
            logs[gw.name] = open(workdir / f"{gw.name}.log", "wb")  # noqa: SIM115
            env = {**os.environ, **opts.extra_env, "OMP_NUM_THREADS": "1"}
            procs[gw.name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "edgeloop.node",
                    "--plan",
                    str(plan_path),
                    "--duration",
                    str(opts.duration_s),
                    "--start-ns",
                    str(start_ns),
                    "--drain-timeout",
                    str(opts.drain_timeout_s),
                    "--stats-out",
                    str(stats_files[gw.name]),
                ],
                stdout=logs[gw.name],
                stderr=subprocess.STDOUT,
                env=env,
            )
        # The hub stands in for a remote cloud: on this one machine it must not compete
        # with the plant floor's gateways for the cores.
        with contextlib.suppress(OSError):
            os.nice(10)
        _watch(opts, plan, procs, status_files, store, start_ns, console)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        for f in logs.values():
            f.close()
        server.stop()
    failed = {n: p.returncode for n, p in procs.items() if p.returncode != 0}
    gw_stats: dict[str, dict[str, Any]] = {}
    for name, path in stats_files.items():
        if path.exists():
            gw_stats[name] = json.loads(path.read_text())
    report = build_report(plan, store, gw_stats)
    report["gateway_exit_codes"] = {n: p.returncode for n, p in procs.items()}
    report["wall_s"] = round(time.monotonic() - t_setup, 1)
    if failed:
        tails = {n: (workdir / f"{n}.log").read_text()[-2000:] for n in failed}
        report["gateway_errors"] = tails
    store.close()
    return report


def _watch(
    opts: DemoOptions,
    plan: planning.FloorPlan,
    procs: dict[str, subprocess.Popen[bytes]],
    status_files: dict[str, Path],
    store: HubStore,
    start_ns: int,
    console: Any,
) -> None:
    """Show the live view until every gateway process has exited."""
    from rich.live import Live

    from edgeloop.scenarios.live import LiveState, read_status, render

    state = LiveState()
    hard_deadline = time.monotonic() + opts.startup_s + opts.duration_s + opts.drain_timeout_s + 30

    def frame() -> Any:
        statuses = {n: read_status(p) for n, p in status_files.items()}
        totals = store.totals()["overall"]
        hub = {
            "events": totals.get("events", 0),
            "summary_samples": totals.get("samples", 0),
            "bytes_received": totals.get("bytes", 0),
        }
        t = (time.time_ns() - start_ns) / 1e9
        note = planning.describe_moment(plan, t)
        return render("edgeloop demo", statuses, hub, state, opts.duration_s, note, run_s=t)

    def running() -> bool:
        return any(p.poll() is None for p in procs.values())

    if opts.live and console.is_terminal:
        with Live(frame(), console=console, refresh_per_second=2) as live:
            while running() and time.monotonic() < hard_deadline:
                time.sleep(0.5)
                live.update(frame())
    else:
        last = 0.0
        while running() and time.monotonic() < hard_deadline:
            time.sleep(0.25)
            if opts.live and time.monotonic() - last > 5:
                last = time.monotonic()
                console.print(frame())

"""``edgeloop demo --scenario bad-model``: a model that alerts on everything is canaried
and rolled back by the hub's gates, and no more than the canary ever acts on it.

What it does, in order:

1. plans a floor (``scenarios/plan.py``), fits the vibration model on simulated normal
   operation and exports two versions: the champion (alerts at 0.8 on the calibrated
   score, as the default demo) and ``bad``, the same model with threshold 0 — every
   window's score is at or above it, so it alerts on every window;
2. starts the hub (its key, control plane, rollout ticker) and one gateway process per
   plan gateway with a ``models:`` config (``scenarios/fleet_run.py``); registers,
   promotes and sets the champion for the fleet group, waits until every node reports
   acting on it;
3. registers ``bad`` and starts a rollout with a canary of ``canary_fraction`` (cohorts
   round down: at least one node); the canary's shadow measurements travel node →
   outbox → hub ingest → rollout; the ticker judges; the alert-rate gate rolls it back;
4. waits until every node reports the champion again, lets the gateways finish, and
   measures what acted on ``bad``: from the nodes' actual-state reports sampled every
   0.2 s, from the swaps each gateway logged, from the measurement documents (the
   ``acting`` version each node stated) and from the events stored at the hub whose
   detector names ``bad``.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeloop.scenarios import plan as planning
from edgeloop.scenarios.fleet_run import (
    FLEET_GROUP,
    FleetOptions,
    FleetRun,
    ModelMaker,
    acting_intervals,
    all_acting,
    in_workdir,
    max_concurrent,
    write_spec,
)

CHAMPION = "v1"
BAD = "v2-bad"

REPORT_KEYS = (
    "rolled_back",
    "canary_fraction",
    "max_fraction_acting_on_bad_model",
    "canary_nodes",
    "gateways",
    "rollback_reason",
    "steps",
)


@dataclass(slots=True)
class BadModelOptions:
    """Knobs of the scenario (defaults: what ``edgeloop demo --scenario bad-model`` runs)."""

    gateways: int = 4
    machines_per_gateway: int = 3
    duration_s: float = 30.0
    canary_fraction: float = 0.25
    faults: int = 3
    seed: int = 7
    min_windows: int = 20
    champion_threshold: float = 0.8
    bad_threshold: float = 0.0
    workdir: Path | None = None
    live: bool = True


def run_bad_model(opts: BadModelOptions, console: Any = None) -> dict[str, Any]:
    """Run the scenario and return its report (keys: :data:`REPORT_KEYS` and more)."""
    from rich.console import Console

    out = console or Console()
    return in_workdir(opts.workdir, "edgeloop-bad-model-", lambda d: _run(opts, d, out))


class _Steps:
    def __init__(self, run: FleetRun | None = None) -> None:
        self.run = run
        self.t0 = time.monotonic()
        self.items: list[dict[str, Any]] = []

    def add(self, step: str, at_s: float | None = None, **more: Any) -> None:
        at = round(time.monotonic() - self.t0 if at_s is None else at_s, 2)
        self.items.append({"step": step, "at_s": at, **more})


def _run(opts: BadModelOptions, workdir: Path, console: Any) -> dict[str, Any]:
    n = opts.gateways
    plan = planning.plan_floor(
        gateways=n,
        machines_per_gateway=opts.machines_per_gateway,
        duration_s=opts.duration_s,
        n_faults=opts.faults,
        seed=opts.seed,
        partition=None,
    )
    with console.status("training the edge model on normal operation (hub side) ..."):
        maker = ModelMaker(plan, seed=opts.seed)
        champion = maker.version(CHAMPION, opts.champion_threshold)
        bad = maker.version(BAD, opts.bad_threshold, parent=CHAMPION)
    spec = write_spec(workdir, champion[0])
    fopts = FleetOptions(
        gateways=n, machines_per_gateway=opts.machines_per_gateway, duration_s=opts.duration_s
    )
    report: dict[str, Any] = {}
    with FleetRun(plan, fopts, workdir) as run:
        steps = _Steps()
        steps.t0 = run.t0
        hub = run.client
        hub.register(champion[0], champion[1], actor="scenario", reason="trained on the floor")
        hub.post(f"/v1/models/{CHAMPION}/promote", {"actor": "scenario"})
        hub.put(f"/v1/groups/{FLEET_GROUP}", {"act": "champion"})
        steps.add("champion_registered_and_promoted", version=CHAMPION)
        run.launch(spec)
        steps.add("gateways_started", gateways=n)
        view = _View(run, steps, console, opts)
        at = view.wait(lambda s: all_acting(s, CHAMPION, n), 60.0, "gateways converging")
        rollout: dict[str, Any] | None = None
        if at is None:
            report["error"] = "the gateways did not converge on the champion in 60 s"
        else:
            steps.add("fleet_converged_on_champion", at)
            hub.register(bad[0], bad[1], actor="scenario", reason="alerts on everything")
            steps.add("bad_model_registered", version=BAD)
            policy = {
                "canary_fraction": opts.canary_fraction,
                "steps": [0.5],
                "shadow_fraction": 0.0,
                "evidence": {"min_windows": opts.min_windows, "min_nodes": 1},
                "gates": {"max_latency_p99_ms": 250.0},
                "stage_timeout_s": 60.0,
            }
            started = hub.post(
                "/v1/rollouts", {"challenger": BAD, "actor": "scenario", "policy": policy}
            )
            steps.add("canary_started", nodes=started["acting"])
            report["policy"] = policy
            first_bad = view.wait(
                lambda s: any(r["actual_version"] == BAD for r in s.get("nodes", [])),
                30.0,
                "canary converging on the bad model",
            )
            if first_bad is not None:
                steps.add("canary_acting_on_bad_model", first_bad)
            decided = view.wait(
                lambda s: _rollout(hub)["outcome"] != "running", 60.0, "canary measured"
            )
            rollout = _rollout(hub)
            if decided is not None:
                steps.add(rollout["outcome"], decided)
            back = view.wait(lambda s: all_acting(s, CHAMPION, n), 30.0, "rolling back")
            if back is not None:
                steps.add("fleet_back_on_champion", back)
        view.wait(lambda s: not run.running(), opts.duration_s + 60.0, "gateways finishing")
        steps.add("gateways_finished")
        end_wall = time.time()
        report.update(_measure(run, rollout, opts, end_wall))
        report["steps"] = steps.items
        report["wall_s"] = round(run.now(), 1)
        report["gateway_exit_codes"] = {k: p.returncode for k, p in run.procs.items()}
        failed = [k for k, p in run.procs.items() if p.returncode != 0]
        if failed:
            report["gateway_errors"] = {k: run.log_tail(k) for k in failed}
    return report


def check(report: dict[str, Any]) -> list[str]:
    """What the report fails to show (empty: the scenario showed what it must)."""
    problems = []
    if report.get("error"):
        problems.append(str(report["error"]))
    if not report.get("rolled_back"):
        problems.append("the bad model was not rolled back")
    n = int(report.get("gateways") or 0)
    frac = float(report.get("canary_fraction") or 0.0)
    if not report.get("max_nodes_acting_on_bad_model"):
        problems.append("no node was seen acting on the bad model: the canary did not run")
    if float(report.get("max_fraction_acting_on_bad_model") or 0.0) > frac:
        problems.append("more than the canary fraction of nodes reported acting on the bad model")
    if n and int(report.get("max_nodes_acting_on_bad_model_by_logs") or 0) > math.floor(frac * n):
        problems.append(
            "the gateways' logs show more nodes acting on the bad model than the canary"
        )
    if report.get("gateway_errors"):
        problems.append(f"gateways failed: {sorted(report['gateway_errors'])}")
    return problems


def _rollout(hub: Any) -> dict[str, Any]:
    rollouts = hub.get("/v1/rollouts")["rollouts"]
    return dict(rollouts[-1]) if rollouts else {"outcome": "none"}


def _uses(detector: str, version: str) -> bool:
    return version in re.split(r"[(),]", detector)


def _measure(
    run: FleetRun, rollout: dict[str, Any] | None, opts: BadModelOptions, end_wall: float
) -> dict[str, Any]:
    n = opts.gateways
    reported, reported_at = run.sampler.timeline.max_acting(BAD)
    intervals = acting_intervals(run.swaps(), BAD, end_wall)
    logged = max_concurrent(intervals)
    docs = run.client.get("/v1/documents", kind="measurement", limit=100_000)
    bad_docs = [d for d in docs if d["body"].get("acting") == BAD]
    events = run.store.events(limit=1_000_000)
    bad_events = [e for e in events if _uses(e.detector, BAD)]
    stats = run.stats()
    final = run.sampler.latest.get("nodes", [])
    decisions = rollout["decisions"] if rollout else []
    last = decisions[-1] if decisions else {}
    return {
        "rolled_back": bool(rollout and rollout["outcome"] == "rolled_back"),
        "canary_fraction": opts.canary_fraction,
        "canary_nodes": len(rollout["cohort"]) if rollout else 0,
        "canary_nodes_expected": max(math.floor(opts.canary_fraction * n), 0),
        # measured: the most nodes that reported acting on the bad model at one instant
        "max_fraction_acting_on_bad_model": round(reported / n, 4),
        "max_nodes_acting_on_bad_model": reported,
        "max_nodes_acting_at_s": reported_at,
        # cross-checks, each from another record
        "max_nodes_acting_on_bad_model_by_logs": logged,
        "nodes_acting_on_bad_model_by_logs": sorted(intervals),
        "bad_model_acting_s_by_logs": round(
            sum(b - a for iv in intervals.values() for a, b in iv), 2
        ),
        "nodes_acting_on_bad_model_by_documents": sorted({d["node"] for d in bad_docs}),
        "nodes_with_bad_model_events": sorted({e.node for e in bad_events}),
        "rollout_peak_acting": rollout["peak_acting"] if rollout else None,
        "rollback_reason": last.get("reason"),
        "rollback_gates": last.get("gates", []),
        "rollout_evidence": rollout["evidence"] if rollout else None,
        "gateways": n,
        "status_samples": len(run.sampler.timeline.samples),
        "measurement_documents": len(docs),
        "bad_model_windows": sum(int(d["body"].get("windows", 0)) for d in bad_docs),
        "bad_model_alerts": sum(int(d["body"].get("champion_alerts", 0)) for d in bad_docs),
        "events_stored": len(events),
        "events_by_bad_model": len(bad_events),
        "relay_commands": {k: int(s.get("relay_commands", 0)) for k, s in stats.items()},
        "final_acting": {r["node"]: r["actual_version"] for r in final},
        "deployments": [
            {"kind": e["kind"], "actor": e["actor"], "version": e.get("version")}
            for e in run.client.get("/v1/deployments")["events"]
        ],
    }


class _View:
    """The progress display: per gateway, what it reports acting on; the steps so far."""

    def __init__(self, run: FleetRun, steps: _Steps, console: Any, opts: BadModelOptions) -> None:
        self.run = run
        self.steps = steps
        self.console = console
        self.opts = opts

    def frame(self, phase: str) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table

        table = Table(expand=True)
        for col in ("gateway", "acting on", "shadow/status", "in sync", "online"):
            table.add_column(col)
        for r in self.run.sampler.latest.get("nodes", []):
            v = r["actual_version"] or "-"
            shown = f"[red]{v}[/red]" if v == BAD else v
            table.add_row(r["node"], shown, r["status"] or "-", str(r["in_sync"]), str(r["online"]))
        done = ", ".join(f"{s['step']} @ {s['at_s']} s" for s in self.steps.items[-4:])
        head = f"t = {self.run.now():5.1f} s   {phase} ...\n{done}"
        return Group(Panel(head, title="edgeloop demo --scenario bad-model"), table)

    def wait(self, pred: Any, timeout_s: float, phase: str) -> float | None:
        from rich.live import Live

        deadline = time.monotonic() + timeout_s
        if self.opts.live and self.console.is_terminal:
            with Live(self.frame(phase), console=self.console, refresh_per_second=4) as live:
                while time.monotonic() < deadline:
                    if pred(self.run.sampler.latest):
                        return self.run.now()
                    time.sleep(0.2)
                    live.update(self.frame(phase))
            return None
        last = 0.0
        while time.monotonic() < deadline:
            if pred(self.run.sampler.latest):
                return self.run.now()
            if self.opts.live and time.monotonic() - last > 5:
                last = time.monotonic()
                self.console.print(self.frame(phase))
            time.sleep(0.2)
        return None

"""``edgeloop demo --scenario drift``: the plant changes its load regime, alerts rise,
drift is detected, a model is retrained, shadowed, canaried and promoted with no human
step, and the false-alarm rate falls back.

What it does, in order:

1. plans a floor whose machines all move from load ``base_level`` to ``regime_level``
   at ``regime_at_s`` (plant time; a ramp of 5 s), with faults scheduled over the whole
   run; fits the champion on normal operation at the base load (``fleet_run.ModelMaker``,
   alerting at the calibrated 0.5, the model's own 99.9 % quantile);
2. starts the hub with its drift service (sketch periods of ``drift_period_s``, judged on
   a timer as ``hub serve`` does) and its retraining service (``app.state.drift``,
   ``app.state.retrain``: a drift trigger starts a run that trains on the nodes' curated
   normal windows, evaluates, registers and starts a rollout: shadow on every node, then a
   canary and a step acting on it) and the gateways, which send drift sketches and
   samples beside their telemetry;
3. one gateway (the last) goes offline once the fleet runs the champion and stays off for
   the whole rollout; it is started again when the promotion is seen, and the time it
   takes to report acting on the new champion is measured;
4. afterwards: false alarms per hour before the change, at the worst stretch after it,
   and after the promotion, recall on the faults injected after the promotion
   (``scenarios/fa_accounting.py``), and the ``steps`` from drift detected to promotion
   read from the hub's records (drift triggers, retraining runs, deployment events and
   rollout decisions, each with its time).

What the scenario relies on and cannot find (the hub's drift or retraining service, the
node's sample upload) is listed in ``missing``; the run then still drives the plant and
reports the figures it can measure, and no figure it cannot.
"""

from __future__ import annotations

import inspect
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeloop.scenarios import plan as planning
from edgeloop.scenarios.fa_accounting import SEC, account
from edgeloop.scenarios.fleet_run import (
    FLEET_GROUP,
    FleetOptions,
    FleetRun,
    ModelMaker,
    all_acting,
    in_workdir,
    write_spec,
)
from edgeloop.scenarios.scoring import EventTime, FaultInterval
from edgeloop.sim.config import FactoryConfig, LoadProfile

CHAMPION = "v1"

REPORT_KEYS = (
    "false_alarms_per_hour_before",
    "false_alarms_per_hour_peak",
    "false_alarms_per_hour_after",
    "recall_after",
    "offline_node_converged_s",
    "steps",
)


@dataclass(slots=True)
class DriftOptions:
    """Knobs of the scenario (defaults: what ``edgeloop demo --scenario drift`` runs)."""

    gateways: int = 4
    machines_per_gateway: int = 3
    duration_s: float = 180.0
    regime_at_s: float = 30.0
    base_level: float = 0.7
    regime_level: float = 1.5
    faults: int = 16
    seed: int = 7
    champion_threshold: float = 0.5
    drift_period_s: float = 4.0
    drift_persistence: int = 3
    # The retraining bar: the defaults of RetrainConfig, the champion's own calibration
    # (its 99.9 % quantile needs ~1000 rows). A short run may lower both to finish sooner.
    retrain_min_rows: int = 1000
    retrain_quantile: float = 0.999
    measure_every_s: float = 2.0
    warmup_s: float = 12.0
    settle_s: float = 5.0
    offline_node: bool = True
    clear_after_s: float = 0.5
    workdir: Path | None = None
    live: bool = True


def run_drift(opts: DriftOptions, console: Any = None) -> dict[str, Any]:
    """Run the scenario and return its report (keys: :data:`REPORT_KEYS` and more)."""
    from rich.console import Console

    out = console or Console()
    return in_workdir(opts.workdir, "edgeloop-drift-", lambda d: _run(opts, d, out))


# -- what the scenario needs from the other parts ----------------------------------------------
def missing_parts() -> list[str]:
    """The learning-loop parts this checkout lacks (empty: everything is there)."""
    from edgeloop.hub.app import create_app
    from edgeloop.node.config import ModelsConfig

    missing = []
    params = inspect.signature(create_app).parameters
    for name, what in (
        ("drift_config", "hub drift service (create_app(drift_config=...))"),
        ("drift_period_s", "hub drift period (create_app(drift_period_s=...))"),
        ("retrain_config", "hub retraining service (create_app(retrain_config=...))"),
    ):
        if name not in params:
            missing.append(what)
    fields = getattr(ModelsConfig, "__dataclass_fields__", {})
    if "samples" not in fields:
        missing.append("node sample upload (models.samples)")
    return missing


def hub_options(opts: DriftOptions, missing: list[str]) -> dict[str, Any]:
    """``create_app`` options: drift judged per ``drift_period_s``, retraining on the
    nodes' samples with a canary rollout whose gates fit a model that *fixes* false
    alarms (it disagrees with the champion on exactly those windows)."""
    if missing:
        return {}
    from edgeloop.drift import DriftConfig
    from edgeloop.hub.retrain import RetrainConfig
    from edgeloop.rollout import Evidence, Gates, RolloutPolicy

    policy = RolloutPolicy(
        # Shadow on every node first (decisions logged, not acted on), then a canary and
        # a step acting on it, each stage judged by the gates before the next.
        canary_fraction=0.34,
        steps=(0.67,),
        shadow_fraction=1.0,
        evidence=Evidence(min_windows=150, min_nodes=1),
        gates=Gates(
            max_alert_ratio=1.0,  # the retrained model must not alert more than the champion
            min_agreement=0.8,
            max_score_shift=None,  # the retrained model's scores are its own calibration
            max_latency_p99_ms=250.0,
        ),
        stage_timeout_s=60.0,
    )
    return {
        "drift_config": DriftConfig(
            metric="psi",
            threshold=0.5,
            min_samples=50,
            persistence=opts.drift_persistence,
            cooldown=3,
        ),
        "drift_period_s": opts.drift_period_s,
        "retrain_config": RetrainConfig(
            # Drift-triggered runs train from the drift's onset (create_app's wiring):
            # a model fitted on both regimes drifts from the new one again (measured: it
            # was promoted and retrained in a loop).
            min_rows=opts.retrain_min_rows,
            quantile=opts.retrain_quantile,
            policy=policy,
            max_holdout_alert_rate=0.05,
            min_true_alarm_recall=0.0,
            min_false_alarm_cleared=0.0,
        ),
    }


# -- the plant -------------------------------------------------------------------------------
def floor_with_regime(
    gw: planning.GatewayPlan, plan: planning.FloorPlan, opts: DriftOptions
) -> dict[str, Any]:
    """The gateway's simulated floor (a full ``FactoryConfig`` mapping) with every machine
    moving from ``base_level`` to ``regime_level`` at ``regime_at_s``."""
    load = LoadProfile(regimes=((0.0, opts.base_level), (opts.regime_at_s, opts.regime_level)))
    cfg = FactoryConfig.generate(
        plan.machines_per_gateway, gateway=gw.name, seed=plan.seed + gw.index, load=load
    )
    data: dict[str, Any] = json.loads(json.dumps(_plain(cfg)))
    return data


def _plain(obj: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [_plain(x) for x in obj]
    return obj


# -- the run ---------------------------------------------------------------------------------
def _run(opts: DriftOptions, workdir: Path, console: Any) -> dict[str, Any]:
    n = opts.gateways
    plan = planning.plan_floor(
        gateways=n,
        machines_per_gateway=opts.machines_per_gateway,
        duration_s=opts.duration_s,
        n_faults=opts.faults,
        seed=opts.seed,
        partition=None,
        warmup_s=opts.warmup_s,
    )
    offline = plan.gateways[-1].name if opts.offline_node and n > 1 else None
    missing = missing_parts()
    with console.status("training the edge model on normal operation (hub side) ..."):
        maker = ModelMaker(plan, seed=opts.seed)
        champion = maker.version(CHAMPION, opts.champion_threshold)
    # The vibration group is the delivered model's alone, so the false alarms retraining
    # must fix are its own; the process group keeps the preset's streaming robust
    # detector, which settles at the new load by itself (`settle`, ~20 s).
    spec = write_spec(workdir, champion[0], streaming_vibration=False)
    fopts = FleetOptions(
        gateways=n,
        machines_per_gateway=opts.machines_per_gateway,
        duration_s=opts.duration_s,
        measure_every_s=opts.measure_every_s,
    )
    report: dict[str, Any] = {"missing": missing, "offline_node": offline}
    with FleetRun(plan, fopts, workdir, hub_options(opts, missing)) as run:
        # Nodes silent for a few reconcile rounds count as offline (not chosen for cohorts).
        run.plane.online_s = 4 * fopts.reconcile_every_s
        tickers = _start_tickers(run)

        def configure(name: str, cfg: dict[str, Any]) -> None:
            gw = next(g for g in plan.gateways if g.name == name)
            src = cfg["sources"][0]
            src["factory"] = floor_with_regime(gw, plan, opts)
            if name == offline:
                src["faults"] = []  # its plant time restarts when it comes back
            # An incident closes after half a second without an anomalous window, so
            # events count alarm bursts (with the default 2 s, a drifted model keeps one
            # incident open for minutes and its false alarms would not show as events).
            cfg["decide"]["clear_after_s"] = opts.clear_after_s
            if not missing:
                cfg["models"]["samples"] = {
                    "max_rows": 256,
                    "seed": gw.index,
                }

        run.configure = configure
        hub = run.client
        hub.register(champion[0], champion[1], actor="scenario", reason="trained at base load")
        hub.post(f"/v1/models/{CHAMPION}/promote", {"actor": "scenario"})
        hub.put(f"/v1/groups/{FLEET_GROUP}", {"act": "champion"})
        steps: list[dict[str, Any]] = []
        start_ns = time.time_ns() + int(fopts.startup_s * 1e9)
        run.launch(spec, [g.name for g in plan.gateways if g.name != offline], start_ns=start_ns)
        if offline is not None:
            # Online just long enough to run the champion; off before the regime changes.
            off_after = max(opts.regime_at_s - 8.0, 6.0)
            run.launch(spec, [offline], duration_s=off_after, start_ns=start_ns)
        view = _View(run, console, opts, start_ns)
        t_conv = view.wait(lambda s: all_acting(s, CHAMPION, n), 60.0, "gateways converging")
        if t_conv is None:
            report["error"] = "the gateways did not converge on the champion in 60 s"
        plant_s = _plant_clock(start_ns)
        steps.append({"step": "fleet_converged_on_champion", "at_s": round(plant_s(), 2)})
        promoted_s: float | None = None
        new_champion: str | None = None
        end_by = time.monotonic() + opts.duration_s + 30.0
        while run.running() and time.monotonic() < end_by:
            champ = _champion(hub)
            view.show(f"champion {champ}: waiting for drift, retraining and promotion")
            if champ not in (None, CHAMPION):
                promoted_s, new_champion = plant_s(), champ
                break
            time.sleep(0.5)
        report["new_champion"] = new_champion
        if new_champion is not None and offline is not None:
            remaining = max(opts.duration_s - (promoted_s or 0.0), 15.0)
            run.launch(spec, [offline], duration_s=remaining, start_ns=time.time_ns())
            back = run.launched[offline][-1]
            conv = view.wait(
                lambda s: any(
                    r["node"] == offline
                    and r["actual_version"] == new_champion
                    and r["status"] == "converged"
                    for r in s.get("nodes", [])
                ),
                60.0,
                "offline node reconnecting",
            )
            report["offline_node_converged_s"] = round(conv - back, 2) if conv else None
        view.wait(lambda s: not run.running(), opts.duration_s + 60.0, "gateways finishing")
        for t in tickers:
            t.stop()
        report.update(_figures(run, opts, start_ns, promoted_s, offline))
        report["steps"] = steps + _hub_steps(run, start_ns, opts)
        report["steps"].sort(key=lambda s: s["at_s"])
        report["promoted"] = new_champion is not None
        report["final_champion"] = _champion(hub)
        running = [r for r in hub.get("/v1/rollouts")["rollouts"] if r["outcome"] == "running"]
        report["running_challenger"] = running[-1]["challenger"] if running else None
        report["retrained_version"] = new_champion
        report["wall_s"] = round(run.now(), 1)
        report["gateways"] = n
        report["gateway_exit_codes"] = {k: p.returncode for k, p in run.procs.items()}
        failed = [k for k, p in run.procs.items() if p.returncode != 0]
        if failed:
            report["gateway_errors"] = {k: run.log_tail(k) for k in failed}
    report.setdefault("offline_node_converged_s", None)
    return report


def _plant_clock(start_ns: int) -> Any:
    return lambda: (time.time_ns() - start_ns) / SEC


def _start_tickers(run: FleetRun) -> list[Any]:
    """What ``hub serve`` runs beside the rollout ticker: the drift judge on a timer
    (``create_app`` wires its triggers to retraining, from each drift's onset)."""
    drift = getattr(run.app.state, "drift", None)
    if drift is None:
        return []
    from edgeloop.hub.drift_ticker import DriftTicker

    return [DriftTicker(drift, every_s=1.0).start()]


def _champion(hub: Any) -> str | None:
    try:
        return str(hub.get("/v1/models/champion")["version"])
    except Exception:
        return None


def _figures(
    run: FleetRun,
    opts: DriftOptions,
    start_ns: int,
    promoted_s: float | None,
    offline: str | None,
) -> dict[str, Any]:
    stats = run.stats()
    # Always-on gateways only: the offline one's plant clock restarts when it comes back.
    faults = [
        FaultInterval(f["machine"], f["kind"], int(f["start_ns"]), int(f["end_ns"]))
        for name, s in stats.items()
        if name != offline
        for f in s.get("faults", [])
    ]
    stored = [e for e in run.store.events(limit=1_000_000) if e.node != offline]
    models = {v["version"] for v in run.client.get("/v1/models")["versions"]}

    def by(pred: Any) -> list[EventTime]:
        return [EventTime(e.machine, e.t_end_ns) for e in stored if pred(e.detector)]

    def uses_model(detector: str) -> bool:
        return bool(models & set(re.split(r"[(),]", detector)))

    def acc_of(events: list[EventTime]) -> Any:
        return account(
            faults,
            events,
            start_ns=start_ns,
            warmup_s=opts.warmup_s,
            change_s=opts.regime_at_s,
            promoted_s=promoted_s,
            end_s=opts.duration_s,
            settle_s=opts.settle_s,
        )

    acc = acc_of(by(lambda d: True))
    # The same count split by what raised the events: the delivered (retrained) model,
    # or the streaming detectors the learning loop does not touch.
    model = acc_of(by(uses_model))
    streaming = acc_of(by(lambda d: not uses_model(d)))

    def rate(p: Any) -> float | None:
        return round(p.per_hour, 1) if p is not None and p.per_hour is not None else None

    def rates(a: Any) -> dict[str, float | None]:
        recall = round(a.recall_after, 4) if a.recall_after is not None else None
        return {
            "before": rate(a.before),
            "peak": rate(a.peak),
            "after": rate(a.after),
            "recall_after": recall,
        }

    return {
        "false_alarms_per_hour_before": rate(acc.before),
        "false_alarms_per_hour_peak": rate(acc.peak),
        "false_alarms_per_hour_after": rate(acc.after),
        "recall_after": round(acc.recall_after, 4) if acc.recall_after is not None else None,
        "false_alarms_per_hour_by_source": {
            "delivered_model": rates(model),
            "streaming_detectors": rates(streaming),
        },
        "phases": {
            name: {"start_s": p.start_s, "end_s": p.end_s, "false_alarms": p.false_alarms}
            for name, p in (("before", acc.before), ("peak", acc.peak), ("after", acc.after))
            if p is not None
        },
        "faults_after": acc.faults_after,
        "faults_detected_after": acc.detected_after,
        "faults_injected": len(faults),
        "events_stored": len(stored),
        "events_by_detector": dict(Counter(e.detector for e in stored).most_common()),
        "false_alarm_times_s": [round(t, 1) for t in acc.false_alarm_times_s],
        "regime_at_s": opts.regime_at_s,
        "promoted_at_s": round(promoted_s, 2) if promoted_s is not None else None,
        "final_acting": {
            r["node"]: r["actual_version"] for r in run.sampler.latest.get("nodes", [])
        },
    }


def _hub_steps(run: FleetRun, start_ns: int, opts: DriftOptions) -> list[dict[str, Any]]:
    """The steps the hub recorded, each at its own time (plant seconds)."""

    def at(ns: int) -> float:
        return round((ns - start_ns) / SEC, 2)

    steps: list[dict[str, Any]] = [{"step": "regime_change", "at_s": opts.regime_at_s}]
    try:
        drift = run.client.get("/v1/drift")
    except Exception:
        drift = None
    trig = (drift or {}).get("last_trigger") if isinstance(drift, dict) else None
    if isinstance(trig, dict) and trig.get("at_ns"):
        steps.append({"step": "drift_detected", "at_s": at(int(trig["at_ns"]))})
    try:
        triggers = run.client.get("/v1/drift/triggers")
    except Exception:
        triggers = None
    if isinstance(triggers, dict):
        triggers = triggers.get("triggers")
    if isinstance(triggers, list) and triggers:
        steps = [s for s in steps if s["step"] != "drift_detected"]
        for t in sorted(triggers, key=lambda t: int(t["at_ns"])):
            steps.append(
                {"step": "drift_detected", "at_s": at(int(t["at_ns"])), "reason": t["reason"]}
            )
    try:
        runs = run.client.get("/v1/retrain/runs")["runs"]
    except Exception:
        runs = []
    for r in runs:
        steps.append(
            {"step": "retrain_started", "at_s": at(int(r["started_ns"])), "actor": r["actor"]}
        )
        if r.get("finished_ns"):
            why = (r.get("detail") or {}).get("why") or r.get("reason")
            steps.append(
                {
                    "step": f"retrain_{r['outcome']}",
                    "at_s": at(int(r["finished_ns"])),
                    "actor": r["actor"],
                    "version": r.get("version"),
                    "why": why,
                }
            )
    for e in run.client.get("/v1/deployments")["events"]:
        if e["actor"] == "scenario":
            continue
        kind = e["kind"]
        if kind == "rollout":
            d = e.get("detail") or {}
            name = f"rollout_{d.get('decision', 'decision')}_{d.get('stage', '')}".rstrip("_")
            steps.append({"step": name, "at_s": at(int(e["at_ns"])), "reason": e.get("reason")})
        else:
            steps.append({"step": f"{kind}", "at_s": at(int(e["at_ns"])), "actor": e["actor"]})
    return steps


def check(report: dict[str, Any]) -> list[str]:
    """What the report fails to show (empty: the scenario showed what it must)."""
    problems = [f"missing: {m}" for m in report.get("missing") or []]
    if report.get("error"):
        problems.append(str(report["error"]))
    if not report.get("promoted"):
        problems.append("no retrained model was promoted")
    peak, after = (
        report.get("false_alarms_per_hour_peak"),
        report.get("false_alarms_per_hour_after"),
    )
    if peak is None or after is None or after > peak / 3:
        problems.append(
            f"false alarms per hour after ({after}) not <= 1/3 of the peak ({peak}); by "
            f"source: {report.get('false_alarms_per_hour_by_source')}"
        )
    recall = report.get("recall_after")
    if recall is None or recall < 0.95:
        problems.append(f"recall after promotion {recall} < 0.95")
    if report.get("offline_node") and report.get("offline_node_converged_s") is None:
        problems.append("the offline node did not converge on the new champion")
    if any(s.get("actor") not in (None, "rollout", "retrain", "drift") for s in report["steps"]):
        problems.append("a step was taken by hand")
    if report.get("gateway_errors"):
        problems.append(f"gateways failed: {sorted(report['gateway_errors'])}")
    return problems


class _View:
    """The progress display: plant time, the regime, what each node acts on."""

    def __init__(self, run: FleetRun, console: Any, opts: DriftOptions, start_ns: int) -> None:
        self.run = run
        self.console = console
        self.opts = opts
        self.start_ns = start_ns
        self._last = 0.0

    def frame(self, phase: str) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table

        t = (time.time_ns() - self.start_ns) / SEC
        regime = (
            f"load {self.opts.regime_level} (changed at {self.opts.regime_at_s:.0f} s)"
            if t >= self.opts.regime_at_s
            else f"load {self.opts.base_level}"
        )
        table = Table(expand=True)
        for col in ("gateway", "acting on", "status", "in sync", "online"):
            table.add_column(col)
        for r in self.run.sampler.latest.get("nodes", []):
            table.add_row(
                r["node"],
                r["actual_version"] or "-",
                r["status"] or "-",
                str(r["in_sync"]),
                str(r["online"]),
            )
        head = f"plant t = {t:6.1f} s / {self.opts.duration_s:.0f} s   {regime}   {phase}"
        return Group(Panel(head, title="edgeloop demo --scenario drift"), table)

    def show(self, phase: str) -> None:
        """Print a frame, at most every 5 s."""
        if self.opts.live and time.monotonic() - self._last > 5:
            self._last = time.monotonic()
            self.console.print(self.frame(phase))

    def wait(self, pred: Any, timeout_s: float, phase: str) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if pred(self.run.sampler.latest):
                return self.run.now()
            self.show(phase)
            time.sleep(0.2)
        return None

"""A hub with its control plane and real gateway processes that reconcile models from it.

The learning-loop scenarios (``bad_model``, ``drift_scenario``) share this harness:

* :class:`ModelMaker` fits the multivariate edge model once on simulated normal
  operation (the hub's training, ``scenarios/training.py``) and exports versions of it
  with a chosen alert threshold (a champion, a deliberately bad model that alerts on
  every window, ...), each with its manifest;
* :class:`FleetRun` starts the hub (FastAPI over SQLite, its signing key, the rollout
  ticker ``hub serve`` runs), writes each gateway's config with a ``models:`` section
  trusting the key the hub serves, starts one ``python -m edgeloop.node`` process per
  gateway, and samples ``GET /v1/fleet/status`` on a thread: what every node *reports*
  acting on, over time (:class:`Timeline`);
* :func:`swaps_from_log` reads the swaps a gateway logged (``swapped to v:act, ...``),
  a second, node-side record of what each node acted on and when.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from edgeloop.hub.app import create_app
from edgeloop.hub.client import HubClient
from edgeloop.hub.keys import hub_key
from edgeloop.hub.rollout_ticker import RolloutTicker
from edgeloop.hub.server import BackgroundServer
from edgeloop.hub.store import HubStore
from edgeloop.learn import fit_model, to_onnx
from edgeloop.learn.train import TrainedModel
from edgeloop.node.build import resolve_spec
from edgeloop.registry import describe
from edgeloop.scenarios import plan as planning
from edgeloop.scenarios.training import normal_features

T = TypeVar("T")


def in_workdir(workdir: Path | None, prefix: str, run: Callable[[Path], T]) -> T:
    """``run(directory)`` in ``workdir`` (created, kept) or in a temporary directory."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return run(workdir)
    import tempfile

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        return run(Path(tmp))


GROUP = "vibration"
DETECTOR = "pca_t2q_vibration"
FLEET_GROUP = "floor"


# -- models -------------------------------------------------------------------------------
class ModelMaker:
    """Fits the vibration model on normal windows of the plan's machines, once; exports
    versions of it that differ only in their alert threshold.

    Args:
        plan: the floor.
        seconds: simulated seconds of normal operation per gateway.
        seed: training seed.
    """

    def __init__(self, plan: planning.FloorPlan, seconds: float = 60.0, seed: int = 7) -> None:
        names, x = normal_features(plan, "factory", seconds, seed)[GROUP]
        self.plan = plan
        self.features = x
        self.model = fit_model(x, names, kind="pca_t2q", seed=seed, group=GROUP)
        self.seconds = seconds

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Calibrated scores of ``x`` under the fitted model (threshold-free)."""
        return np.asarray(self.model.score(x))

    def version(
        self,
        name: str,
        threshold: float,
        *,
        parent: str | None = None,
        model: TrainedModel | None = None,
        features: np.ndarray | None = None,
        creator: str = "scenario",
    ) -> tuple[bytes, dict[str, Any]]:
        """ONNX bytes and manifest of ``name``: the fitted model alerting at ``threshold``."""
        fitted = dataclasses.replace(model or self.model, threshold=threshold)
        data = to_onnx(fitted)
        manifest = describe(
            fitted,
            data,
            self.features if features is None else features,
            version=name,
            preset="factory",
            start_ns=0,
            end_ns=int(self.seconds * 1e9),
            source_nodes=tuple(g.name for g in self.plan.gateways),
            creator=creator,
            created_ns=time.time_ns(),
            metrics={"threshold": threshold},
            parent=parent,
        )
        return data, manifest.to_dict()


def write_spec(workdir: Path, first_model: bytes, *, streaming_vibration: bool = True) -> Path:
    """The gateways' pipeline: the factory preset plus an ONNX detector slot in the
    vibration group that delivered models take over (started on ``first_model``).
    ``streaming_vibration=False`` leaves the vibration group to the delivered model alone
    (the preset's streaming robust detector there is dropped)."""
    spec: dict[str, Any] = resolve_spec("factory").model_dump(mode="json")
    if not streaming_vibration:
        spec["detectors"] = [d for d in spec["detectors"] if d["group"] != GROUP]
    path = workdir / "first-model.onnx"
    path.write_bytes(first_model)
    spec["detectors"].append({"group": GROUP, "type": "onnx", "name": DETECTOR, "model": str(path)})
    out = workdir / "pipeline.yaml"
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


# -- what nodes report over time ----------------------------------------------------------
@dataclass(slots=True)
class Timeline:
    """Samples of ``GET /v1/fleet/status``: (seconds since the run's t0, node → acting
    version the node reported, or ``None`` before its first report)."""

    samples: list[tuple[float, dict[str, str | None]]] = field(default_factory=list)

    def max_acting(self, version: str) -> tuple[int, float | None]:
        """The most nodes seen acting on ``version`` at once, and when first."""
        best, when = 0, None
        for at, acting in self.samples:
            n = sum(1 for v in acting.values() if v == version)
            if n > best:
                best, when = n, at
        return best, when

    def first(self, pred: Any) -> float | None:
        """Time of the first sample whose node → version map satisfies ``pred``."""
        return next((at for at, acting in self.samples if pred(acting)), None)


class StatusSampler:
    """Polls the fleet status every ``every_s`` in a daemon thread into a :class:`Timeline`."""

    def __init__(self, client: HubClient, t0: float, every_s: float = 0.2) -> None:
        self.client = client
        self.t0 = t0
        self.every_s = every_s
        self.timeline = Timeline()
        self.latest: dict[str, Any] = {"nodes": []}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fleet-sampler")

    def start(self) -> StatusSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status = self.client.get("/v1/fleet/status")
            except Exception:  # the hub is busy or stopping: the next sample will do
                self.errors += 1
            else:
                self.latest = status
                acting = {r["node"]: r["actual_version"] for r in status["nodes"]}
                self.timeline.samples.append((time.monotonic() - self.t0, acting))
            self._stop.wait(self.every_s)


# -- node-side record: swaps in the gateway logs --------------------------------------------
_SWAP = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) edgeloop\.node\.reconcile swapped to (.*?) \("
)


def swaps_from_log(text: str) -> list[tuple[float, str]]:
    """(wall-clock seconds, acting version) of each swap a gateway logged, in order."""
    out = []
    for line in text.splitlines():
        m = _SWAP.match(line)
        if not m:
            continue
        when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        slots = [s.strip().rsplit(":", 1) for s in m.group(2).split(",")]
        acting = next((v for v, *mode in slots if mode == ["act"]), slots[0][0])
        out.append((when, acting))
    return out


def max_concurrent(intervals: dict[str, list[tuple[float, float]]]) -> int:
    """The most nodes whose intervals overlap at one instant."""
    edges = sorted(
        [(a, 1) for iv in intervals.values() for a, _ in iv]
        + [(b, -1) for iv in intervals.values() for _, b in iv]
    )
    best = cur = 0
    for _, d in edges:
        cur += d
        best = max(best, cur)
    return best


def acting_intervals(
    swaps: dict[str, list[tuple[float, str]]], version: str, end: float
) -> dict[str, list[tuple[float, float]]]:
    """Per node, the wall-clock intervals during which its log says it acted on ``version``."""
    out: dict[str, list[tuple[float, float]]] = {}
    for node, seq in swaps.items():
        ivs = []
        for i, (at, v) in enumerate(seq):
            if v == version:
                until = seq[i + 1][0] if i + 1 < len(seq) else end
                ivs.append((at, until))
        if ivs:
            out[node] = ivs
    return out


# -- the run --------------------------------------------------------------------------------
@dataclass(slots=True)
class FleetOptions:
    gateways: int = 4
    machines_per_gateway: int = 3
    duration_s: float = 40.0
    reconcile_every_s: float = 1.0
    measure_every_s: float = 2.0
    startup_s: float = 3.0
    drain_timeout_s: float = 20.0
    tick_s: float = 0.1


class FleetRun:
    """The hub and the gateway processes of one scenario (see the module docstring).

    Use as a context manager: the gateways and the hub are stopped on exit.
    """

    def __init__(
        self,
        plan: planning.FloorPlan,
        opts: FleetOptions,
        workdir: Path,
        app_options: dict[str, Any] | None = None,
    ) -> None:
        self.plan = plan
        self.opts = opts
        self.workdir = workdir
        self.t0 = time.monotonic()
        self.t0_ns = time.time_ns()
        self.store = HubStore.open(f"sqlite:///{workdir / 'hub.db'}")
        self.store.create_all()
        self.app = create_app(
            self.store, signing_key=hub_key(workdir / "hub"), **(app_options or {})
        )
        self.plane = self.app.state.control
        self.server = BackgroundServer(self.app).start()
        self.ticker = RolloutTicker(self.plane, every_s=1.0).start()
        self.client = HubClient(self.server.url, timeout_s=30.0)
        self.key_path = workdir / "hub.pem"
        self.key_path.write_text(self.client.get("/v1/keys")["keys"][0]["pem"])
        self.sampler = StatusSampler(self.client, self.t0).start()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Any] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.launched: dict[str, list[float]] = {}
        self.start_ns = 0
        self.configure: Any = None
        """Optional ``configure(gateway_name, config)`` that edits each config in place."""

    def now(self) -> float:
        """Seconds since the run's t0."""
        return time.monotonic() - self.t0

    def gateway_config(self, gw: planning.GatewayPlan, spec: Path) -> dict[str, Any]:
        cfg = planning.gateway_config(
            gw, self.plan, spec, self.server.url, self.workdir, self.opts.tick_s, 0.0
        )
        cfg.pop("chaos", None)
        cfg["models"] = {
            "dir": str(self.workdir / f"{gw.name}-models"),
            "trusted_keys": [str(self.key_path)],
            "fleet_group": FLEET_GROUP,
            "reconcile_every_s": self.opts.reconcile_every_s,
            "measure_every_s": self.opts.measure_every_s,
            "retry_max_s": 2.0,
        }
        if self.configure is not None:
            self.configure(gw.name, cfg)
        return cfg

    def launch(
        self,
        spec: Path,
        names: list[str] | None = None,
        *,
        duration_s: float | None = None,
        start_ns: int | None = None,
    ) -> None:
        """Start the gateways (``names``: a subset) as ``python -m edgeloop.node`` processes."""
        if start_ns is None:
            start_ns = time.time_ns() + int(self.opts.startup_s * 1e9)
        self.start_ns = self.start_ns or start_ns
        for gw in self.plan.gateways:
            if names is not None and gw.name not in names:
                continue
            cfg = self.configs.get(gw.name) or self.gateway_config(gw, spec)
            self.configs[gw.name] = cfg
            path = self.workdir / f"{gw.name}.yaml"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            before = self.procs.get(gw.name)
            if before is not None and before.poll() is None:
                raise RuntimeError(f"{gw.name}: its previous process is still running")
            old = self.logs.get(gw.name)
            if old is not None:
                old.close()
            log = open(self.workdir / f"{gw.name}.log", "ab")  # noqa: SIM115
            self.logs[gw.name] = log
            self.launched.setdefault(gw.name, []).append(self.now())
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            self.procs[gw.name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "edgeloop.node",
                    "--config",
                    str(path),
                    "--duration",
                    str(duration_s or self.opts.duration_s),
                    "--start-ns",
                    str(start_ns),
                    "--drain-timeout",
                    str(self.opts.drain_timeout_s),
                    "--stats-out",
                    str(self.workdir / f"{gw.name}.stats.json"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def running(self) -> bool:
        return any([p.poll() is None for p in self.procs.values()])  # poll every one

    def wait(self, pred: Any, timeout_s: float, poll_s: float = 0.2) -> float | None:
        """Wait until ``pred(fleet status)`` holds; its time (s since t0) or ``None``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if pred(self.sampler.latest):
                return self.now()
            time.sleep(poll_s)
        return None

    def wait_exit(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.2)

    def stats(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name in self.procs:
            path = self.workdir / f"{name}.stats.json"
            if path.exists():
                out[name] = json.loads(path.read_text())
        return out

    def swaps(self) -> dict[str, list[tuple[float, str]]]:
        """Per gateway, the swaps its log records (wall-clock seconds, acting version)."""
        return {
            name: swaps_from_log((self.workdir / f"{name}.log").read_text(errors="replace"))
            for name in self.procs
        }

    def log_tail(self, name: str, chars: int = 2000) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")[-chars:]

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
        for f in self.logs.values():
            f.close()
        self.sampler.stop()
        self.ticker.stop()
        self.client.close()
        self.server.stop()
        self.store.close()

    def __enter__(self) -> FleetRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def all_acting(status: dict[str, Any], version: str, n: int) -> bool:
    """Every one of ``n`` nodes reports acting on ``version``, converged."""
    rows = status.get("nodes", [])
    return (
        len(rows) >= n
        and sum(1 for r in rows if r["actual_version"] == version and r["status"] == "converged")
        >= n
    )

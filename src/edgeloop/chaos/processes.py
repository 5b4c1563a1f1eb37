"""The processes of one chaos scenario: gateways behind fault proxies, hub replicas.

Gateways are ``python -m edgeloop.node --plan`` processes (a factory simulator as
source, a SQLite outbox, an MQTT uplink); each reaches the broker through its own
:class:`~edgeloop.sim.netproxy.NetProxy`. Hubs are ``edgeloop hub serve --mqtt``
processes on one shared subscription, over one PostgreSQL database. Everything is
started, signalled and stopped by pid; nothing here matches processes by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edgeloop.chaos.scenarios import Scenario
from edgeloop.chaos.services import free_port
from edgeloop.node.config import parse_node_config
from edgeloop.node.plan import NodePlan, make_plan, plan_to_json
from edgeloop.sim.netproxy import NetProxy

MACHINES_PER_GATEWAY = 2
SUMMARY_EVERY_S = 0.5
TICK_S = 0.1


@dataclass
class Gateway:
    """One gateway process and the proxy in front of its uplink."""

    name: str
    index: int
    plan: NodePlan
    plan_path: Path
    proxy: NetProxy
    stats_path: Path
    log_path: Path
    outbox_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: list[dict[str, Any]] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        import json

        if not self.stats_path.exists():
            return {}
        data: dict[str, Any] = json.loads(self.stats_path.read_text())
        return data


@dataclass
class Hub:
    """One hub replica (``edgeloop hub serve --mqtt``)."""

    instance: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0


def gateway_config(
    name: str,
    index: int,
    scenario: Scenario,
    tenant: str,
    proxy_port: int,
    workdir: Path,
    seed: int,
    duration_s: float,
    budget_bytes: int | None = None,
) -> dict[str, Any]:
    """The node config of gateway ``index`` (YAML-ready data)."""
    cfg: dict[str, Any] = {
        "node_id": name,
        "tenant": tenant,
        "pipeline": "factory",
        "summary_every_s": SUMMARY_EVERY_S,
        "outbox": {"url": f"sqlite:///{workdir / (name + '-outbox.db')}"},
        "uplink": {
            "kind": "mqtt",
            "host": "127.0.0.1",
            "port": proxy_port,
            "timeout_s": 3.0,
            "retry_max_s": 1.0,
        },
        "sources": [
            {
                "type": "sim",
                "seed": seed * 100 + index,
                "tick_s": TICK_S,
                "phase_s": round(index * TICK_S / (scenario.gateways + 1), 4),
                "factory": {
                    "generate": {
                        "n_machines": MACHINES_PER_GATEWAY,
                        "gateway": name,
                        "seed": seed + index,
                    }
                },
                "faults": [
                    {
                        "kind": kind,
                        "machine": f"{name}.m01",
                        "start_s": round(a * duration_s, 3),
                        "end_s": round(b * duration_s, 3),
                    }
                    for kind, a, b in scenario.faults
                ],
            }
        ],
        "status_file": str(workdir / f"{name}.status.json"),
    }
    if budget_bytes is not None:
        cfg["outbox"]["budget_bytes"] = budget_bytes
    if scenario.corrupt_samples > 0:
        cfg["chaos"] = {"corrupt_samples": scenario.corrupt_samples, "seed": seed * 100 + index}
    return cfg


class Deployment:
    """Gateways, proxies and hubs of one scenario run.

    Args:
        broker: ``(host, port)`` of the broker the proxies and hubs connect to.
        db_url: the hub store (a PostgreSQL schema of this scenario).
        start_ns: the wall-clock instant at which the gateways' simulators start.
    """

    def __init__(
        self,
        scenario: Scenario,
        workdir: Path,
        broker: tuple[str, int],
        db_url: str,
        tenant: str,
        seed: int,
        duration_s: float,
        start_ns: int,
        drain_timeout_s: float,
        budget_bytes: int | None = None,
    ) -> None:
        self.scenario = scenario
        self.workdir = workdir
        self.broker = broker
        self.db_url = db_url
        self.tenant = tenant
        self.duration_s = duration_s
        self.start_ns = start_ns
        self.drain_timeout_s = drain_timeout_s
        self.gateways: list[Gateway] = []
        self.hubs: list[Hub] = []
        self._logs: list[IO[bytes]] = []
        for i in range(scenario.gateways):
            name = f"gw{i + 1}"
            proxy = NetProxy(*broker, seed=seed * 1000 + i).start_in_thread()
            cfg = gateway_config(
                name, i, scenario, tenant, proxy.port, workdir, seed, duration_s, budget_bytes
            )
            plan = make_plan(parse_node_config(cfg, where=f"{name} config"))
            plan_path = workdir / f"{name}.plan.json"
            plan_path.write_text(plan_to_json(plan))
            self.gateways.append(
                Gateway(
                    name,
                    i,
                    plan,
                    plan_path,
                    proxy,
                    workdir / f"{name}.stats.json",
                    workdir / f"{name}.log",
                    workdir / f"{name}-outbox.db",
                )
            )
        for i in range(scenario.hubs):
            self.hubs.append(Hub(str(i), free_port(), workdir / f"hub{i}.log"))

    # -- processes ------------------------------------------------------------------
    def _log(self, path: Path) -> IO[bytes]:
        f = path.open("ab")
        self._logs.append(f)
        return f

    def start_hub(self, i: int, wait_s: float = 60.0) -> None:
        """Start hub ``i`` and wait until it serves (it subscribes before it serves)."""
        self.launch_hub(i)
        self.wait_hub(i, wait_s)

    def launch_hub(self, i: int) -> None:
        hub = self.hubs[i]
        cmd = [sys.executable, "-m", "edgeloop.cli.main", "hub", "serve"]
        cmd += ["--db", self.db_url, "--port", str(hub.port)]
        cmd += ["--mqtt", f"{self.broker[0]}:{self.broker[1]}", "--group", self.tenant]
        cmd += ["--instance", hub.instance, "--tenant", self.tenant]
        cmd += ["--max-pending", str(self.scenario.hub_max_pending)]
        log = self._log(hub.log_path)
        # Group = tenant: scenarios sharing one broker never share a subscription or a
        # client id. In the scenario's directory: what a hub keeps beside it stays there.
        hub.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        hub.starts += 1

    def wait_hub(self, i: int, wait_s: float = 60.0) -> None:
        hub = self.hubs[i]
        assert hub.proc is not None
        deadline = time.monotonic() + wait_s
        while not _answers(f"http://127.0.0.1:{hub.port}/healthz"):
            if hub.proc.poll() is not None:
                tail = hub.log_path.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"hub {i} exited ({hub.proc.returncode}): {tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"hub {i} did not serve within {wait_s:g} s")
            time.sleep(0.1)

    def start_gateway(self, i: int) -> None:
        gw = self.gateways[i]
        cmd = [sys.executable, "-m", "edgeloop.node", "--plan", str(gw.plan_path)]
        cmd += ["--duration", str(self.duration_s), "--start-ns", str(self.start_ns)]
        cmd += ["--drain-timeout", str(self.drain_timeout_s)]
        cmd += ["--stats-out", str(gw.stats_path)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        gw.proc = subprocess.Popen(
            cmd, stdout=self._log(gw.log_path), stderr=subprocess.STDOUT, env=env, cwd=self.workdir
        )
        gw.starts += 1

    def kill_gateway(self, i: int, wait_s: float = 3.0) -> dict[str, Any]:
        """SIGKILL gateway ``i`` as soon as bytes of an uplink publish pass its proxy
        (a batch on the wire, its ack not back yet); returns what was seen."""
        gw = self.gateways[i]
        assert gw.proc is not None
        before = gw.proxy.stats.bytes_up
        deadline = time.monotonic() + wait_s
        while gw.proxy.stats.bytes_up == before and time.monotonic() < deadline:
            time.sleep(0.001)
        mid_batch = gw.proxy.stats.bytes_up != before
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(10)
        info = {"t_ns": time.time_ns(), "mid_batch": mid_batch}
        gw.kills.append(info)
        return info

    def signal_hub(self, i: int, sig: signal.Signals) -> None:
        proc = self.hubs[i].proc
        assert proc is not None
        os.kill(proc.pid, sig)
        if sig == signal.SIGKILL:
            proc.wait(10)

    def wait_gateways(self, timeout_s: float) -> dict[str, int | None]:
        """Wait for every gateway to exit (they run their duration, then drain)."""
        deadline = time.monotonic() + timeout_s
        for gw in self.gateways:
            if gw.proc is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                gw.proc.wait(max(0.1, deadline - time.monotonic()))
        return {gw.name: gw.proc.poll() if gw.proc else None for gw in self.gateways}

    def hub_batches(self) -> dict[str, int | None]:
        """Batches each live hub replica committed (its ``/metrics``), or ``None``."""
        out: dict[str, int | None] = {}
        for hub in self.hubs:
            out[f"hub{hub.instance}"] = None
            if hub.proc is None or hub.proc.poll() is not None:
                continue
            try:
                url = f"http://127.0.0.1:{hub.port}/metrics"
                with urllib.request.urlopen(url, timeout=5.0) as r:
                    text = r.read().decode()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith('edgeloop_hub_ingest_batches_total{outcome="ok"}'):
                    out[f"hub{hub.instance}"] = int(float(line.split()[-1]))
        return out

    def stop(self) -> None:
        """Stop everything still running (by pid) and the proxies; close the logs."""
        for gw in self.gateways:
            if gw.proc is not None and gw.proc.poll() is None:
                gw.proc.kill()
                gw.proc.wait(10)
        for hub in self.hubs:
            if hub.proc is not None and hub.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(hub.proc.pid, signal.SIGCONT)
                hub.proc.terminate()
                try:
                    hub.proc.wait(15)
                except subprocess.TimeoutExpired:
                    hub.proc.kill()
                    hub.proc.wait(10)
        for gw in self.gateways:
            gw.proxy.stop_thread()
        for f in self._logs:
            f.close()
        self._logs.clear()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as r:
            return bool(r.status == 200)
    except OSError:
        return False

"""Run the chaos matrix: real Mosquitto, PostgreSQL, gateway and hub processes.

For each scenario: a private Mosquitto (its own directory and port; the broker on
127.0.0.1:1883 when the binary is not installed), a PostgreSQL schema of its own in a
database created for the run (dropped after), hub processes on one shared
subscription, gateway processes behind fault proxies; then the scenario's timeline, a
wait until every gateway has run its time and drained its outbox, and the accounting
of :mod:`edgeloop.chaos.accounting`.
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeloop.chaos.accounting import (
    evicted_by_class,
    evicted_delivered,
    produced_samples,
    read_store,
)
from edgeloop.chaos.processes import Deployment
from edgeloop.chaos.scenarios import Scenario, Step
from edgeloop.chaos.services import (
    INSTALL_HINT,
    Mosquitto,
    fresh_database,
    mosquitto_binary,
    pg_server,
    port_open,
    schema_url,
)
from edgeloop.chaos.wire import WireTap

QUICK_S = 10.0
FULL_S = 40.0
STARTUP_S = 2.5
DRAIN_TIMEOUT_S = 40.0

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run the matrix."""

    seed: int = 0
    quick: bool = False
    duration_s: float | None = None
    workdir: Path | None = None
    parallel: int = 1
    broker: tuple[str, int] | None = None
    """Use this broker for every scenario (default: a private Mosquitto per scenario
    when the binary is installed, else 127.0.0.1:1883)."""

    @property
    def run_s(self) -> float:
        if self.duration_s is not None:
            return self.duration_s
        return QUICK_S if self.quick else FULL_S


def run_matrix(
    scenarios: list[Scenario], opts: RunOptions, progress: Progress = lambda _: None
) -> list[dict[str, Any]]:
    """Run ``scenarios`` one after another; one result dict per scenario, in order.

    Raises:
        RuntimeError: no broker or no PostgreSQL (a one-line instruction).
    """
    with contextlib.ExitStack() as stack:
        if opts.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-")))
        else:
            workdir = opts.workdir
            workdir.mkdir(parents=True, exist_ok=True)
        admin = stack.enter_context(pg_server())
        database = stack.enter_context(fresh_database(admin))

        def one(sc: Scenario) -> dict[str, Any]:
            progress(f"{sc.name}: {sc.proves}")
            say: Progress = lambda m: progress(f"[{sc.name}] {m.strip()}")  # noqa: E731
            with schema_url(database) as db_url:
                try:
                    return run_scenario(sc, opts, workdir / sc.name, db_url, say)
                except (RuntimeError, OSError) as exc:  # a process or service failed
                    say(f"error: {str(exc)[-600:]}")
                    return {"scenario": sc.name, "error": str(exc)[-600:], "ok": False}

        if opts.parallel <= 1:
            return [one(sc) for sc in scenarios]
        # Scenarios share nothing but the database server (a schema each) and the cores.
        with ThreadPoolExecutor(opts.parallel, thread_name_prefix="chaos") as pool:
            return list(pool.map(one, scenarios))


@contextlib.contextmanager
def _broker(
    sc: Scenario, workdir: Path, given: tuple[str, int] | None
) -> Iterator[tuple[str, int, Mosquitto | None]]:
    binary = mosquitto_binary()
    if given is not None:
        yield given[0], given[1], None
    elif binary is not None:
        broker = Mosquitto(binary, workdir / "mosquitto", sc.broker_extra).start()
        try:
            yield broker.host, broker.port, broker
        finally:
            broker.stop()
    elif port_open("127.0.0.1", 1883):
        yield "127.0.0.1", 1883, None
    else:
        raise RuntimeError(INSTALL_HINT)


def run_scenario(
    sc: Scenario, opts: RunOptions, workdir: Path, db_url: str, progress: Progress
) -> dict[str, Any]:
    """Run one scenario end to end and account for every sample."""
    workdir.mkdir(parents=True, exist_ok=True)
    if sc.needs_broker_binary and (opts.broker is not None or mosquitto_binary() is None):
        why = "a broker of its own (it restarts or reconfigures it)"
        return {"scenario": sc.name, "skipped": f"needs {why}"}
    t0 = time.monotonic()
    tenant = f"chaos-{sc.name}-{opts.seed}"
    duration = opts.run_s
    with _broker(sc, workdir, opts.broker) as (host, port, broker):
        budget = None if sc.budget_bytes is None else sc.budget_bytes[0 if opts.quick else 1]
        dep = Deployment(
            sc,
            workdir,
            (host, port),
            db_url,
            tenant,
            opts.seed,
            duration,
            0,
            DRAIN_TIMEOUT_S,
            budget,
        )
        tap = None
        log: list[dict[str, Any]] = []
        try:
            for i in range(len(dep.hubs)):
                dep.launch_hub(i)
            for i in range(len(dep.hubs)):
                dep.wait_hub(i)
            if any(s.action in ("replay", "forge") for s in sc.steps):
                tap = WireTap(host, port, tenant)
            dep.start_ns = time.time_ns() + int(STARTUP_S * 1e9)
            for i in range(len(dep.gateways)):
                dep.start_gateway(i)
            recovery_ns = None
            for step in sorted(sc.steps, key=lambda s: s.at):
                due = dep.start_ns + int(step.at * duration * 1e9)
                time.sleep(max(0.0, (due - time.time_ns()) / 1e9))
                entry = _do(step, dep, broker, tap, [g.name for g in dep.gateways])
                log.append(entry)
                progress(f"  {entry['t_s']:6.2f} s  {step.action} {entry.get('detail', '')}")
            if sc.recovery is not None and log:
                recovery_ns = max(int(e["done_ns"]) for e in log)
            left = (dep.start_ns - time.time_ns()) / 1e9 + duration
            codes = dep.wait_gateways(max(0.0, left) + DRAIN_TIMEOUT_S + 30)
            store = read_store(db_url, [g.name for g in dep.gateways], recovery_ns)
            hub_batches = dep.hub_batches()
        finally:
            if tap is not None:
                tap.close()
            dep.stop()
        drops = _broker_drops(broker)
    wall_s = time.monotonic() - t0
    result = _result(sc, dep, store, codes, log, recovery_ns, drops, wall_s, budget)
    # Batches each replica committed (since its last start): the shared subscription
    # splits the load between them.
    result["hub_batches"] = hub_batches
    return result


def _do(
    step: Step,
    dep: Deployment,
    broker: Mosquitto | None,
    tap: WireTap | None,
    nodes: list[str],
) -> dict[str, Any]:
    t = time.time_ns()
    out: dict[str, Any] = {"t_s": round((t - dep.start_ns) / 1e9, 2), "action": step.action}
    a = step.action
    i = int(step.arg[0]) if step.arg else 0
    if a in ("cut", "restore"):
        for gw in dep.gateways:
            gw.proxy.cut() if a == "cut" else gw.proxy.restore()
    elif a == "link":
        delay, drop = step.arg
        for gw in dep.gateways:
            gw.proxy.set_delay(delay)
            gw.proxy.set_drop(drop)
        out["detail"] = f"delay {delay * 1000:g} ms, drop {drop:g} per chunk"
    elif a == "kill_gateway":
        info = dep.kill_gateway(i)
        out["detail"] = f"gw{i + 1} mid-batch={info['mid_batch']}"
        out["mid_batch"] = info["mid_batch"]
    elif a == "start_gateway":
        dep.start_gateway(i)
    elif a == "kill_hub":
        dep.signal_hub(i, signal.SIGKILL)
    elif a == "start_hub":
        dep.start_hub(i)
    elif a == "pause_hub":
        dep.signal_hub(i, signal.SIGSTOP)
    elif a == "resume_hub":
        dep.signal_hub(i, signal.SIGCONT)
    elif a == "restart_broker":
        assert broker is not None
        broker.stop()
        time.sleep(1.0)
        broker.start()
    elif a == "replay":
        assert tap is not None
        out["detail"] = f"{tap.replay()} batches"
        out["replayed"] = int(out["detail"].split()[0])
    elif a == "forge":
        assert tap is not None
        forged = tap.forge(nodes)
        out["forged"] = forged
        out["detail"] = ", ".join(f"{k} {v}" for k, v in forged.items())
    out["done_ns"] = time.time_ns()
    return out


def _broker_drops(broker: Mosquitto | None) -> int | None:
    """Messages Mosquitto said it dropped for a slow client (logged at notice level)."""
    if broker is None or not broker.log.exists():
        return None
    return sum("dropped" in line for line in broker.log.read_text(errors="replace").splitlines())


def _result(
    sc: Scenario,
    dep: Deployment,
    store: Any,
    codes: dict[str, int | None],
    log: list[dict[str, Any]],
    recovery_ns: int | None,
    broker_drops: int | None,
    wall_s: float,
    budget_bytes: int | None,
) -> dict[str, Any]:
    produced = delivered = duplicates = violations = rejected = both = 0
    evicted = {k: 0 for k in ("raw", "summary", "event", "alarm")}
    evicted_entries = dict(evicted)
    resumed: list[float] = []
    last_commit: list[int] = []
    events = 0
    for gw in dep.gateways:
        stats = gw.stats()
        produced += produced_samples(gw.plan, dep.start_ns, dep.duration_s)
        counts = store.nodes[gw.name]
        duplicates += counts.duplicates
        delivered += counts.summary_samples - counts.duplicates
        violations += counts.order_violations
        events += counts.events
        if counts.last_commit_ns is not None:
            last_commit.append(counts.last_commit_ns)
        both += evicted_delivered(gw.outbox_path, counts.ledger_seqs)
        for k, v in evicted_by_class(stats).items():
            evicted[k] += v["samples"]
            evicted_entries[k] += v["entries"]
        rejected += sum(int(v) for v in stats.get("samples_rejected", {}).values())
        if stats.get("resumed_from_ns"):
            resumed.append((int(stats["resumed_from_ns"]) - dep.start_ns) / 1e9)
    lost = produced - delivered - (sum(evicted.values()) - both) - rejected
    drain_s = None
    if recovery_ns is not None and last_commit:
        drain_s = round(max(0.0, (max(last_commit) - recovery_ns) / 1e9), 2)
    unexpected_evictions = sum(evicted_entries.values()) > 0 and not sc.evictions_expected
    high_evicted = evicted_entries["event"] + evicted_entries["alarm"]
    exits_ok = all(c == 0 for c in codes.values())
    ok = (
        lost == 0
        and duplicates == 0
        and violations == 0
        and not unexpected_evictions
        and high_evicted == 0
        and (not sc.evictions_expected or evicted_entries["summary"] > 0)
        and exits_ok
    )
    return {
        "scenario": sc.name,
        "produced": produced,
        "delivered": delivered,
        "evicted": evicted,
        "evicted_entries": evicted_entries,
        "evicted_delivered": both,
        "rejected": rejected,
        "lost": lost,
        "duplicates": duplicates,
        "order_violations": violations,
        "drain_s": drain_s,
        "ok": ok,
        "proves": sc.proves,
        "duration_s": dep.duration_s,
        "wall_s": round(wall_s, 1),
        "gateway_exit_codes": codes,
        "gateway_starts": {gw.name: gw.starts for gw in dep.gateways},
        "hub_starts": {f"hub{h.instance}": h.starts for h in dep.hubs},
        "resumed_from_s": resumed,
        "events_stored": events,
        "events_forwarded": sum(int(gw.stats().get("events_forwarded", 0)) for gw in dep.gateways),
        "outbox_budget_bytes": budget_bytes,
        "dead_letters": store.dead_letters,
        "dead_letter_examples": store.dead_letter_examples,
        "broker_drops": broker_drops,
        "proxy": {
            gw.name: {
                "resets": gw.proxy.stats.resets,
                "refused": gw.proxy.stats.refused,
                "drops": gw.proxy.stats.drops,
            }
            for gw in dep.gateways
        },
        "order_basis": store.order_basis,
        "ledger_missing_seqs": {n: c.missing_seqs for n, c in store.nodes.items()},
        "unknown_upto_seq": {n: c.unknown_upto_seq for n, c in store.nodes.items()},
        "ledger_rejected": {n: c.ledger_rejected for n, c in store.nodes.items()},
        "timeline": [{k: v for k, v in e.items() if k != "done_ns"} for e in log],
    }


__all__ = ["FULL_S", "QUICK_S", "RunOptions", "run_matrix", "run_scenario"]

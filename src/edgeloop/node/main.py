"""Entry point of a node process: ``python -m edgeloop.node --config node.yaml``.

Imports only what a node needs (numpy, onnxruntime, the codec, the outbox, the uplink):
never scikit-learn, FastAPI, the CLI stack, pydantic or yaml, so a gateway stays small
(see ``tests/node/test_node_footprint.py`` and ``docs/footprint.md``).

A node runs a :class:`~edgeloop.node.plan.NodePlan`: ``--plan PLAN.json`` as a launcher
wrote it, or ``--config node.yaml``, which a short-lived child interpreter validates
and resolves into a plan first (``--print-plan`` shows it), so the node process itself
never loads the validation stack.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import json
import logging
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.errors import ConfigError, EdgeloopError
from edgeloop.node.actions import ActionRegistry
from edgeloop.node.build import build_core, build_outbox, build_reconciler, build_transport
from edgeloop.node.config import NodeConfig
from edgeloop.node.plan import NodePlan, plan_from_json
from edgeloop.node.runtime import NodeRuntime
from edgeloop.node.sources import csv_source, sim_source
from edgeloop.node.stop import StopOnSignals, StoppedAtOnce
from edgeloop.telemetry.frame import Frame, SensorCatalog, SensorKind, SensorSpec

log = logging.getLogger("edgeloop.node")


def builtin_actions() -> ActionRegistry:
    """Actions every node has: ``log`` (a log line) and ``relay`` (an actuator command).

    ``relay`` records the command it would write to the machine's interlock (a GPIO or
    Modbus coil on real hardware), with the time it was issued.
    """
    reg = ActionRegistry()
    relay_log: deque[tuple[str, int]] = deque(maxlen=10_000)

    @reg.register("log")
    def _log(event: Any) -> None:
        log.warning("%s %s on %s: %s", event.severity, event.machine, event.sensor, event.reason)

    @reg.register("relay")
    def _relay(event: Any) -> None:
        relay_log.append((event.machine, time.time_ns()))

    reg.relay_log = relay_log  # type: ignore[attr-defined]
    return reg


def _catalog(cfg: NodeConfig, sims: list[Any]) -> SensorCatalog:
    cat = SensorCatalog()
    for sim in sims:
        for spec in sim.catalog.specs:
            cat.add(spec)
    for s in cfg.sensors:
        cat.add(SensorSpec(s.name, s.machine, SensorKind(s.kind), s.rate_hz, s.unit))
    return cat


def _make_sims(plan: NodePlan, start_ns: int) -> list[tuple[Any, Any]]:
    src = plan.sim
    if src is None:
        return []
    if plan.floor is None:
        raise ConfigError("plan: the simulator source has no resolved floor")
    from edgeloop.sim.build import build_sim

    return [(src, build_sim(plan.floor, src.faults, seed=src.seed, start_ns=start_ns))]


async def run_node(
    plan: NodePlan,
    duration_s: float | None,
    start_ns: int | None = None,
    drain_timeout_s: float = 30.0,
    stop: asyncio.Event | None = None,
) -> dict[str, Any]:
    """Run the node until ``duration_s`` has passed (or forever); return final stats.

    ``stop``, once set, ends the run the same way the end of ``duration_s`` does: the
    sources stop, what they gave is flushed into the outbox, and the outbox drains for
    up to ``drain_timeout_s`` (a stop signal sets it: ``node/stop.py``).
    """
    cfg = plan.config
    clock = time.time_ns
    # One worker thread for blocking storage: calls are serialised by the outbox anyway,
    # and each extra thread costs a malloc arena on a small device.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="storage")
    )
    start = start_ns or clock()
    if start > clock():
        await asyncio.sleep((start - clock()) / 1e9)
    until = start + int(duration_s * 1e9) if duration_s is not None else 2**62
    outbox = build_outbox(cfg)
    sims = _make_sims(plan, start)
    resume_ns = outbox.stats().resume_ns
    if resume_ns is not None and sims:
        # A restart (after a crash, kill -9): everything before the resume point is in
        # the outbox already; the simulator replays the rest, which died in memory.
        from edgeloop.node.sources import skip_to

        for _, sim in sims:
            skip_to(sim, min(resume_ns, until))
        log.info("resuming the simulator at data time %d (from the outbox)", resume_ns)
    summaries = plan.pipeline.summaries
    align_ns = int(summaries.period_s * 1e9) if summaries is not None else None
    catalog = _catalog(cfg, [s for _, s in sims])
    actions = builtin_actions()
    core = build_core(cfg, catalog, actions, spec=plan.pipeline)
    transport = build_transport(cfg)
    chaos = None
    if cfg.chaos is not None and transport is not None:
        from edgeloop.sim.chaos import ChaosTransport, PartitionSchedule

        chaos = ChaosTransport(
            transport,
            PartitionSchedule(cfg.chaos.partitions, start_ns=start),
            clock=clock,
            ack_loss=cfg.chaos.ack_loss,
            seed=cfg.chaos.seed,
        )
    runtime = NodeRuntime(core, outbox, chaos or transport, clock=clock)
    await runtime.start()
    reconciler = None
    model_tasks: list[asyncio.Task[None]] = []
    if cfg.models is not None:  # model delivery: restore the active models before data flows
        reconciler = build_reconciler(
            cfg, core.pipeline, outbox, clock, lambda: runtime.link_up, core=core
        )
        await reconciler.restore()
        model_tasks = [
            asyncio.create_task(reconciler.run()),
            asyncio.create_task(reconciler.measure_loop(cfg.models.measure_every_s)),
        ]

    tasks: list[asyncio.Task[None]] = []
    mqtt_sources: list[Any] = []
    corrupted = [0]
    for src_cfg, sim in sims:
        frames = sim_source(sim, src_cfg.tick_s, until, clock, src_cfg.phase_s, align_ns)
        if cfg.chaos is not None and cfg.chaos.corrupt_samples > 0:
            frames = _corrupting(
                frames, cfg.chaos.corrupt_samples, cfg.chaos.seed, catalog, corrupted
            )
        tasks.append(asyncio.create_task(runtime.run_source(frames)))
    for src in cfg.sources:
        if src.type == "csv":
            tasks.append(
                asyncio.create_task(
                    runtime.run_source(
                        csv_source(src.path, catalog, speed=src.speed, on_reject=core.reject)
                    )
                )
            )
        elif src.type == "http":
            from edgeloop.node.push import HttpPushSource

            push = HttpPushSource(catalog, src.host, src.port, on_reject=core.reject)
            log.info("accepting pushed telemetry at %s/v1/push", push.url)
            tasks.append(asyncio.create_task(runtime.run_source(push.__aiter__())))
        elif src.type == "mqtt":
            # paho-mqtt is imported only by nodes with an MQTT source or uplink.
            from edgeloop.node.mqtt_source import MqttSource

            mqtt_src = MqttSource.from_config(
                cfg,
                src,
                catalog,
                on_reject=core.reject,
                progress=lambda: (core.counters.summary_entries, core.resume_ns),
            )
            mqtt_sources.append(mqtt_src)
            runtime.source_status[f"mqtt:{mqtt_src.topic}"] = mqtt_src.status
            log.info("subscribing to %s", mqtt_src.where)
            tasks.append(asyncio.create_task(runtime.run_source(mqtt_src.__aiter__())))
    status_task = asyncio.create_task(_write_status(runtime, cfg.status_file))
    # Everything built so far lives as long as the node: keep it out of the cyclic
    # collector's way so collections stay short (latency of local actions).
    gc.collect()
    gc.freeze()
    # Storage and the uplink run in worker threads. With the default 5 ms GIL switch
    # interval, a frame arriving while a worker holds the GIL could wait up to 5 ms
    # before the loop thread runs; local actions need the GIL back within ~0.5 ms.
    sys.setswitchinterval(0.0005)
    try:
        # A simulator hands over its last block at until + phase: let it, or the run
        # would end without the samples of its last tick (never fed, never counted).
        grace_s = max((src.phase_s + 1.0 for src, _ in sims), default=0.0)
        remaining = (until - clock()) / 1e9 + grace_s
        await _sources_end(tasks, remaining if duration_s is not None else None, stop)
        for t in tasks:
            if t.done() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        await _cancel(tasks)
    await _cancel(model_tasks)
    if reconciler is not None:  # the shadow's last, partial measurement period
        await reconciler.close_period()
        await reconciler.close_sketches()
    await runtime.flush()
    for mqtt_src in mqtt_sources:  # everything the core took is in the outbox: PUBACK it
        await mqtt_src.close()
    if transport is not None:
        depth = (await asyncio.to_thread(outbox.stats)).depth
        log.info("draining the outbox: %d entries, for up to %g s", depth, drain_timeout_s)
    drained = await runtime.drain(drain_timeout_s)
    await _cancel([status_task])
    stats = runtime.status()
    stats["drained"] = drained
    stats["outbox_depth"] = outbox.stats().depth
    if transport is not None:
        log.info(
            "%s; %d entries stay in the outbox",
            "drained" if drained else "not drained",
            stats["outbox_depth"],
        )
    inner = transport
    stats["bytes_uplinked"] = int(getattr(inner, "bytes_sent", 0))
    stats["batches_sent"] = int(getattr(inner, "batches_sent", 0))
    stats["batches_acked"] = runtime.batches_acked
    if chaos is not None:
        stats["chaos"] = {"blocked": chaos.blocked, "acks_dropped": chaos.acks_dropped}
    stats["latency_samples_ms"] = [x / 1e6 for x in actions.latency.samples()]
    stats["samples_corrupted"] = corrupted[0]
    stats["resumed_from_ns"] = resume_ns if sims else None
    stats["relay_commands"] = len(actions.relay_log)  # type: ignore[attr-defined]
    if reconciler is not None:
        stats["models"] = reconciler.actual_doc()
    stats["faults"] = [
        {"machine": f.machine, "kind": str(f.kind), "start_ns": f.start_ns, "end_ns": f.end_ns}
        for _, sim in sims
        for f in sim.faults
    ]
    await runtime.stop()
    outbox.close()
    return stats


async def _sources_end(
    tasks: list[asyncio.Task[None]], timeout_s: float | None, stop: asyncio.Event | None
) -> None:
    """Wait until every source has ended, ``timeout_s`` has passed or ``stop`` is set."""
    stopping = asyncio.create_task((stop or asyncio.Event()).wait())
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    running: set[asyncio.Future[Any]] = set(tasks)
    try:
        while running and not stopping.done():
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return
            _, running = await asyncio.wait(
                running | {stopping}, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            running.discard(stopping)
    finally:
        stopping.cancel()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until they have ended; re-raise a failure of theirs.

    A cancellation of the caller itself still goes through (``gather`` passes it on,
    where awaiting each task under ``suppress(CancelledError)`` would swallow it): a
    second stop signal must not be lost here.
    """
    for t in tasks:
        t.cancel()
    for res in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(res, Exception):
            raise res


async def _corrupting(
    frames: AsyncIterator[Frame],
    rate: float,
    seed: int,
    catalog: SensorCatalog,
    counter: list[int],
) -> AsyncIterator[Frame]:
    """Chaos on the sensor side: corrupt a share of samples before the node sees them."""
    from edgeloop.sim.bad_input import corrupt_samples

    rng = np.random.default_rng([seed, 0xBAD])
    async for frame in frames:
        bad, k = corrupt_samples(frame, rng, rate, len(catalog))
        counter[0] += k
        yield bad


async def _write_status(runtime: NodeRuntime, path: str | None, every_s: float = 0.5) -> None:
    """Publish live counters to a local file (atomic rename) for dashboards and the demo."""
    if path is None:
        return
    target = Path(path)
    tmp = target.with_suffix(".tmp")
    while True:
        st = runtime.status()
        st["outbox_depth"] = (await asyncio.to_thread(runtime.outbox.stats)).depth
        st["t_ns"] = time.time_ns()
        tmp.write_text(json.dumps(st))
        os.replace(tmp, target)
        await asyncio.sleep(every_s)


async def run_until_stopped(
    plan: NodePlan,
    duration_s: float | None,
    start_ns: int | None = None,
    drain_timeout_s: float = 30.0,
) -> dict[str, Any]:
    """:func:`run_node` in a process: SIGTERM or SIGINT stop it in order, a second one
    at once (:class:`~edgeloop.node.stop.StoppedAtOnce`).

    The stats say which signal started the stop (``stopped_by``, else ``None``).
    """
    with StopOnSignals(drain_timeout_s) as signals:
        try:
            stats = await run_node(plan, duration_s, start_ns, drain_timeout_s, signals.requested)
        except asyncio.CancelledError:
            if signals.forced is None:
                raise
            raise StoppedAtOnce(signals.forced) from None
    stats["stopped_by"] = signals.first.name if signals.first is not None else None
    return stats


def plan_via_launcher(config: Path) -> NodePlan:
    """Validate ``config`` in a short-lived child interpreter and read back its plan.

    The child (``--print-plan``) imports pydantic and yaml; this process never does.
    Costs one interpreter start (about a second) before the node starts.
    """
    cmd = [sys.executable, "-m", "edgeloop.node", "--config", str(config), "--print-plan"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode == 2:
        raise ConfigError(out.stderr.strip().removeprefix("config error: "))
    if out.returncode != 0:
        raise EdgeloopError(f"{config}: validation failed: {out.stderr.strip()[-2000:]}")
    return plan_from_json(out.stdout, where=f"plan of {config}")


def print_plan(config: Path) -> int:
    """Validate ``config`` and print its plan as JSON (a launcher's step)."""
    from edgeloop.node.config import load_node_config
    from edgeloop.node.plan import make_plan, plan_to_json

    try:
        plan = make_plan(load_node_config(config))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    print(plan_to_json(plan))
    return 0


def load_plan(path: Path) -> NodePlan:
    """Read a plan file written by a launcher."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    return plan_from_json(text, where=str(path))


def main(
    config: Path | None,
    duration: float | None,
    stats_out: Path | None,
    start_ns: int | None = None,
    drain_timeout_s: float = 30.0,
    plan: Path | None = None,
) -> int:
    """Run a node from ``plan`` (a plan file) or ``config`` (YAML, validated first)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        if plan is not None:
            node_plan = load_plan(plan)
        elif config is not None:
            node_plan = plan_via_launcher(config)
        else:
            raise ConfigError("give a node config (--config) or a plan (--plan)")
        stats = asyncio.run(run_until_stopped(node_plan, duration, start_ns, drain_timeout_s))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except EdgeloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except StoppedAtOnce as exc:
        return exc.exit_code
    except KeyboardInterrupt:  # before the node's own handlers are installed
        return 130
    if stats_out is not None:
        stats_out.write_text(json.dumps(stats))
    return 0 if stats.get("drained", True) else 3


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgeloop.node", description=__doc__)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", "-c", type=Path, help="node config (YAML)")
    what.add_argument("--plan", type=Path, help="a validated plan (JSON) written by a launcher")
    ap.add_argument(
        "--print-plan",
        action="store_true",
        help="validate --config, print its plan as JSON and exit",
    )
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--stats-out", type=Path, default=None)
    ap.add_argument(
        "--start-ns",
        type=int,
        default=None,
        help="wall-clock ns at which to start (lets several nodes start together)",
    )
    ap.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds to wait at the end for the hub to acknowledge everything",
    )
    a = ap.parse_args(argv)
    if a.print_plan:
        if a.config is None:
            ap.error("--print-plan needs --config")
        return print_plan(a.config)
    return main(a.config, a.duration, a.stats_out, a.start_ns, a.drain_timeout, a.plan)

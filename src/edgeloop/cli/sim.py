"""``edgeloop sim``: the factory simulator's sensors as devices (publish over MQTT)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from edgeloop.sim.factory import FactorySim

app = typer.Typer(
    help="Simulated sensors: publish a factory floor over MQTT.", no_args_is_help=True
)

BrokerOpt = Annotated[str, typer.Option("--broker", help="MQTT broker as HOST:PORT.")]
TenantOpt = Annotated[str, typer.Option(help="Tenant of the receiving node.")]
NodeOpt = Annotated[
    str, typer.Option("--node", help="The receiving node (also names the machines).")
]
MachinesOpt = Annotated[int, typer.Option(min=1, help="Simulated machines (6 sensors each).")]
SeedOpt = Annotated[int, typer.Option(help="Simulator seed.")]


@app.command("publish")
def publish(
    broker: BrokerOpt = "127.0.0.1:1883",
    tenant: TenantOpt = "default",
    node: NodeOpt = "gw1",
    machines: MachinesOpt = 2,
    seed: SeedOpt = 0,
    duration: Annotated[
        float | None, typer.Option(help="Seconds of data to publish (default: forever).")
    ] = None,
    tick: Annotated[float, typer.Option(min=0.001, help="Seconds of data per message.")] = 0.1,
    fmt: Annotated[
        str, typer.Option("--format", help="block (float32 sensor blocks) or json.")
    ] = "block",
    qos: Annotated[int, typer.Option(min=0, max=1, help="Publish QoS.")] = 1,
    prefix: Annotated[
        str | None,
        typer.Option(help="Topic prefix (default edgeloop/<tenant>/<node>/sensors)."),
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="Inject a fault: KIND:MACHINE:START_S:END_S[:SENSOR] (repeatable), e.g. "
            "imbalance:gw1.m02:20:25; kinds: bearing_wear, imbalance, overheating, "
            "stuck_sensor, dropout."
        ),
    ] = None,
) -> None:
    """Publish the simulator's streams in real time on <prefix>/<sensor>, the topics a
    node's `type: mqtt` source subscribes to. Prints what was sent as JSON at the end."""
    from edgeloop.errors import EdgeloopError
    from edgeloop.sim.build import build_sim
    from edgeloop.sim.factory import FactoryConfig
    from edgeloop.sim.publish import SimPublisher, aligned_start, parse_broker

    try:
        host, port = parse_broker(broker)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if fmt not in ("block", "json"):
        typer.echo(f"--format: 'block' or 'json' (got {fmt!r})", err=True)
        raise typer.Exit(2)
    try:
        faults = [parse_fault(f) for f in fault or []]
        sim = build_sim(
            FactoryConfig.generate(n_machines=machines, gateway=node, seed=seed),
            faults,
            seed=seed,
            start_ns=aligned_start(tick),  # messages never span two summary periods
        )
    except (ValueError, EdgeloopError) as exc:
        typer.echo(f"--fault: {exc}", err=True)
        raise typer.Exit(2) from None
    pub = SimPublisher(
        sim,
        host,
        port,
        prefix or f"edgeloop/{tenant}/{node}/sensors",
        fmt=fmt,  # type: ignore[arg-type]
        qos=qos,
    )
    try:
        pub.connect()
    except EdgeloopError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    try:
        stats = pub.run(duration, tick)
    except KeyboardInterrupt:
        stats = pub.stats
    finally:
        pub.close()
    out = {
        "messages": stats.messages,
        "payload_bytes": stats.payload_bytes,
        "samples": stats.total_samples,
        "samples_by_sensor": stats.samples,
    }
    typer.echo(json.dumps(out))


@app.command("sensors")
def sensors(node: NodeOpt = "gw1", machines: MachinesOpt = 2, seed: SeedOpt = 0) -> None:
    """Print the `sensors:` section of a node config for the simulated floor (what
    `sim publish` with the same options sends)."""
    import yaml

    from edgeloop.sim.factory import FactoryConfig, FactorySim

    sim = FactorySim(FactoryConfig.generate(n_machines=machines, gateway=node, seed=seed), seed)
    typer.echo(yaml.safe_dump({"sensors": sensor_entries(sim)}, sort_keys=False).rstrip())


def parse_fault(text: str) -> dict[str, object]:
    """``KIND:MACHINE:START_S:END_S[:SENSOR]`` as a simulator fault (seconds from the start).

    >>> parse_fault("dropout:gw1.m01:2:3:gw1.m01.temp")["sensor"]
    'gw1.m01.temp'
    """
    parts = text.split(":")
    if len(parts) not in (4, 5):
        raise ValueError(f"expected KIND:MACHINE:START_S:END_S[:SENSOR], got {text!r}")
    fault: dict[str, object] = {
        "kind": parts[0],
        "machine": parts[1],
        "start_s": float(parts[2]),
        "end_s": float(parts[3]),
    }
    if len(parts) == 5:
        fault["sensor"] = parts[4]
    return fault


def sensor_entries(sim: FactorySim) -> list[dict[str, object]]:
    """Node-config sensor entries of a simulator's catalog."""
    out: list[dict[str, object]] = []
    for s in sim.catalog.specs:
        entry: dict[str, object] = {"name": s.name, "machine": s.machine, "kind": str(s.kind)}
        entry["rate_hz"] = float(s.rate_hz)
        if s.unit:
            entry["unit"] = s.unit
        out.append(entry)
    return out

"""``edgeloop sim publish``: the simulator's sensors on a real broker, as a node reads them."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from conftest import Broker
from edgeloop.cli.main import app
from edgeloop.node.mqtt_source import MqttSource
from edgeloop.sim.factory import FactoryConfig, FactorySim
from edgeloop.sim.publish import parse_broker
from edgeloop.telemetry.frame import Frame, SensorCatalog, SensorKind, SensorSpec

runner = CliRunner()


def catalog(node: str) -> SensorCatalog:
    """The catalog a node builds from what ``edgeloop sim sensors`` prints."""
    result = runner.invoke(app, ["sim", "sensors", "--node", node, "--machines", "1"])
    assert result.exit_code == 0, result.output
    entries = yaml.safe_load(result.stdout)["sensors"]
    return SensorCatalog.of(
        SensorSpec(e["name"], e["machine"], SensorKind(e["kind"]), e["rate_hz"], e.get("unit", ""))
        for e in entries
    )


def publish_and_read(
    broker: Broker, fmt: str, *extra: str
) -> tuple[dict[str, Any], Frame, dict[str, Any], SensorCatalog]:
    """Run ``edgeloop sim publish`` for 0.5 s of one machine; a node source reads it."""
    tenant = f"t{uuid.uuid4().hex[:10]}"
    prefix = f"edgeloop/{tenant}/gw1/sensors"
    address = f"{broker.host}:{broker.port}"
    args = ["sim", "publish", "--broker", address, "--tenant", tenant, "--machines", "1"]
    cat = catalog("gw1")

    async def go() -> tuple[dict[str, Any], Frame, dict[str, Any]]:
        src = MqttSource(cat, broker.host, broker.port, f"{prefix}/#", f"c-{tenant}")
        assert await src.wait_subscribed(10)
        result = await asyncio.to_thread(
            runner.invoke, app, [*args, "--duration", "0.5", "--format", fmt, *extra]
        )
        assert result.exit_code == 0, result.output
        sent: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        frames: list[Frame] = []
        it = src.__aiter__()
        while sum(len(f) for f in frames) < sent["samples"]:
            frames.append(await asyncio.wait_for(it.__anext__(), 10))
        await src.close()
        return sent, Frame.concat(frames), src.status()

    sent, frame, st = asyncio.run(go())
    return sent, frame, st, cat


@pytest.mark.parametrize("fmt", ["block", "json"])
def test_sim_publish_sends_every_sample_and_a_node_source_reads_them(
    mqtt_broker: Broker, fmt: str
) -> None:
    sent, frame, st, cat = publish_and_read(mqtt_broker, fmt)
    assert st["rejected_messages"] == 0 and st["messages"] == sent["messages"]
    # 0.5 s of one machine: 3 vibration channels at 2 kHz and 3 process values at 10 Hz.
    assert len(frame) == sent["samples"] == 3 * 1000 + 3 * 5
    names = cat.names()
    counts = np.bincount(frame.sensor, minlength=len(names))
    assert {names[i]: int(n) for i, n in enumerate(counts)} == sent["samples_by_sensor"]
    if fmt == "block":
        assert sent["messages"] == 6 * 5  # one block per sensor and 0.1 s tick
    # Bit for bit what the simulator produced (float32 on the wire, no rounding).
    sim = FactorySim(
        FactoryConfig.generate(n_machines=1, gateway="gw1", seed=0),
        seed=0,
        start_ns=int(frame.ts.min()),
    )
    want = sim.step(500_000_000).sorted()
    mine = frame.sorted()
    assert np.array_equal(mine.ts, want.ts) and np.array_equal(mine.sensor, want.sensor)
    assert mine.value.tobytes() == want.value.tobytes()


def test_broker_address_is_checked() -> None:
    assert parse_broker("h:1") == ("h", 1)
    for bad in ("h:0", "h:x", ":1883", "h:70000"):
        with pytest.raises(ValueError, match="--broker"):
            parse_broker(bad)
    result = runner.invoke(app, ["sim", "publish", "--broker", "h:x", "--duration", "0"])
    assert result.exit_code == 2 and "--broker" in result.output


def test_a_dropout_fault_reaches_the_node_as_a_block_gap(mqtt_broker: Broker) -> None:
    fault = "dropout:gw1.m01:0.1:0.3:gw1.m01.vib_x"
    sent, frame, st, _ = publish_and_read(mqtt_broker, "block", "--fault", fault)
    assert sent["samples_by_sensor"]["gw1.m01.vib_x"] == 1000 - 400  # 0.2 s at 2 kHz
    assert (st["block_gaps"], st["block_gap_samples"]) == (1, 400)
    assert len(frame) == sent["samples"]
    result = runner.invoke(app, ["sim", "publish", "--fault", "melt:gw1.m01:1:2"])
    assert result.exit_code == 2 and "unknown kind 'melt'" in result.output

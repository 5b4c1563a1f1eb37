"""The MQTT source against a real Mosquitto: delivery, rejects, manual PUBACK after the
hand-over, redelivery after a lost connection or a crash, flow control."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import Broker
from edgeloop.errors import RejectReason
from edgeloop.node.mqtt_source import MqttSource
from edgeloop.node.sensor_payload import encode_block
from edgeloop.sim.netproxy import NetProxy
from edgeloop.telemetry.frame import Frame, SensorCatalog, SensorSpec
from edgeloop.telemetry.validate import RejectRecord
from services import INSTALL_HINT, Mosquitto, MqttProbe, mosquitto_binary

CAT = SensorCatalog.of([SensorSpec("m1.vib", "m1"), SensorSpec("m1.temp", "m1")])
T0 = 1_764_230_400_000_000_000


@pytest.fixture
def probe(mqtt_broker: Broker) -> Iterator[MqttProbe]:
    p = MqttProbe(mqtt_broker.host, mqtt_broker.port)
    yield p
    p.close()


@pytest.fixture
def prefix() -> str:
    return f"edgeloop/t{uuid.uuid4().hex[:10]}/gw1/sensors"


def source(
    host: str, port: int, prefix: str, client_id: str, **kw: object
) -> tuple[MqttSource, list[RejectRecord]]:
    rejects: list[RejectRecord] = []
    src = MqttSource(
        CAT,
        host,
        port,
        f"{prefix}/#",
        client_id,
        keepalive_s=2,
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
        on_reject=rejects.extend,
        **kw,  # type: ignore[arg-type]
    )
    return src, rejects


async def take(it: AsyncIterator[Frame], samples: int, timeout_s: float = 10.0) -> Frame:
    """Frames from ``it`` until they hold ``samples`` samples."""
    got: list[Frame] = []
    deadline = time.monotonic() + timeout_s
    while sum(len(f) for f in got) < samples:
        got.append(await asyncio.wait_for(it.__anext__(), deadline - time.monotonic()))
    return Frame.concat(got)


def block(i: int, n: int = 100) -> bytes:
    """The i-th block of 100 samples of m1.vib (a 2 kHz sensor)."""
    return encode_block("", T0 + i * n * 500_000, 500_000, np.arange(n) + i * n)


def test_json_and_blocks_arrive_bad_payloads_are_counted(
    mqtt_broker: Broker, probe: MqttProbe, prefix: str
) -> None:
    async def go() -> tuple[Frame, MqttSource, list[RejectRecord]]:
        src, rejects = source(
            mqtt_broker.host, mqtt_broker.port, prefix, f"c-{uuid.uuid4()}", max_payload_bytes=1000
        )
        assert await src.wait_subscribed(10)
        it = src.__aiter__()
        probe.publish(f"{prefix}/m1.vib", block(9, n=300))  # 1,228 bytes: over the limit
        probe.publish(f"{prefix}/m1.temp", b"\x00garbage")
        probe.publish(f"{prefix}/m1.vib", block(3)[:-3])  # truncated
        for i in range(3):
            probe.publish(f"{prefix}/m1.vib", block(i))
        records = [
            {"sensor": "m1.temp", "ts": T0, "value": 20.5},
            {"sensor": "m1.temp", "ts": T0 + 1, "value": "hot"},
        ]
        probe.publish(f"{prefix}/m1.temp", json.dumps(records).encode())
        frame = await take(it, 301)  # messages arrive in order: the rejects came first
        await src.close()
        return frame, src, rejects

    frame, src, rejects = asyncio.run(go())
    vib = frame.take(frame.sensor == CAT.index("m1.vib"))
    assert vib.value.tolist() == list(range(300))  # all three blocks, in order
    assert frame.take(frame.sensor == CAT.index("m1.temp")).value.tolist() == [20.5]
    got = sorted((r.field.rsplit(" ", 1)[1], r.reason) for r in rejects)
    assert got == [
        ("block.values", RejectReason.TRUNCATED),
        ("payload", RejectReason.MALFORMED),
        ("payload", RejectReason.OVERSIZED),
        ("records[1].value", RejectReason.WRONG_TYPE),
    ]
    assert all(r.field.startswith(prefix) for r in rejects)  # the topic is named
    st = src.status()
    assert (st["messages"], st["samples"], st["rejected_messages"]) == (7, 301, 4)


def test_unacknowledged_messages_come_back_after_a_crash_acknowledged_ones_do_not(
    mqtt_broker: Broker, probe: MqttProbe, prefix: str
) -> None:
    """A message is PUBACKed only once the node asked for the next frame (its frame went
    through the core and the outbox): a node that dies before gets it again."""
    cid = f"c-{uuid.uuid4()}"
    proxy = NetProxy(mqtt_broker.host, mqtt_broker.port).start_in_thread()

    async def first_life() -> list[float]:
        src, _ = source(proxy.host, proxy.port, prefix, cid)
        assert await src.wait_subscribed(10)
        it = src.__aiter__()
        probe.publish(f"{prefix}/m1.vib", block(0))
        a = await take(it, 100)  # handed over, not acknowledged yet
        probe.publish(f"{prefix}/m1.vib", block(1))
        b = await take(it, 100)  # asking for it acknowledged block 0; block 1 is not
        await asyncio.sleep(0.3)  # the PUBACK of block 0 reaches the broker
        proxy.cut()  # the node dies: nothing more leaves it
        await src.close()
        return [*a.value.tolist(), *b.value.tolist()]

    async def second_life() -> tuple[list[float], dict[str, Any]]:
        src, _ = source(mqtt_broker.host, mqtt_broker.port, prefix, cid)
        it = src.__aiter__()
        again = await take(it, 100)
        with pytest.raises(TimeoutError):  # and nothing else: block 0 was acknowledged
            await asyncio.wait_for(it.__anext__(), 1.0)
        await src.close()
        return again.value.tolist(), src.status()

    try:
        first = asyncio.run(first_life())
        again, st = asyncio.run(second_life())
    finally:
        proxy.stop_thread()
    assert first == list(range(200))
    assert again == list(range(100, 200))  # block 1, redelivered
    assert st["session_resumed"] == 1


def test_a_lost_connection_reconnects_and_redelivery_is_not_counted_twice(
    mqtt_broker: Broker, probe: MqttProbe, prefix: str
) -> None:
    proxy = NetProxy(mqtt_broker.host, mqtt_broker.port).start_in_thread()

    async def go() -> tuple[Frame, dict[str, Any]]:
        src, _ = source(proxy.host, proxy.port, prefix, f"c-{uuid.uuid4()}")
        assert await src.wait_subscribed(10)
        it = src.__aiter__()
        probe.publish(f"{prefix}/m1.vib", block(0))
        a = await take(it, 100)  # handed over; its PUBACK waits for the next request
        proxy.cut()
        await asyncio.sleep(0.3)
        assert not src.status()["connected"]
        proxy.restore()
        probe.publish(f"{prefix}/m1.vib", block(1))
        # The broker redelivers block 0 (DUP) on the resumed session: dropped here, as
        # the core already has it; block 1 comes through.
        b = await take(it, 100)
        await src.close()
        return Frame.concat([a, b]), src.status()

    try:
        frame, st = asyncio.run(go())
    finally:
        proxy.stop_thread()
    assert frame.value.tolist() == list(range(200))
    assert st["disconnects"] >= 1 and st["connects"] >= 2
    assert st["redelivered_samples"] == 100
    assert st["last_error"]  # the last problem stays visible after the reconnect


def test_flow_control_bounds_what_waits_in_the_node(
    mqtt_broker: Broker, probe: MqttProbe, prefix: str
) -> None:
    async def go() -> tuple[int, Frame, dict[str, Any]]:
        src, _ = source(
            mqtt_broker.host, mqtt_broker.port, prefix, f"c-{uuid.uuid4()}", receive_maximum=4
        )
        assert await src.wait_subscribed(10)
        for i in range(40):
            probe.client.publish(f"{prefix}/m1.vib", block(i), qos=1)
        await asyncio.sleep(1.0)  # the node does not consume: the broker holds the rest
        waiting = int(src.status()["queued"])
        frame = await take(src.__aiter__(), 4000)
        await src.close()
        return waiting, frame, src.status()

    waiting, frame, st = asyncio.run(go())
    assert waiting == 4  # Receive Maximum honoured by the broker
    assert frame.value.tolist() == list(range(4000))  # then everything, in order
    assert st["messages"] == 40


def test_qos0_beyond_the_queue_bound_is_dropped_and_counted(
    mqtt_broker: Broker, probe: MqttProbe, prefix: str
) -> None:
    from edgeloop.node.mqtt_source import QOS0_SLACK

    bound = 1 + QOS0_SLACK  # receive_maximum + the room for QoS 0

    async def go() -> tuple[Frame, dict[str, Any]]:
        src, _ = source(
            mqtt_broker.host,
            mqtt_broker.port,
            prefix,
            f"c-{uuid.uuid4()}",
            qos=0,
            receive_maximum=1,
        )
        assert await src.wait_subscribed(10)
        for i in range(bound + 100):
            probe.client.publish(f"{prefix}/m1.vib", block(i, n=1), qos=0)
        deadline = time.monotonic() + 10
        while src.status()["messages"] < bound + 100 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the node does not consume meanwhile
        frame = await take(src.__aiter__(), bound)
        await src.close()
        return frame, src.status()

    frame, st = asyncio.run(go())
    assert st["messages"] == bound + 100
    assert st["dropped_qos0"] == 100
    assert frame.value.tolist() == list(range(bound))  # the first ones, in order
    assert st["acked"] == 0  # nothing to acknowledge at QoS 0


def test_a_node_started_before_its_broker_connects_when_the_broker_comes(tmp_path: Path) -> None:
    binary = mosquitto_binary()
    if binary is None:
        pytest.fail(INSTALL_HINT + " (this test starts a broker late: it needs the binary)")
    broker = Mosquitto(binary, tmp_path / "late")  # its port is chosen, nothing listens yet

    async def go() -> tuple[dict[str, Any], dict[str, Any], Frame]:
        src, _ = source(broker.host, broker.port, "edgeloop/late/gw1/sensors", "c-late")
        assert not await src.wait_subscribed(0.5)
        before = src.status()
        await asyncio.to_thread(broker.start)
        assert await src.wait_subscribed(10)  # paho kept retrying with back-off
        probe = MqttProbe(broker.host, broker.port)
        probe.publish("edgeloop/late/gw1/sensors/m1.vib", block(0))
        frame = await take(src.__aiter__(), 100)
        probe.close()
        await src.close()
        return before, src.status(), frame

    try:
        before, after, frame = asyncio.run(go())
    finally:
        broker.stop()
    assert before["connected"] is False and "cannot connect" in before["last_error"]
    assert after["connects"] == 1 and len(frame) == 100


def test_covered_acks_wait_until_the_outbox_holds_the_samples(
    mqtt_broker: Broker, probe: MqttProbe, prefix: str
) -> None:
    """``ack: covered``: a message is PUBACKed once the core's resume point (summary rows
    committed in the outbox) has passed its newest sample, not at the hand-over."""
    cid = f"c-{uuid.uuid4()}"
    proxy = NetProxy(mqtt_broker.host, mqtt_broker.port).start_in_thread()
    cover: list[int | None] = [None]
    entries = [0]  # summary entries the "core" has produced
    end_of = [T0 + (i + 1) * 100 * 500_000 for i in range(5)]  # just after block i

    async def first_life() -> dict[str, Any]:
        src, _ = source(
            proxy.host, proxy.port, prefix, cid, progress=lambda: (entries[0], cover[0])
        )
        assert await src.wait_subscribed(10)
        it = src.__aiter__()
        for i in range(3):
            probe.publish(f"{prefix}/m1.vib", block(i))
        await take(it, 300)  # all handed over; none covered yet
        # A resume point past block 0, but from an entry produced before the hand-over
        # (a late sample's row is not in it): asking for the next frame releases nothing.
        cover[0] = end_of[0]
        probe.publish(f"{prefix}/m1.vib", block(3))
        await take(it, 100)
        assert src.status()["acked"] == 0
        # An entry produced after the hand-over: the outbox holds block 0's samples.
        entries[0] += 1
        probe.publish(f"{prefix}/m1.vib", block(4))
        await take(it, 100)
        await asyncio.sleep(0.3)  # the PUBACK reaches the broker
        st = src.status()
        proxy.cut()  # kill -9: blocks 1 to 4 were handed over but not covered
        await src.close()
        return st

    async def second_life() -> tuple[list[float], dict[str, Any]]:
        src, _ = source(
            mqtt_broker.host, mqtt_broker.port, prefix, cid, hold_s=0.2, progress=lambda: (0, None)
        )
        it = src.__aiter__()
        again = await take(it, 400)
        nxt = asyncio.ensure_future(it.__anext__())
        await asyncio.sleep(0.6)  # no cover ever comes here: released after hold_s
        st = src.status()
        nxt.cancel()
        await src.close()
        return again.value.tolist(), st

    try:
        st1 = asyncio.run(first_life())
        again, st2 = asyncio.run(second_life())
    finally:
        proxy.stop_thread()
    assert (st1["acked"], st1["unacked"], st1["acked_early"]) == (1, 4, 0)
    assert again == list(range(100, 500))  # blocks 1 to 4 came back; block 0 did not
    assert (st2["acked"], st2["acked_early"]) == (4, 4)


def test_a_block_missing_upstream_is_counted_as_a_gap(
    mqtt_broker: Broker, probe: MqttProbe, prefix: str
) -> None:
    async def go() -> dict[str, Any]:
        src, _ = source(mqtt_broker.host, mqtt_broker.port, prefix, f"c-{uuid.uuid4()}")
        assert await src.wait_subscribed(10)
        for i in (0, 1, 3, 4):  # block 2 never arrives (dropped by a sensor or a broker)
            probe.publish(f"{prefix}/m1.vib", block(i))
        await take(src.__aiter__(), 400)
        await src.close()
        return src.status()

    st = asyncio.run(go())
    assert (st["block_gaps"], st["block_gap_samples"]) == (1, 100)

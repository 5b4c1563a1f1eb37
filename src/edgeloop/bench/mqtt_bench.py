"""Benchmark: the node's MQTT uplink, end-to-end acks on, against raw paho-mqtt.

Both sides move the same encoded batches through the same Mosquitto in the same run,
repetitions alternating between them (so drift and neighbours' load hit both alike):

* **edgeloop** — the node's real uplink: entries wait in an outbox
  (:class:`~edgeloop.outbox.memory.MemoryOutbox` by default, or the durable
  :class:`~edgeloop.outbox.sqlite.SqliteOutbox`), the :class:`NodeRuntime` uplink loop
  claims them into batches of ``batch_bytes``, encodes them (``codec.encode_batch``) and
  sends them with :class:`~edgeloop.transport.mqtt.MqttTransport` (QoS 1, PUBACK
  awaited, correlation data), keeping up to ``window_batches`` unacknowledged. The hub
  side is the real :class:`~edgeloop.hub.mqtt_ingest.MqttIngest` consumer on the shared
  subscription: it keeps commits in order, decodes every batch (envelope and entry list:
  :func:`codec.decode_batch`, as before storing), advances the (node, epoch) watermark
  and publishes the ack after which the node releases the entries. The clock stops when
  the node's outbox is empty: every entry acknowledged end to end.
* **paho** — a plain paho-mqtt client publishes the same batches (the same bytes the
  node's encoder makes for them, with correlation data of the same size) at QoS 1, each
  after the previous one's PUBACK (paho's fastest way here: faster than handing it every
  batch at once or keeping 8 in flight), to a subscriber that only counts; the clock
  stops when it has counted the last one.

Processes: the senders (the node; the paho publisher) run in this process, one side at
a time; the receivers (the hub; the counting subscriber) each in a process of their own,
as a hub and a node never share an interpreter; the broker in its own. Both sides use
the same client settings (MQTT v5, TCP_NODELAY), start connected, and get one untimed
warm-up round.

What the edgeloop figure does *not* include: storing the entries in the hub's database
(decoding each entry's payload, the ledger, the commit). That is the hub's ingest
figure (``hub_ingest_pg_events_per_s``), measured on its own; here the hub's receive
path is :class:`DecodeAndAck`. Samples/s count the samples of the entries delivered
(``Entry.samples``): raw frames of 1,000 float32 samples, ~3.6 kB each encoded.

Run: ``python -m edgeloop.bench.mqtt_bench [memory|sqlite]`` (or ``edgeloop bench``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeloop.errors import RejectReason, TelemetryError, TransportError
from edgeloop.node.runtime import WINDOW_BATCHES
from edgeloop.outbox.base import NewEntry, OutboxStore, Priority
from edgeloop.outbox.memory import MemoryOutbox
from edgeloop.telemetry import codec
from edgeloop.telemetry.frame import Frame
from edgeloop.transport.base import Ack, Batch

SAMPLES_PER_ENTRY = 1_000
_WAIT_S = 120.0
_SENSORS = 10
_DISTINCT_PAYLOADS = 64  # entries reuse these (the hub does not look inside them here)


class DecodeAndAck:
    """A hub receive path without a database, for the uplink benchmark: decode the
    batch, advance the (node, epoch) watermark as the store does, acknowledge.

    Implements :class:`~edgeloop.hub.mqtt_ingest.IngestPath`; called from the one
    worker thread of an ``MqttIngest``.
    """

    def __init__(self) -> None:
        self._marks: dict[tuple[str, int], int] = {}
        self.batches = 0
        self.entries = 0
        self.refused = 0

    def ingest(self, data: bytes, *, sender: str | None = None) -> Ack:
        batch = codec.decode_batch(data)
        if sender is not None and batch.node != sender:
            raise TelemetryError("node", RejectReason.MALFORMED, "forged sender")
        key = (batch.node, batch.epoch)
        mark = self._marks.get(key, batch.after_seq)  # an epoch never seen starts there
        accepted = 0
        if batch.entries and batch.after_seq <= mark:
            last = batch.entries[-1].seq
            accepted = sum(1 for e in batch.entries if e.seq > mark)
            mark = max(mark, last)
        self._marks[key] = mark
        self.batches += 1
        self.entries += accepted
        return Ack(batch.node, mark, accepted, len(batch.entries) - accepted)

    def watermark(self, node: str, epoch: int) -> int | None:
        return self._marks.get((node, epoch))

    def refuse(self, node: str | None, reason: str, field: str, detail: str, data: bytes) -> None:
        self.refused += 1


def frame_payloads(n: int = _DISTINCT_PAYLOADS, seed: int = 0) -> list[bytes]:
    """Encoded raw frames of :data:`SAMPLES_PER_ENTRY` samples (10 sensors at 2 kHz:
    a vibration-like sine with noise), as a gateway forwarding raw data sends them."""
    rng = np.random.default_rng(seed)
    per = SAMPLES_PER_ENTRY // _SENSORS
    sensor = np.repeat(np.arange(_SENSORS, dtype=np.uint32), per)
    names = [f"m{i // 3:02d}.vib_{i % 3}" for i in range(_SENSORS)]
    out = []
    for i in range(n):
        t = (i * per + np.tile(np.arange(per, dtype=np.int64), _SENSORS)) * 500_000
        value = np.sin(t * 2e-7 + sensor) + 0.1 * rng.standard_normal(len(t))
        out.append(codec.encode_frame(Frame(sensor, t, value.astype(np.float32)), names))
    return out


def _entries(n: int, payloads: list[bytes]) -> list[NewEntry]:
    return [
        NewEntry(Priority.RAW, "frame", payloads[i % len(payloads)], SAMPLES_PER_ENTRY)
        for i in range(n)
    ]


def _open_outbox(kind: str, workdir: Path, rep: int) -> OutboxStore:
    if kind == "memory":
        return MemoryOutbox()
    if kind == "sqlite":
        from edgeloop.outbox.sqlite import SqliteOutbox

        return SqliteOutbox(workdir / f"outbox{rep}.db")
    raise ValueError(f"outbox: expected 'memory' or 'sqlite', got {kind!r}")


def _encoded_batches(box: OutboxStore, node: str, batch_bytes: int, status: Any) -> list[bytes]:
    """The batches the node's uplink makes of ``box``: claims of ``batch_bytes``, each
    after the previous one, encoded as the transport encodes them."""
    out = []
    stats = box.stats()
    after = stats.acked_upto
    while entries := box.claim(batch_bytes, after):
        batch = Batch(node, after, tuple(entries), status, time.time_ns(), stats.epoch)
        out.append(codec.encode_batch(batch))
        after = entries[-1].seq
    return out


# -- one repetition of each side -------------------------------------------------------------
async def _ours_once(
    host: str,
    port: int,
    tenant: str,
    entries: list[NewEntry],
    *,
    outbox: str,
    workdir: Path,
    rep: int,
    batch_bytes: int,
    window_batches: int,
) -> float:
    """Seconds from the uplink's start until every entry is acknowledged end to end."""
    from edgeloop.node.runtime import NodeRuntime
    from edgeloop.transport.mqtt import MqttTransport

    node = f"gw{rep}"
    core = _core(node, batch_bytes)
    box = _open_outbox(outbox, workdir, rep)
    box.append(entries)
    transport = MqttTransport(host, port, tenant, node, timeout_s=30.0)
    await transport.connect()
    rt = NodeRuntime(core, box, transport, window_batches=window_batches)
    t0 = time.perf_counter()
    await rt.start()
    while box.stats().depth:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - t0
    await rt.stop()
    failures = rt.send_failures
    box.close()
    if failures:
        raise TransportError(f"mqtt bench: {failures} uplink failures; the figure would lie")
    return elapsed


def _core(node: str, batch_bytes: int) -> Any:
    from edgeloop.node.build import build_core
    from edgeloop.node.config import parse_node_config
    from edgeloop.sim.build import build_sim

    cfg = parse_node_config(
        {"node_id": node, "uplink": {"max_batch_bytes": batch_bytes, "timeout_s": 30.0}}
    )
    sim = build_sim({"generate": {"n_machines": 1, "gateway": node}}, [], seed=0, start_ns=0)
    return build_core(cfg, sim.catalog)


# -- the two receivers, each in a process of its own ----------------------------------------
def _serve_hub(host: str, port: int, tenant: str) -> None:
    """The hub (``python -m edgeloop.bench.mqtt_bench hub HOST PORT TENANT``):
    ``MqttIngest`` over :class:`DecodeAndAck`; says ``ready``, runs until stdin ends,
    then prints the entries it acknowledged."""
    from edgeloop.hub.mqtt_ingest import MqttIngest

    sink = DecodeAndAck()
    hub = MqttIngest(sink, host, port, group=tenant, tenant=tenant).start()
    try:
        print("ready", flush=True)
        sys.stdin.read()
    finally:
        hub.stop()
    print(sink.entries, flush=True)


def _serve_counter(host: str, port: int) -> None:
    """The peer's subscriber (``... count HOST PORT``): per stdin line ``TOPIC N``,
    subscribe at QoS 1, say ``ready``, count N messages, say ``done``."""
    from edgeloop.transport.mqtt_session import new_client

    got = threading.Event()
    subscribed = threading.Event()
    state = {"count": 0, "want": 0}

    def on_message(*_: Any) -> None:
        state["count"] += 1
        if state["count"] == state["want"]:
            got.set()

    client = new_client(f"bench-count-{uuid.uuid4().hex[:8]}")
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(host, port)
    client.loop_start()
    try:
        for line in sys.stdin:
            topic, want = line.split()
            state.update(count=0, want=int(want))
            got.clear()
            subscribed.clear()
            client.subscribe(topic, qos=1)
            print("ready" if subscribed.wait(10) else "not subscribed", flush=True)
            done = got.wait(_WAIT_S)
            print("done" if done else f"counted {state['count']}/{want}", flush=True)
            client.unsubscribe(topic)
    finally:
        client.disconnect()
        client.loop_stop()


class _Helper:
    """A receiver in its own interpreter, spoken to in lines over stdin/stdout."""

    def __init__(self, *args: str) -> None:
        cmd = [sys.executable, "-m", "edgeloop.bench.mqtt_bench", *args]
        self.what = args[0]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, what: str | None = None, timeout_s: float = _WAIT_S) -> str:
        """The next line (which must be ``what``, if given)."""
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            line = f"nothing in {timeout_s:g} s"
        if line is None:
            line = f"exited ({self.proc.wait()})"
        if what is not None and line != what:
            raise TransportError(
                f"mqtt bench: {self.what} process: expected {what!r}, got {line!r}"
            )
        return line

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)  # it has read to the end: the lines stay queued
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def _helper(*args: str) -> Iterator[_Helper]:
    h = _Helper(*args)
    try:
        yield h
    finally:
        h.close()


def _paho_once(host: str, port: int, topic: str, batches: list[bytes], counter: _Helper) -> float:
    """Seconds from the first publish until the counting subscriber has every batch.

    One publish at a time, each after its PUBACK: of the ways tried here (all at once
    with paho's 20 in flight, 8 in flight, one at a time), paho's fastest.
    """
    from edgeloop.transport.mqtt_session import Correlation, new_client, publish_properties

    counter.send(f"{topic} {len(batches)}")
    counter.expect("ready")
    connected = threading.Event()
    pub = new_client(f"bench-pub-{uuid.uuid4().hex[:8]}")
    pub.on_connect = lambda *_: connected.set()
    props = [publish_properties(Correlation(1, i, i, i).pack()) for i in range(len(batches))]
    pub.connect(host, port)
    pub.loop_start()
    try:
        if not connected.wait(10):
            raise TransportError(f"mqtt bench: paho publisher not connected to {host}:{port}")
        t0 = time.perf_counter()
        for payload, p in zip(batches, props, strict=True):
            pub.publish(topic, payload, qos=1, properties=p).wait_for_publish(_WAIT_S)
        counter.expect("done")
        return time.perf_counter() - t0
    finally:
        pub.disconnect()
        pub.loop_stop()


@contextlib.contextmanager
def _broker(broker: tuple[str, int] | None, workdir: Path) -> Iterator[tuple[str, int]]:
    if broker is not None:
        yield broker
        return
    from edgeloop.chaos.services import broker_endpoint

    with broker_endpoint(workdir / "mosquitto") as (host, port, _):
        yield host, port


def bench_mqtt(
    entries: int = 32_000,
    *,
    batch_bytes: int = 1 << 20,
    window_batches: int = WINDOW_BATCHES,
    outbox: str = "memory",
    reps: int = 9,
    broker: tuple[str, int] | None = None,
) -> dict[str, float]:
    """Median samples/s of the node's MQTT uplink (end-to-end acks) and of raw paho.

    Args:
        entries: raw-frame entries per repetition (1,000 samples each).
        batch_bytes: the uplink's ``max_batch_bytes`` (both sides send these batches).
        window_batches: the node's window of unacknowledged batches.
        outbox: ``"memory"`` or ``"sqlite"`` (durable, WAL); ``mqtt_outbox_durable``
            in the result says which (0 or 1).
        reps: repetitions of each side, alternating, after one untimed warm-up each
            (one repetition moves ~115 MB in about a second: single ones scatter by
            +-40 % on a shared machine, so the default takes nine).
        broker: ``(host, port)`` of a running broker; default: a private Mosquitto if
            the binary is installed, else 127.0.0.1:1883.

    Returns:
        ``mqtt_uplink_samples_per_s`` and ``paho_raw_samples_per_s`` (medians of
        ``reps``), ``ratio_vs_paho`` (the median of the repetitions' ratios: each pair
        runs back to back, so load that drifts between repetitions cancels out), the
        smallest and largest of those ratios, and the sizes measured.

    Raises:
        TransportError: a side did not deliver everything (a figure would lie).
    """
    payloads = frame_payloads()
    work = _entries(entries, payloads)
    warm = work[: max(1, entries // 8)]
    tenant = f"bench{uuid.uuid4().hex[:8]}"
    ours: list[float] = []
    paho: list[float] = []
    n_batches = 0
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        host, port = stack.enter_context(_broker(broker, workdir))
        hub = stack.enter_context(_helper("hub", host, str(port), tenant))
        counter = stack.enter_context(_helper("count", host, str(port)))
        try:
            hub.expect("ready")
            for rep in range(-1, reps):  # rep -1: the warm-up, not timed
                part = warm if rep < 0 else work
                # The peer's batches: what the node's uplink makes of the same entries.
                box = MemoryOutbox()
                box.append(part)
                batches = _encoded_batches(box, f"gw{rep}", batch_bytes, {"frames": rep})
                n_batches = len(batches)
                samples = len(part) * SAMPLES_PER_ENTRY
                topic = f"bench-paho/{tenant}/{rep}"
                for side in ("paho", "ours") if rep % 2 == 0 else ("ours", "paho"):
                    if side == "paho":
                        rate = samples / _paho_once(host, port, topic, batches, counter)
                    else:
                        dt = asyncio.run(
                            _ours_once(
                                host,
                                port,
                                tenant,
                                part,
                                outbox=outbox,
                                workdir=workdir,
                                rep=rep,
                                batch_bytes=batch_bytes,
                                window_batches=window_batches,
                            )
                        )
                        rate = samples / dt
                    if rep >= 0:
                        (paho if side == "paho" else ours).append(rate)
                del batches
        finally:
            hub.close()
        acked = int(hub.expect())
    if acked < entries * reps + len(warm):
        raise TransportError(f"mqtt bench: the hub acknowledged {acked} entries")
    ratios = [o / p for o, p in zip(ours, paho, strict=True)]
    return {
        "mqtt_uplink_samples_per_s": statistics.median(ours),
        "paho_raw_samples_per_s": statistics.median(paho),
        "ratio_vs_paho": statistics.median(ratios),
        "mqtt_ratio_min": min(ratios),
        "mqtt_ratio_max": max(ratios),
        "mqtt_batches_per_rep": float(n_batches),
        "mqtt_batch_bytes": float(batch_bytes),
        "mqtt_window_batches": float(window_batches),
        "mqtt_outbox_durable": float(outbox == "sqlite"),
        "mqtt_reps": float(reps),
    }


def main(argv: list[str]) -> None:  # pragma: no cover - a script
    if argv[:1] == ["hub"]:
        _serve_hub(argv[1], int(argv[2]), argv[3])
    elif argv[:1] == ["count"]:
        _serve_counter(argv[1], int(argv[2]))
    else:
        outbox = argv[0] if argv else "memory"
        print(json.dumps(bench_mqtt(outbox=outbox), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

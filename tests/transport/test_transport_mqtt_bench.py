"""The MQTT uplink benchmark: its hub path acknowledges like the store, and a small run
delivers every entry on both sides (a smoke run, not a measurement)."""

from __future__ import annotations

import pytest

from conftest import Broker
from edgeloop.bench.mqtt_bench import SAMPLES_PER_ENTRY, DecodeAndAck, bench_mqtt, frame_payloads
from edgeloop.errors import TelemetryError
from edgeloop.outbox.base import Entry, Priority
from edgeloop.telemetry import codec
from edgeloop.transport.base import Batch


def encoded(after: int, seqs: range, node: str = "gw1", epoch: int = 3) -> bytes:
    payload = frame_payloads(1)[0]
    entries = tuple(Entry(s, Priority.RAW, "frame", payload, SAMPLES_PER_ENTRY) for s in seqs)
    return codec.encode_batch(Batch(node, after, entries, {}, 0, epoch))


def test_decode_and_ack_advances_the_watermark_only_in_order() -> None:
    path = DecodeAndAck()
    assert path.watermark("gw1", 3) is None
    assert path.ingest(encoded(0, range(1, 4))).upto_seq == 3
    ahead = path.ingest(encoded(5, range(6, 8)))  # 4..5 missing: not taken
    assert (ahead.upto_seq, ahead.accepted) == (3, 0)
    again = path.ingest(encoded(0, range(1, 6)))  # resent from the watermark
    assert (again.upto_seq, again.accepted, again.duplicates) == (5, 2, 3)
    assert path.watermark("gw1", 3) == 5 and path.entries == 5
    with pytest.raises(TelemetryError, match="forged"):
        path.ingest(encoded(5, range(6, 7)), sender="gw2")


@pytest.mark.parametrize("outbox", ["memory", "sqlite"])
def test_a_small_run_delivers_everything_on_both_sides(mqtt_broker: Broker, outbox: str) -> None:
    figures = bench_mqtt(
        400,
        batch_bytes=64 * 1024,
        reps=1,
        broker=(mqtt_broker.host, mqtt_broker.port),
        outbox=outbox,
    )
    # The result says which outbox the node used (the durable one is much slower).
    assert figures["mqtt_outbox_durable"] == (outbox == "sqlite") and figures["mqtt_reps"] == 1
    assert figures["mqtt_uplink_samples_per_s"] > 0 and figures["paho_raw_samples_per_s"] > 0
    assert figures["ratio_vs_paho"] == pytest.approx(
        figures["mqtt_uplink_samples_per_s"] / figures["paho_raw_samples_per_s"]
    )
    assert figures["mqtt_batches_per_rep"] > 10  # several batches: the window mattered

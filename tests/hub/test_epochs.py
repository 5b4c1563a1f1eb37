"""Outbox epochs at the hub: ledger and watermark per (node, epoch).

A node whose outbox was wiped or replaced numbers from 1 again under a new epoch: its
entries are new, not duplicates. A hub that never saw a (node, epoch) accepts a batch
with ``after_seq > 0`` instead of stalling the node, and records the gap.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from edgeloop.errors import TelemetryError
from edgeloop.hub import schema as t
from edgeloop.hub.app import create_app
from edgeloop.hub.store import HubStore, IngestItem
from edgeloop.outbox.base import Entry, Priority
from edgeloop.telemetry import codec
from edgeloop.transport.base import Ack, Batch

from .conftest import SEC, summaries_item, summary_batch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

OLD, NEW = 111, 222
OCTET = {"content-type": "application/octet-stream"}
SENSORS = ["m01.vib_x", "m01.temp"]


def _items(first_seq: int, n: int, t0: int) -> list[IngestItem]:
    """``n`` summary entries of 2 sensors x 1 window (110 samples each), distinct windows."""
    return [
        summaries_item(first_seq + k, summary_batch(SENSORS, [t0 + k * SEC] * 2, [100, 10]))
        for k in range(n)
    ]


def _ledger(store: HubStore) -> dict[int, int]:
    """Ledger rows by epoch."""
    r = t.received.c
    with store.engine.connect() as conn:
        q = select(r.epoch, func.count()).group_by(r.epoch)
        return {int(e): int(n) for e, n in conn.execute(q)}


def test_new_epoch_numbering_from_one_again_is_new_data(file_store: HubStore) -> None:
    s = file_store
    assert s.ingest("gw1", 0, _items(1, 3, 0), {}, 1, epoch=OLD).upto_seq == 3
    # The outbox was replaced: seqs 1.. again, under a new epoch, other windows.
    ack = s.ingest("gw1", 0, _items(1, 2, 100 * SEC), {}, 2, epoch=NEW)
    assert ack == Ack("gw1", upto_seq=2, accepted=2, duplicates=0, rejected=0)
    assert _ledger(s) == {OLD: 3, NEW: 2}
    assert s.totals()["overall"]["samples"] == 5 * 110
    assert s.duplicate_summary_samples() == 0
    node = s.node("gw1")
    assert node is not None
    assert (node.epoch, node.watermark, node.unknown_upto_seq) == (NEW, 2, 0)
    assert [(i.epoch, i.watermark, i.batches) for i in s.incarnations("gw1")] == [
        (OLD, 3, 1),
        (NEW, 2, 1),
    ]
    # Summary, event and frame rows carry the epoch of the ledger row they point at.
    assert {r.epoch for r in s.summaries()} == {OLD, NEW}


def test_same_epoch_resent_is_all_duplicates(file_store: HubStore) -> None:
    s = file_store
    s.ingest("gw1", 0, _items(1, 3, 0), {}, 1, epoch=OLD)
    s.ingest("gw1", 0, _items(1, 2, 100 * SEC), {}, 2, epoch=NEW)
    again = s.ingest("gw1", 0, _items(1, 2, 100 * SEC), {}, 3, epoch=NEW)
    assert again == Ack("gw1", upto_seq=2, accepted=0, duplicates=2, rejected=0)
    assert _ledger(s) == {OLD: 3, NEW: 2}
    assert s.totals()["nodes"]["gw1"]["duplicates"] == 2
    assert s.duplicate_summary_samples() == 0


def test_stale_old_epoch_batch_is_deduplicated_against_its_own_epoch(
    file_store: HubStore,
) -> None:
    s = file_store
    s.ingest("gw1", 0, _items(1, 3, 0), {}, 1, epoch=OLD)
    s.ingest("gw1", 0, _items(1, 5, 100 * SEC), {}, 2, epoch=NEW)
    # A replay of the old outbox's first batch, delivered late (after the switch).
    stale = s.ingest("gw1", 0, _items(1, 3, 0), {}, 3, epoch=OLD)
    assert stale == Ack("gw1", upto_seq=3, accepted=0, duplicates=3, rejected=0)
    # A late old-epoch batch with one entry the hub never got: stored under OLD only.
    late = s.ingest("gw1", 3, _items(4, 1, 50 * SEC), {}, 4, epoch=OLD)
    assert late == Ack("gw1", upto_seq=4, accepted=1, duplicates=0, rejected=0)
    node = s.node("gw1")
    assert node is not None
    assert (node.epoch, node.watermark) == (NEW, 5)  # the current epoch is untouched
    assert {i.epoch: i.watermark for i in s.incarnations("gw1")} == {OLD: 4, NEW: 5}
    assert _ledger(s) == {OLD: 4, NEW: 5}
    assert s.duplicate_summary_samples() == 0
    # And the current epoch carries on where it was.
    assert s.ingest("gw1", 5, _items(6, 1, 200 * SEC), {}, 5, epoch=NEW).upto_seq == 6


def test_hub_that_never_saw_the_epoch_accepts_after_seq_above_zero(
    file_store: HubStore,
) -> None:
    s = file_store
    # The node's outbox had 40 entries acknowledged by a hub whose database is gone.
    ack = s.ingest("gw1", 40, _items(41, 2, 0), {}, 1, epoch=OLD)
    assert ack == Ack("gw1", upto_seq=42, accepted=2, duplicates=0, rejected=0)
    node = s.node("gw1")
    assert node is not None
    assert (node.epoch, node.watermark, node.unknown_upto_seq) == (OLD, 42, 40)
    (inc,) = s.incarnations("gw1")
    assert (inc.epoch, inc.watermark, inc.unknown_upto_seq) == (OLD, 42, 40)
    # From there on, the ordinary rules: a later batch waits for a missing one...
    assert s.ingest("gw1", 44, _items(45, 1, 10 * SEC), {}, 2, epoch=OLD).upto_seq == 42
    assert s.ingest("gw1", 42, _items(43, 2, 20 * SEC), {}, 3, epoch=OLD).upto_seq == 44
    resent = s.ingest("gw1", 44, _items(45, 1, 10 * SEC), {}, 4, epoch=OLD)
    assert (resent.upto_seq, resent.duplicates) == (45, 1)
    # ...and the recorded gap stays.
    node = s.node("gw1")
    assert node is not None and node.unknown_upto_seq == 40


def test_a_new_epoch_with_a_gap_then_a_clean_one_updates_the_node_gap(
    file_store: HubStore,
) -> None:
    s = file_store
    s.ingest("gw1", 7, _items(8, 1, 0), {}, 1, epoch=OLD)
    s.ingest("gw1", 0, _items(1, 1, 10 * SEC), {}, 2, epoch=NEW)
    node = s.node("gw1")
    assert node is not None and (node.epoch, node.unknown_upto_seq) == (NEW, 0)
    assert {i.epoch: i.unknown_upto_seq for i in s.incarnations("gw1")} == {OLD: 7, NEW: 0}


def test_a_status_only_first_batch_of_an_unknown_epoch_acks_its_after_seq(
    store: HubStore,
) -> None:
    assert store.ingest("gw1", 9, [], {"frames": 1}, 1, epoch=OLD).upto_seq == 9


def test_negative_epoch_is_refused(store: HubStore) -> None:
    with pytest.raises(TelemetryError) as info:
        store.ingest("gw1", 0, _items(1, 1, 0), {}, 1, epoch=-1)
    assert info.value.field == "epoch"
    assert store.nodes() == []


# -- over HTTP ---------------------------------------------------------------------------
def _entry(seq: int, t0: int) -> Entry:
    b = summary_batch(SENSORS, [t0, t0], [100, 10])
    return Entry(seq, Priority.SUMMARY, "summaries", codec.encode_summaries(b), b.samples)


def _post(client: TestClient, after: int, epoch: int, *entries: Entry) -> Ack:
    return _post_node(client, "gw1", after, epoch, *entries)


@pytest.fixture
def client(file_store: HubStore) -> Iterator[TestClient]:
    with TestClient(create_app(file_store, clock=lambda: 123)) as c:
        yield c


def test_epochs_over_http(client: TestClient, file_store: HubStore) -> None:
    assert _post(client, 0, OLD, _entry(1, 0), _entry(2, SEC)).upto_seq == 2
    new = _post(client, 0, NEW, _entry(1, 10 * SEC))
    assert (new.upto_seq, new.accepted, new.duplicates) == (1, 1, 0)
    assert _post(client, 0, NEW, _entry(1, 10 * SEC)).duplicates == 1
    stale = _post(client, 0, OLD, _entry(1, 0), _entry(2, SEC))
    assert (stale.upto_seq, stale.accepted, stale.duplicates) == (2, 0, 2)
    node: dict[str, Any] = client.get("/v1/nodes/gw1").json()
    assert (node["epoch"], node["watermark"], node["unknown_upto_seq"]) == (NEW, 1, 0)
    # A hub that never saw this node: no stall, the gap is visible in the API.
    gap = _post_node(client, "gw2", 30, NEW, _entry(31, 20 * SEC))
    assert (gap.upto_seq, gap.accepted) == (31, 1)
    node = client.get("/v1/nodes/gw2").json()
    assert (node["watermark"], node["unknown_upto_seq"]) == (31, 30)
    assert file_store.totals()["overall"]["samples"] == 4 * 110
    assert file_store.duplicate_summary_samples() == 0


def _post_node(client: TestClient, node: str, after: int, epoch: int, *entries: Entry) -> Ack:
    body = codec.encode_batch(Batch(node, after, entries, {}, sent_ns=1, epoch=epoch))
    r = client.post("/v1/ingest", content=body, headers=OCTET)
    assert r.status_code == 200, r.text
    return codec.decode_ack(r.content)

"""HubStore: idempotent ingest on (node, seq), ack after commit, watermark, queries."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import SQLAlchemyError

import edgeloop.hub
from edgeloop.errors import CodecError, RejectReason, TelemetryError
from edgeloop.hub import schema as t
from edgeloop.hub.store import DEAD_LETTER_PAYLOAD_CAP, HubStore, IngestItem
from edgeloop.telemetry.frame import Frame
from edgeloop.transport.base import Ack

from .conftest import (
    SEC,
    event,
    events_item,
    failing_inserts,
    summaries_item,
    summary_batch,
)

SENSORS = ["m01.vib_x", "m01.temp", "m02.vib_x"]


def _batch_items(first_seq: int, n: int, t0: int = 0) -> list[IngestItem]:
    """``n`` summary entries, each 3 sensors x 2 windows, distinct windows per seq."""
    items = []
    for k in range(n):
        base = t0 + (first_seq + k) * 10 * SEC
        b = summary_batch(SENSORS * 2, [base] * 3 + [base + SEC] * 3, [100, 10, 100] * 2)
        items.append(summaries_item(first_seq + k, b))
    return items


def _count(store: HubStore, table: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


def test_ingest_stores_rows_and_acks_after_commit(store: HubStore) -> None:
    items = [*_batch_items(1, 2), events_item(3, [event("m01"), event("m02", 20 * SEC)])]
    ack = store.ingest("gw1", 0, items, {"frames": 7}, now_ns=42)
    assert ack == Ack("gw1", upto_seq=3, accepted=3, duplicates=0, rejected=0)
    assert _count(store, t.received) == 3
    assert len(store.summaries()) == 12
    evs = store.events()
    assert [(e.machine, e.seq, e.origin, e.severity) for e in evs] == [
        ("m01", 3, "gw1", "anomaly"),
        ("m02", 3, "gw1", "anomaly"),
    ]
    assert evs[0].features == {"rms": 2.5, "kurtosis": 4.0}
    assert evs[0].has_raw is False
    (node,) = store.nodes()
    assert (node.id, node.watermark, node.first_seen_ns, node.last_seen_ns) == ("gw1", 3, 42, 42)
    assert store.totals()["overall"]["samples"] == 2 * 420


def test_same_batch_twice_is_all_duplicates_and_changes_nothing(store: HubStore) -> None:
    items = [*_batch_items(1, 3), events_item(4, [event()])]
    first = store.ingest("gw1", 0, items, {}, now_ns=1)
    rows_before = (store.summaries(), store.events())
    second = store.ingest("gw1", 0, items, {}, now_ns=2)
    assert first.accepted == 4 and first.duplicates == 0
    assert second == Ack("gw1", upto_seq=4, accepted=0, duplicates=4, rejected=0)
    assert (store.summaries(), store.events()) == rows_before
    assert store.duplicate_summary_samples() == 0
    totals = store.totals()["nodes"]["gw1"]
    assert (totals["entries"], totals["duplicates"], totals["batches"]) == (4, 4, 2)


def test_partial_overlap_counts_only_the_overlap(store: HubStore) -> None:
    store.ingest("gw1", 0, _batch_items(1, 3), {}, now_ns=1)
    ack = store.ingest("gw1", 0, _batch_items(2, 4), {}, now_ns=2)  # seqs 2..5
    assert (ack.accepted, ack.duplicates, ack.upto_seq) == (2, 2, 5)
    assert len(store.summaries(limit=100_000)) == 5 * 6


def test_seq_repeated_inside_one_batch_is_stored_once(store: HubStore) -> None:
    item = _batch_items(1, 1)[0]
    ack = store.ingest("gw1", 0, [item, item], {}, now_ns=1)
    assert (ack.accepted, ack.duplicates) == (1, 1)
    assert len(store.summaries()) == 6


def test_watermark_waits_for_a_missing_earlier_batch(store: HubStore) -> None:
    assert store.ingest("gw1", 0, _batch_items(1, 3), {}, now_ns=1).upto_seq == 3
    # Batch (after 6: seqs 7, 8) arrives before batch (after 3: seqs 4..6).
    early = store.ingest("gw1", 6, _batch_items(7, 2), {}, now_ns=2)
    assert (early.upto_seq, early.accepted) == (3, 2)  # stored, but not acknowledgeable
    assert store.ingest("gw1", 3, _batch_items(4, 3), {}, now_ns=3).upto_seq == 6
    # The node resends from its ack (6): those entries are duplicates now; the mark moves.
    again = store.ingest("gw1", 6, _batch_items(7, 2), {}, now_ns=4)
    assert (again.upto_seq, again.accepted, again.duplicates) == (8, 0, 2)


def test_evicted_seqs_before_a_batch_do_not_hold_the_watermark(store: HubStore) -> None:
    store.ingest("gw1", 0, _batch_items(1, 2), {}, now_ns=1)
    # after_seq 2, entries 5 and 6: seqs 3, 4 were evicted by the node's outbox.
    assert store.ingest("gw1", 2, _batch_items(5, 2), {}, now_ns=2).upto_seq == 6
    # An old redelivery never moves the watermark back.
    assert store.ingest("gw1", 0, _batch_items(1, 1), {}, now_ns=3).upto_seq == 6
    # A status-only batch (no entries) keeps it too.
    assert store.ingest("gw1", 6, [], {"frames": 1}, now_ns=4).upto_seq == 6


def test_status_is_replaced_never_added(store: HubStore) -> None:
    items = _batch_items(1, 1)
    store.ingest("gw1", 0, items, {"frames": 10, "rejects": {"non_finite": 3}}, 1, sent_ns=100)
    store.ingest("gw1", 0, items, {"frames": 15, "tier": "near"}, 2, sent_ns=200)
    node = store.node("gw1")
    assert node is not None
    assert node.status == {"frames": 15, "tier": "near"}
    assert node.tier == "near"
    # A reordered, older status does not overwrite the newer one.
    store.ingest("gw1", 0, items, {"frames": 12}, 3, sent_ns=150)
    node = store.node("gw1")
    assert node is not None and node.status["frames"] == 15
    assert node.last_seen_ns == 3


def test_status_non_finite_floats_become_null(store: HubStore) -> None:
    store.ingest("gw1", 0, [], {"p99": float("nan"), "ok": 1.5, "n": np.int64(3)}, 1)
    node = store.node("gw1")
    assert node is not None and node.status == {"p99": None, "ok": 1.5, "n": 3}


def test_rejected_item_is_dead_lettered_ledgered_and_passed_by_the_watermark(
    store: HubStore,
) -> None:
    bad = IngestItem(
        2,
        1,
        "summaries",
        40,
        9,
        error=CodecError("summary.v", RejectReason.SCHEMA_VERSION, "v=9; supported: (1,)"),
        payload=b"\x99" * 9,
    )
    good = [*_batch_items(1, 1), bad, *_batch_items(3, 1)]
    ack = store.ingest("gw1", 0, good, {}, now_ns=5)
    assert ack == Ack("gw1", upto_seq=3, accepted=2, duplicates=0, rejected=1)
    (dl,) = store.dead_letters()
    assert (dl.node, dl.seq, dl.reason, dl.field) == ("gw1", 2, "schema_version", "summary.v")
    assert "v=9" in dl.detail and "seq 2" in dl.detail
    assert store.dead_letter_payload(dl.id) == b"\x99" * 9
    assert {s.seq for s in store.summaries()} == {1, 3}
    # The node resends the poison entry (lost ack): a duplicate, no second dead letter.
    again = store.ingest("gw1", 0, good, {}, now_ns=6)
    assert (again.duplicates, again.rejected) == (3, 0)
    assert len(store.dead_letters()) == 1
    totals = store.totals()["nodes"]["gw1"]
    assert (totals["rejected"], totals["dead_letters"], totals["entries"]) == (1, 1, 3)


def test_payload_the_tables_cannot_hold_is_rejected_and_the_rest_kept(store: HubStore) -> None:
    broken = summary_batch(["a", "b"], [0, 0], [5, 5])
    broken = type(broken)(
        **{f: getattr(broken, f) for f in ("t0_ns", "t1_ns", "count", "mean", "std", "min", "max")},
        sensor=np.array([0, 7], dtype=np.uint32),  # index 7 has no name
        sensor_names=broken.sensor_names,
    )
    items = [summaries_item(1, broken), *_batch_items(2, 1), events_item(3, ["not an event"])]  # type: ignore[list-item]
    ack = store.ingest("gw1", 0, items, {}, now_ns=1)
    assert (ack.accepted, ack.rejected, ack.upto_seq) == (1, 2, 3)
    reasons = {(d.seq, d.field, d.reason) for d in store.dead_letters()}
    assert reasons == {(1, "summaries.sensor", "unknown_sensor"), (3, "events[0]", "wrong_type")}
    assert {s.seq for s in store.summaries()} == {2}
    # Rows are built after the ledger admitted the entry: the ledger marks both rejected.
    assert store.totals()["nodes"]["gw1"]["rejected"] == 2
    # Sent again (lost ack): duplicates, neither rebuilt nor dead-lettered twice.
    again = store.ingest("gw1", 0, items, {}, now_ns=2)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 3, 0)
    assert len(store.dead_letters()) == 2


def test_unknown_kind_is_rejected(store: HubStore) -> None:
    ack = store.ingest("gw1", 0, [IngestItem(1, 0, "video", 0, 3, decoded=None)], {}, 1)
    assert (ack.rejected, ack.upto_seq) == (1, 1)
    assert store.dead_letters()[0].field == "kind"


def test_bad_node_or_seq_raises_before_storing(store: HubStore) -> None:
    with pytest.raises(TelemetryError, match="node: malformed"):
        store.ingest("", 0, _batch_items(1, 1), {}, 1)
    item = _batch_items(1, 1)[0]
    zero = IngestItem(0, item.priority, item.kind, item.samples, item.size, item.decoded)
    with pytest.raises(TelemetryError, match=r"entries\[0\]\.seq: malformed"):
        store.ingest("gw1", 0, [zero], {}, 1)
    assert store.nodes() == [] and _count(store, t.received) == 0


def test_store_failure_rolls_back_everything_and_raises(file_store: HubStore) -> None:
    file_store.ingest("gw1", 0, _batch_items(1, 1), {"frames": 1}, now_ns=1)
    items = [*_batch_items(2, 2), events_item(4, [event()])]
    with failing_inserts(file_store, "events", "disk"):
        with pytest.raises(SQLAlchemyError, match="disk"):
            file_store.ingest("gw1", 1, items, {"frames": 2}, now_ns=2)
        # Nothing of the failed batch: no ledger rows (a retry is not a duplicate), same mark.
        assert _count(file_store, t.received) == 1
        assert _count(file_store, t.summaries) == 6
        node = file_store.node("gw1")
        assert node is not None
        assert (node.watermark, node.status, node.batches) == (1, {"frames": 1}, 1)
    ack = file_store.ingest("gw1", 1, items, {"frames": 2}, now_ns=3)
    assert (ack.accepted, ack.duplicates, ack.upto_seq) == (3, 0, 4)


def test_concurrent_ingest_of_the_same_batch_stores_once(db_url: str) -> None:
    # Two hub replicas (separate stores, separate pools) on one database, four threads.
    stores = [HubStore(db_url), HubStore(db_url)]
    stores[0].create_all()
    items = _batch_items(1, 20)
    barrier = threading.Barrier(4)
    acks: list[Ack] = []
    errors: list[BaseException] = []

    def run(s: HubStore) -> None:
        barrier.wait()
        try:
            acks.append(s.ingest("gw1", 0, items, {}, now_ns=1))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(stores[i % 2],)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert sum(a.accepted for a in acks) == 20
    assert sum(a.duplicates for a in acks) == 3 * 20
    assert all(a.upto_seq == 20 for a in acks)
    assert len(stores[0].summaries(limit=100_000)) == 20 * 6
    assert stores[1].duplicate_summary_samples() == 0
    assert stores[0].totals()["nodes"]["gw1"]["duplicates"] == 60
    for s in stores:
        s.close()


def test_entry_committed_concurrently_is_a_duplicate_not_a_second_copy(store: HubStore) -> None:
    # Another request commits seq 1 between our lookup of known entries and our ledger
    # insert (the PostgreSQL race; SQLite serializes writers): ON CONFLICT DO NOTHING
    # skips it, its rows are not stored twice, and no retry is needed.
    fired: list[bool] = []

    @sa_event.listens_for(store.engine, "before_cursor_execute")
    def collide(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO received") and not fired:
            fired.append(True)
            cursor.execute(
                "INSERT INTO received (node, epoch, seq, kind, priority, samples, bytes,"
                " received_ns, rejected) VALUES ('gw1', 0, 1, 'summaries', 1, 0, 0, 0, false)"
            )

    ack = store.ingest("gw1", 0, _batch_items(1, 2), {}, now_ns=1)
    assert fired and store.integrity_retries == 0
    assert (ack.accepted, ack.duplicates, ack.upto_seq) == (1, 1, 2)
    assert {s.seq for s in store.summaries()} == {2} and _count(store, t.received) == 2


def test_integrity_error_is_retried_as_a_new_attempt(store: HubStore) -> None:
    # A concurrent first batch of a new epoch inserts the same incarnation row first:
    # our insert violates its key, the transaction rolls back and the batch is retried
    # whole (here the second attempt runs without the collision).
    store.ingest("gw1", 0, _batch_items(1, 1), {}, now_ns=1, epoch=1)
    fired: list[bool] = []

    @sa_event.listens_for(store.engine, "before_cursor_execute")
    def collide(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "INSERT INTO incarnations" in statement and not fired:
            fired.append(True)
            cursor.execute(
                "INSERT INTO incarnations (node, epoch, watermark, unknown_upto_seq,"
                " first_seen_ns, last_seen_ns, batches) VALUES ('gw1', 2, 0, 0, 0, 0, 0)"
            )

    ack = store.ingest("gw1", 0, _batch_items(1, 2), {}, now_ns=2, epoch=2)
    assert fired and store.integrity_retries == 1
    assert (ack.accepted, ack.duplicates, ack.upto_seq) == (2, 0, 2)
    assert _count(store, t.received) == 3 and len(store.summaries()) == 18


def test_duplicate_summary_samples_finds_a_row_stored_twice(store: HubStore) -> None:
    store.ingest("gw1", 0, _batch_items(1, 2), {}, now_ns=1)
    assert store.duplicate_summary_samples() == 0
    victim = store.summaries(sensor="m01.vib_x")[0]
    row = {k: getattr(victim, k) for k in ("node", "seq", "sensor", "t0_ns", "t1_ns", "count")}
    with store.engine.begin() as conn:  # bypass the ledger: a bug that stores twice
        conn.execute(insert(t.summaries).values(**row, mean=0.0, std=0.0, min=0.0, max=0.0))
        conn.execute(insert(t.summaries).values(**row, mean=0.0, std=0.0, min=0.0, max=0.0))
    assert store.duplicate_summary_samples() == 2 * victim.count
    # Same sensor and t0 from another node is not a duplicate.
    other = summary_batch([victim.sensor], [victim.t0_ns], [7])
    store.ingest("gw2", 0, [summaries_item(1, other)], {}, now_ns=2)
    assert store.duplicate_summary_samples() == 2 * victim.count


def test_query_filters(store: HubStore) -> None:
    store.ingest(
        "gw1", 0, [events_item(1, [event("m01", 10 * SEC), event("m02", 20 * SEC)])], {}, 1
    )
    store.ingest("gw2", 0, [events_item(1, [event("m01", 30 * SEC, node="gw2")])], {}, 2)
    store.ingest("gw1", 1, _batch_items(2, 2), {}, 3)
    assert [e.t_start_ns for e in store.events(machine="m01")] == [10 * SEC, 30 * SEC]
    assert [e.machine for e in store.events(node="gw1")] == ["m01", "m02"]
    assert [e.node for e in store.events(since_ns=20 * SEC)] == ["gw1", "gw2"]
    assert [e.machine for e in store.events(until_ns=20 * SEC)] == ["m01"]
    assert len(store.events(limit=2)) == 2
    s = store.summaries(sensor="m01.temp")
    assert [(r.t0_ns, r.count) for r in s] == [
        (20 * SEC, 10),
        (21 * SEC, 10),
        (30 * SEC, 10),
        (31 * SEC, 10),
    ]
    assert {r.sensor for r in store.summaries(since_ns=30 * SEC, until_ns=31 * SEC)} == set(SENSORS)
    assert store.summaries(node="gw2") == []
    assert [r.t0_ns for r in store.summaries(limit=3)] == [20 * SEC] * 3


def test_totals_per_node_and_overall(store: HubStore) -> None:
    store.ingest("gw1", 0, _batch_items(1, 2), {}, 1)
    store.ingest("gw1", 0, _batch_items(1, 2), {}, 2)
    store.ingest("gw2", 0, [events_item(1, [event(), event()])], {}, 3)
    store.dead_letter(None, "truncated", "batch", "cut", b"\x00" * 10, 4)
    totals = store.totals()
    g1, g2 = totals["nodes"]["gw1"], totals["nodes"]["gw2"]
    assert g1 == {
        "samples": 840,
        "events": 0,
        "entries": 2,
        "rejected": 0,
        "duplicates": 2,
        "bytes": 2 * 106,
        "batches": 2,
        "dead_letters": 0,
    }
    assert (g2["events"], g2["entries"], g2["bytes"], g2["samples"]) == (2, 1, 100, 0)
    assert totals["overall"] == {
        "samples": 840,
        "events": 2,
        "entries": 3,
        "rejected": 0,
        "duplicates": 2,
        "bytes": 312,
        "batches": 3,
        "dead_letters": 1,
    }


def test_dead_letter_payload_is_truncated_to_the_cap(store: HubStore) -> None:
    big = bytes(range(256)) * (DEAD_LETTER_PAYLOAD_CAP // 256 + 10)
    dl_id = store.dead_letter("gw9", "oversized", "batch", "too big", big, now_ns=7)
    (dl,) = store.dead_letters(node="gw9")
    assert (dl.id, dl.payload_bytes, dl.received_ns) == (dl_id, len(big), 7)
    assert store.dead_letter_payload(dl_id) == big[:DEAD_LETTER_PAYLOAD_CAP]
    assert store.dead_letter_payload(dl_id + 1) is None


def test_non_finite_statistics_read_back_as_none(store: HubStore) -> None:
    b = summary_batch(["a", "b"], [0, 0], [1, 0])
    b.std[0] = np.nan
    b.mean[1] = np.inf
    store.ingest("gw1", 0, [summaries_item(1, b)], {}, 1)
    rows = {r.sensor: r for r in store.summaries()}
    assert rows["a"].std is None and rows["a"].mean == 0.0
    assert rows["b"].mean is None and rows["b"].max == 2.0


def test_frame_entries_keep_their_payload_as_blob(store: HubStore) -> None:
    frame = Frame.from_arrays([0, 1, 1], [1, 2, 3], [0.5, 1.5, 2.5])
    item = IngestItem(1, 0, "frame", 3, 12, decoded=(frame, ("a", "b")), payload=b"encoded!")
    assert store.ingest("gw1", 0, [item], {}, 1).accepted == 1
    with store.engine.connect() as conn:
        row = conn.execute(select(t.raw_frames)).one()
    assert (row.node, row.seq, row.sensors, row.n, row.blob) == (
        "gw1",
        1,
        ["a", "b"],
        3,
        b"encoded!",
    )


def test_event_raw_context_is_encoded_with_the_given_encoder() -> None:
    calls: list[tuple[int, tuple[str, ...]]] = []

    def encode(frame: Frame, names: Any) -> bytes:
        calls.append((len(frame), tuple(names)))
        return frame.value.tobytes()

    s = HubStore("sqlite://", encode_frame=encode)
    s.create_all()
    raw = Frame.from_arrays([0, 1], [5, 6], [1.0, 2.0])
    ev = event(raw=raw, raw_sensors=("m01.vib_x", "m01.temp"))
    s.ingest("gw1", 0, [events_item(1, [ev, event()])], {}, 1)
    with_raw, without = s.events()
    assert (with_raw.has_raw, with_raw.raw_sensors, without.has_raw) == (
        True,
        ["m01.vib_x", "m01.temp"],
        False,
    )
    assert s.event_raw(with_raw.id) == (raw.value.tobytes(), ["m01.vib_x", "m01.temp"])
    assert s.event_raw(without.id) is None
    assert calls == [(2, ("m01.vib_x", "m01.temp"))]
    s.close()


def test_file_store_persists_across_reopen(db_url: str) -> None:
    s = HubStore(db_url)
    s.create_all()
    s.ingest("gw1", 0, _batch_items(1, 2), {"frames": 3}, 1)
    s.ingest("gw1", 0, _batch_items(1, 2), {"frames": 4}, 2)
    s.close()
    reopened = HubStore(db_url)
    reopened.create_all()  # idempotent
    node = reopened.node("gw1")
    assert node is not None and (node.watermark, node.duplicates, node.status) == (
        2,
        2,
        {"frames": 4},
    )
    assert reopened.ingest("gw1", 0, _batch_items(1, 2), {}, 3).duplicates == 2
    if reopened.backend == "sqlite":
        with reopened.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    reopened.close()


def test_public_api_is_explicit_and_sorted() -> None:
    assert edgeloop.hub.__all__ == sorted(edgeloop.hub.__all__)
    for name in edgeloop.hub.__all__:
        assert getattr(edgeloop.hub, name) is not None


def test_values_a_database_would_refuse_are_rejected_per_entry(store: HubStore) -> None:
    items = [
        events_item(1, [event(machine="m\x0001")]),
        events_item(2, [event(t_start_ns=2**64)]),
        events_item(3, [event(reason="nul \x00 inside")]),
    ]
    ack = store.ingest("gw1", 0, items, {}, 1)
    assert (ack.accepted, ack.rejected, ack.upto_seq) == (1, 2, 3)
    fields = {d.seq: (d.field, d.reason) for d in store.dead_letters()}
    assert fields == {
        1: ("events[0].machine", "malformed"),
        2: ("events[0].t_start_ns", "malformed"),
    }
    assert store.events()[0].reason == "nul \ufffd inside"


def test_out_of_range_batch_numbers_raise_before_storing(store: HubStore) -> None:
    item = _batch_items(1, 1)[0]
    huge = IngestItem(2**63, item.priority, item.kind, item.samples, item.size, item.decoded)
    with pytest.raises(TelemetryError, match=r"entries\[0\]\.seq: malformed"):
        store.ingest("gw1", 0, [huge], {}, 1)
    with pytest.raises(TelemetryError, match="after_seq: malformed"):
        store.ingest("gw1", 2**64, [item], {}, 1)
    with pytest.raises(TelemetryError, match="node: malformed"):
        store.ingest("g\x00w", 0, [item], {}, 1)
    assert _count(store, t.received) == 0


def test_schema_compiles_for_postgresql() -> None:
    # No server here: check that every table, index and query the store emits renders in
    # the PostgreSQL dialect (types, BIGSERIAL ids, window function, FOR UPDATE).
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex, CreateTable

    pg = postgresql.dialect()
    ddl = [str(CreateTable(tb).compile(dialect=pg)) for tb in t.metadata.sorted_tables]
    ddl += [
        str(CreateIndex(ix).compile(dialect=pg))
        for tb in t.metadata.sorted_tables
        for ix in tb.indexes
    ]
    joined = "\n".join(ddl)
    assert "id BIGSERIAL" in joined and "BYTEA" in joined and "status JSON" in joined
    assert "CREATE INDEX ix_summaries_node_sensor_t ON summaries (node, sensor, t0_ns)" in joined
    lock = select(t.nodes.c.watermark).where(t.nodes.c.id == "x").with_for_update()
    assert "FOR UPDATE" in str(lock.compile(dialect=pg))

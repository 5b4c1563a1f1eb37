"""The hub's HTTP API: ingest over the real codec, acks after commit, errors, queries."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from edgeloop.errors import RejectReason
from edgeloop.hub import schema as t
from edgeloop.hub.app import IngestService, create_app
from edgeloop.hub.server import BackgroundServer
from edgeloop.hub.store import HubStore
from edgeloop.outbox.base import Entry, Priority
from edgeloop.telemetry import codec
from edgeloop.telemetry.frame import Frame
from edgeloop.transport.base import Ack, Batch
from edgeloop.transport.http import HttpTransport
from edgeloop.transport.inproc import InProcTransport

from .conftest import SEC, event, failing_inserts, summary_batch

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 fork for its TestClient; httpx works the same and
    # is what the project depends on. Only this import-time notice is silenced.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

OCTET = {"content-type": "application/octet-stream"}
REASONS = {r.value for r in RejectReason}


def summaries_entry(seq: int, t0: int = 0) -> Entry:
    b = summary_batch(["m01.vib_x", "m01.temp"] * 2, [t0, t0, t0 + SEC, t0 + SEC], [2000, 10] * 2)
    return Entry(seq, Priority.SUMMARY, "summaries", codec.encode_summaries(b), b.samples)


def events_entry(seq: int, *events: Any) -> Entry:
    return Entry(seq, Priority.EVENT, "events", codec.encode_events(list(events)))


def frame_entry(seq: int) -> Entry:
    frame = Frame.from_arrays([0, 0, 1], [1, 2, 3], [0.25, 0.5, 21.0])
    return Entry(seq, Priority.RAW, "frame", codec.encode_frame(frame, ["a", "b"]), 3)


def post(client: TestClient, node: str, after: int, *entries: Entry, **status: Any) -> Ack:
    body = codec.encode_batch(Batch(node, after, tuple(entries), dict(status), sent_ns=after))
    r = client.post("/v1/ingest", content=body, headers=OCTET)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    return codec.decode_ack(r.content)


def metric(client: TestClient, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def ledger_rows(store: HubStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(t.received)) or 0)


@pytest.fixture
def client(store: HubStore) -> Iterator[TestClient]:
    with TestClient(create_app(store, clock=lambda: 123)) as c:
        yield c


def test_ingest_acks_and_the_same_batch_again_is_all_duplicates(
    client: TestClient, store: HubStore
) -> None:
    raw = Frame.from_arrays([0, 1, 0], [5, 6, 7], [1.0, 2.0, 3.0])
    ev = event(raw=raw, raw_sensors=("m01.vib_x", "m01.temp"))
    entries = (summaries_entry(1), events_entry(2, ev), frame_entry(3))
    ack = post(client, "gw1", 0, *entries, frames=1)
    assert ack == Ack("gw1", upto_seq=3, accepted=3, duplicates=0, rejected=0)
    before = (client.get("/v1/summaries").json(), client.get("/v1/events").json())
    again = post(client, "gw1", 0, *entries, frames=2)
    assert again == Ack("gw1", upto_seq=3, accepted=0, duplicates=3, rejected=0)
    assert (client.get("/v1/summaries").json(), client.get("/v1/events").json()) == before
    assert len(before[0]) == 4 and before[1][0]["has_raw"] is True
    # The raw context comes back as an encoded frame with the same samples.
    r = client.get(f"/v1/events/{before[1][0]['id']}/raw")
    frame, names = codec.decode_frame(r.content)
    assert names == ("m01.vib_x", "m01.temp")
    assert frame.value.tolist() == [1.0, 2.0, 3.0] and frame.ts.tolist() == [5, 6, 7]
    assert client.get("/v1/nodes/gw1").json()["status"] == {"frames": 2}


def test_corrupt_entry_is_dead_lettered_and_the_rest_of_the_batch_stored(
    client: TestClient,
) -> None:
    poison = Entry(2, Priority.SUMMARY, "summaries", b"\x93not a summary")
    unknown = Entry(4, Priority.EVENT, "video", b"\x00")
    ack = post(client, "gw1", 0, summaries_entry(1), poison, events_entry(3, event()), unknown)
    assert ack == Ack("gw1", upto_seq=4, accepted=2, duplicates=0, rejected=2)
    dead = {d["seq"]: d for d in client.get("/v1/dead_letters").json()}
    assert set(dead) == {2, 4}
    assert dead[2]["node"] == "gw1" and dead[2]["reason"] in REASONS and dead[2]["field"]
    assert (dead[4]["field"], dead[4]["reason"]) == ("entries[3].kind", "malformed")
    assert dead[2]["payload_bytes"] == len(poison.payload)
    assert {s["seq"] for s in client.get("/v1/summaries").json()} == {1}
    assert len(client.get("/v1/events").json()) == 1
    # A resend (ack lost) does not dead-letter the poison entry twice.
    again = post(client, "gw1", 0, summaries_entry(1), poison, events_entry(3, event()), unknown)
    assert (again.duplicates, again.rejected, again.upto_seq) == (4, 0, 4)
    assert len(client.get("/v1/dead_letters").json()) == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"definitely not msgpack \xc1", None),
        (codec.encode_batch(Batch("gw1", 0, (Entry(1, Priority.RAW, "frame", b"x"),)))[:-3], None),
        (codec.encode_ack(Ack("gw1", 1)), "malformed"),
    ],
    ids=["garbage", "truncated", "wrong_kind"],
)
def test_undecodable_batch_is_400_with_a_json_error_and_a_dead_letter(
    client: TestClient, store: HubStore, body: bytes, reason: str | None
) -> None:
    r = client.post("/v1/ingest", content=body, headers=OCTET)
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) == {"field", "reason", "detail"}
    assert err["field"] and err["reason"] in REASONS
    if reason is not None:
        assert err["reason"] == reason
    (dl,) = client.get("/v1/dead_letters").json()
    assert (dl["node"], dl["reason"], dl["field"], dl["payload_bytes"]) == (
        None,
        err["reason"],
        err["field"],
        len(body),
    )
    assert ledger_rows(store) == 0
    assert client.get("/v1/stats").json()["overall"]["dead_letters"] == 1


def test_store_failure_is_5xx_and_nothing_is_acknowledged(file_store: HubStore) -> None:
    with TestClient(create_app(file_store)) as client:
        assert post(client, "gw1", 0, summaries_entry(1)).upto_seq == 1
        body = codec.encode_batch(Batch("gw1", 1, (summaries_entry(2, 10 * SEC),), {}))
        with failing_inserts(file_store, "summaries", "io"):
            r = client.post("/v1/ingest", content=body, headers=OCTET)
            assert r.status_code == 503
            assert r.json()["error"]["field"] == "store"
            assert ledger_rows(file_store) == 1
            assert client.get("/v1/nodes/gw1").json()["watermark"] == 1
            assert metric(client, "edgeloop_hub_ingest_batches_total", outcome="store_error") == 1
        ack = codec.decode_ack(client.post("/v1/ingest", content=body, headers=OCTET).content)
        assert (ack.accepted, ack.duplicates, ack.upto_seq) == (1, 0, 2)


def test_watermark_over_http_waits_for_a_missing_batch(client: TestClient) -> None:
    assert post(client, "gw1", 0, summaries_entry(1)).upto_seq == 1
    assert post(client, "gw1", 2, summaries_entry(3, 30 * SEC)).upto_seq == 1
    assert post(client, "gw1", 1, summaries_entry(2, 20 * SEC)).upto_seq == 2
    assert post(client, "gw1", 2, summaries_entry(3, 30 * SEC)).upto_seq == 3


def test_query_endpoints_filter(client: TestClient) -> None:
    post(client, "gw1", 0, events_entry(1, event("m01", 10 * SEC), event("m02", 20 * SEC)))
    post(client, "gw2", 0, events_entry(1, event("m01", 30 * SEC, node="gw2")), summaries_entry(2))
    nodes = client.get("/v1/nodes").json()
    assert [(n["id"], n["watermark"], n["last_seen_ns"]) for n in nodes] == [
        ("gw1", 1, 123),
        ("gw2", 2, 123),
    ]
    r = client.get("/v1/nodes/nope")
    assert r.status_code == 404 and r.json()["error"]["field"] == "node"
    by_machine = client.get("/v1/events", params={"machine": "m01"}).json()
    assert [(e["node"], e["t_start_ns"]) for e in by_machine] == [
        ("gw1", 10 * SEC),
        ("gw2", 30 * SEC),
    ]
    window = client.get("/v1/events", params={"since_ns": 15 * SEC, "until_ns": 30 * SEC}).json()
    assert [e["machine"] for e in window] == ["m02"]
    assert len(client.get("/v1/events", params={"node": "gw1", "limit": 1}).json()) == 1
    temps = client.get("/v1/summaries", params={"sensor": "m01.temp", "node": "gw2"}).json()
    assert [(s["t0_ns"], s["count"]) for s in temps] == [(0, 10), (SEC, 10)]
    assert client.get("/v1/summaries", params={"since_ns": SEC}).json()[0]["t0_ns"] == SEC
    assert client.get("/v1/events", params={"limit": 0}).status_code == 422
    assert client.get("/v1/events/999/raw").status_code == 404


def test_stats_account_per_node(client: TestClient) -> None:
    post(client, "gw1", 0, summaries_entry(1), summaries_entry(2, 10 * SEC))
    post(client, "gw1", 0, summaries_entry(1), summaries_entry(2, 10 * SEC))
    post(client, "gw2", 0, events_entry(1, event()))
    stats = client.get("/v1/stats").json()
    g1 = stats["nodes"]["gw1"]
    assert (g1["samples"], g1["entries"], g1["duplicates"], g1["batches"]) == (2 * 4020, 2, 2, 2)
    assert stats["overall"]["events"] == 1 and stats["overall"]["entries"] == 3
    assert stats["duplicate_summary_samples"] == 0


def test_openapi_lists_the_endpoints_with_response_models(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/v1/ingest",
        "/v1/nodes",
        "/v1/nodes/{node_id}",
        "/v1/events",
        "/v1/summaries",
        "/v1/stats",
        "/v1/dead_letters",
        "/healthz",
        "/metrics",
    ):
        assert path in paths, path
    assert "application/octet-stream" in paths["/v1/ingest"]["post"]["requestBody"]["content"]
    ok = paths["/v1/events"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["items"]["$ref"].endswith("/StoredEvent")
    for model in ("StoredEvent", "StoredSummary", "NodeInfo", "StatsOut", "ErrorOut"):
        assert model in spec["components"]["schemas"]
    assert client.get("/healthz").json() == {"status": "ok"}


def test_metrics_move_and_apps_do_not_share_a_registry(store: HubStore) -> None:
    with TestClient(create_app(store)) as a, TestClient(create_app(store)) as b:
        bad = Entry(2, Priority.EVENT, "events", b"\xff")
        post(a, "gw1", 0, summaries_entry(1), bad)
        post(a, "gw1", 0, summaries_entry(1), bad)  # resent: duplicates, not new rejects
        a.post("/v1/ingest", content=b"junk", headers=OCTET)
        assert metric(a, "edgeloop_hub_ingest_batches_total", outcome="ok") == 2
        assert metric(a, "edgeloop_hub_ingest_batches_total", outcome="bad_batch") == 1
        assert metric(a, "edgeloop_hub_ingest_entries_total") == 1
        assert metric(a, "edgeloop_hub_ingest_duplicates_total") == 2
        rejects = sum(metric(a, "edgeloop_hub_ingest_rejects_total", reason=r) for r in REASONS)
        assert rejects == 2  # the bad entry and the bad batch
        assert metric(a, "edgeloop_hub_ingest_seconds_count") == 2
        assert metric(b, "edgeloop_hub_ingest_batches_total", outcome="ok") == 0


def test_oversized_body_is_refused_before_decoding(store: HubStore) -> None:
    with TestClient(create_app(store, max_body_bytes=64)) as client:
        r = client.post("/v1/ingest", content=b"\x00" * 65, headers=OCTET)
    assert r.status_code == 413
    assert r.json()["error"] == {"field": "body", "reason": "oversized", "detail": "65 > 64"}


def test_inproc_transport_uses_the_service_as_its_handler(store: HubStore) -> None:
    service = IngestService(store, clock=lambda: 7)

    async def run() -> Ack:
        transport = InProcTransport(service.handle)
        await transport.send(Batch("gw1", 0, (summaries_entry(1), frame_entry(2)), {}))
        ack = await anext(aiter(transport.receive()))
        await transport.close()
        return ack

    assert asyncio.run(run()) == Ack("gw1", upto_seq=2, accepted=2)
    assert store.totals()["nodes"]["gw1"]["samples"] == 4020


def test_http_transport_against_the_served_app(store: HubStore) -> None:
    # The node's real uplink (http.client, its own content type) against uvicorn.
    with BackgroundServer(create_app(store)) as server:

        async def run() -> list[Ack]:
            transport = HttpTransport(server.url, timeout_s=5.0)
            acks = []
            for _ in range(2):
                await transport.send(Batch("gw9", 0, (summaries_entry(1),), {"up": 1}))
                acks.append(await anext(aiter(transport.receive())))
            await transport.close()
            return acks

        first, second = asyncio.run(run())
    assert (first.accepted, first.upto_seq) == (1, 1)
    assert (second.duplicates, second.upto_seq) == (1, 1)
    assert [s.count for s in store.summaries(node="gw9")] == [2000, 10, 2000, 10]

"""Document entries through ingest: shadow measurements sent by nodes as outbox entries
are stored, queryable, and become evidence of the running rollout (a bad canary is
rolled back by what the nodes measured); malformed documents are dead-lettered with a
reason naming the field, beside valid entries that are kept."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgeloop.hub.store import HubStore
from edgeloop.node.shadow import KIND_MEASUREMENT, ShadowMonitor
from edgeloop.outbox.base import Entry, Priority
from edgeloop.pipeline.types import Scores
from edgeloop.telemetry import codec
from edgeloop.transport.base import Batch

from ._control_helpers import SEC, Clock, make_client, ok
from .test_fleet_api import POLICY, start_canary


@pytest.fixture
def clock() -> Clock:
    return Clock()


def scores(n: int, value: float) -> Scores:
    return Scores(
        score=np.full(n, value, np.float32),
        threshold=0.5,
        confidence=np.ones(n, np.float32),
        top_feature=np.full(n, -1, np.int32),
        detector="m",
    )


def measurement_entry(
    node: str, seq: int, acting: str, shadow: str, start_ns: int, *, alert_all: bool
) -> Entry:
    """A real node's measurement entry: the shadow monitor over one period of scores
    (the acting model quiet; ``alert_all`` makes the ``bad`` side alert on every window)."""
    mon = ShadowMonitor(node)
    mon.begin(acting, shadow, start_ns)
    quiet, loud = scores(200, 0.1), scores(200, 0.9 if alert_all else 0.1)
    champion, challenger = (loud, quiet) if acting == "bad" else (quiet, loud)
    mon("g", champion, challenger, 1_000_000, 1_000_000)
    new = mon.take(start_ns + 60 * SEC)
    assert new is not None and new.kind == KIND_MEASUREMENT
    return Entry(seq, new.priority, new.kind, new.payload, new.samples, new.created_ns)


def send(client: Any, node: str, entries: list[Entry]) -> Any:
    body = codec.encode_batch(Batch(node, entries[0].seq - 1, tuple(entries), {}, sent_ns=1))
    r = client.post("/v1/ingest", content=body)
    assert r.status_code == 200, r.text
    return codec.decode_ack(r.content)


def test_measurements_sent_by_canary_nodes_roll_a_bad_model_back(
    store: HubStore, clock: Clock
) -> None:
    client = make_client(store, clock)
    started = start_canary(client, "bad", 3)
    acting = started["acting"]
    assert len(acting) == 2
    clock.advance(60)
    for node in acting:  # the canary acts on "bad", the champion runs in its shadow
        entry = measurement_entry(node, 1, "bad", "v1", started["started_ns"], alert_all=True)
        ack = send(client, node, [entry])
        assert (ack.accepted, ack.rejected, ack.upto_seq) == (1, 0, 1)
    (rollout,) = ok(client.get("/v1/rollouts"))["rollouts"]
    assert rollout["outcome"] == "rolled_back", rollout
    assert rollout["peak_acting"] == 2
    assert "alert" in rollout["decisions"][-1]["reason"]

    docs = ok(client.get("/v1/documents", params={"kind": "measurement"}))
    assert sorted(d["node"] for d in docs) == sorted(acting)
    assert all(d["body"]["acting"] == "bad" and d["body"]["windows"] == 200 for d in docs)
    assert client.get("/v1/documents", params={"kind": "nope"}).status_code == 422


def test_a_redelivered_measurement_is_stored_once_and_counted_once(
    store: HubStore, clock: Clock
) -> None:
    client = make_client(store, clock)
    policy = {**POLICY, "evidence": {"min_windows": 1000, "min_nodes": 1}}
    started = start_canary(client, "v2", 2, policy)
    node = started["acting"][0]
    clock.advance(60)
    entry = measurement_entry(node, 1, "v2", "v1", started["started_ns"], alert_all=False)
    assert send(client, node, [entry]).accepted == 1
    assert send(client, node, [entry]).duplicates == 1  # a lost ack: the batch again
    (rollout,) = ok(client.get("/v1/rollouts"))["rollouts"]
    assert rollout["outcome"] == "running"
    assert rollout["evidence"]["windows"] == 200  # counted once, not 400
    assert len(ok(client.get("/v1/documents", params={"kind": "measurement"}))) == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"\xff not json", "measurement.payload"),
        (b"[1, 2]", "measurement.payload"),
        (b'{"schema": "other/1"}', "measurement.schema"),
        (
            b'{"schema": "edgeloop.shadow-measurement/1", "period_end_ns": -5}',
            "measurement.period_end_ns",
        ),
        (
            b'{"schema": "edgeloop.shadow-measurement/1", "period_end_ns": 5, '
            b'"shadow": "a", "acting": "b"}',
            "measurement.payload",
        ),
    ],
)
def test_a_malformed_measurement_is_dead_lettered_beside_kept_entries(
    store: HubStore, clock: Clock, payload: bytes, field: str
) -> None:
    client = make_client(store, clock)
    good = measurement_entry("gw1", 2, "v1", "v2", clock.now_ns, alert_all=False)
    bad = Entry(1, Priority.SUMMARY, KIND_MEASUREMENT, payload)
    ack = send(client, "gw1", [bad, good])
    assert (ack.accepted, ack.rejected, ack.upto_seq) == (1, 1, 2)
    (dead,) = ok(client.get("/v1/dead_letters"))
    assert dead["field"] == field and dead["reason"] == "malformed", dead
    assert [d["seq"] for d in ok(client.get("/v1/documents", params={"kind": "measurement"}))] == [
        2
    ]

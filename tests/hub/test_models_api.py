"""The model registry over HTTP, on SQLite and PostgreSQL: register, sign, download by
ranges, verify with the served key; promote and rollback as deployment events; errors;
a restarted hub keeps everything."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from edgeloop.desired import missing_ranges
from edgeloop.hub.keys import KEY_FILE, hub_key
from edgeloop.hub.model_tables import CHUNK
from edgeloop.hub.models_api import parse_range
from edgeloop.hub.store import HubStore
from edgeloop.registry import artifact_id
from edgeloop.security import ArtifactMismatchError, KeyFileError, Signature, verify_artifact

from ._control_helpers import Clock, make_client, ok, register, served_keys, trained


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_register_sign_download_by_ranges_and_verify_with_the_served_key(
    store: HubStore, clock: Clock
) -> None:
    client = make_client(store, clock)
    data, manifest = trained("v1", 1)
    up = client.put(f"/v1/artifacts/{manifest.artifact}", content=data)
    assert ok(up, 201) == {"artifact": manifest.artifact, "size": len(data), "created": True}
    again = client.put(f"/v1/artifacts/{manifest.artifact}", content=data)
    assert ok(again)["created"] is False  # content-addressed: stored once
    shown = ok(client.post("/v1/models", json={"manifest": manifest.to_dict(), "actor": "a"}), 201)
    assert shown["manifest_text"].encode() == manifest.canonical_bytes()
    assert shown["signature"]["key_id"] in served_keys(client)
    raw = client.get("/v1/models/v1/manifest")
    assert raw.content == manifest.canonical_bytes()  # the exact signed bytes
    assert ok(client.get("/v1/models/v1/signature")) == shown["signature"]
    assert client.get("/v1/models/nope/manifest").status_code == 404

    # A node fetches the artifact in chunk-aligned ranges, as desired.missing_ranges plans.
    got = bytearray(len(data))
    for start, end in missing_ranges(len(data), (), 1000):
        r = client.get(
            f"/v1/artifacts/{manifest.artifact}", headers={"Range": f"bytes={start}-{end - 1}"}
        )
        assert r.status_code == 206
        assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{len(data)}"
        assert r.headers["etag"] == f'"{manifest.artifact}"'
        got[start:end] = r.content
    checked = verify_artifact(
        shown["manifest_text"].encode(),
        Signature.from_dict(shown["signature"]),
        served_keys(client),
        bytes(got),
    )
    assert checked == manifest
    # A flipped byte is caught by the same check.
    got[len(got) // 2] ^= 1
    with pytest.raises(ArtifactMismatchError):
        verify_artifact(
            shown["manifest_text"].encode(),
            Signature.from_dict(shown["signature"]),
            served_keys(client),
            bytes(got),
        )


def test_ranges_across_chunks_suffixes_if_range_and_unsatisfiable(store: HubStore) -> None:
    client = make_client(store, Clock())
    data = os.urandom(2 * CHUNK + 1234)
    aid = artifact_id(data)
    ok(client.put(f"/v1/artifacts/{aid}", content=data), 201)
    url = f"/v1/artifacts/{aid}"
    full = client.get(url)
    assert full.status_code == 200 and full.content == data
    assert full.headers["accept-ranges"] == "bytes"
    for a, b in [(CHUNK - 10, CHUNK + 10), (0, 2 * CHUNK + 1233), (2 * CHUNK, 2 * CHUNK + 1233)]:
        r = client.get(url, headers={"Range": f"bytes={a}-{b}"})
        assert r.status_code == 206 and r.content == data[a : b + 1]
    tail = client.get(url, headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == data[-100:]
    open_end = client.get(url, headers={"Range": f"bytes={CHUNK}-"})
    assert open_end.content == data[CHUNK:]
    stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"sha256:other"'})
    assert stale.status_code == 200 and stale.content == data
    for bad in (f"bytes={len(data)}-", "bytes=0-1,5-6", "items=0-1"):
        r = client.get(url, headers={"Range": bad})
        assert r.status_code == 416, bad
        assert r.headers["content-range"] == f"bytes */{len(data)}"
    assert client.get("/v1/artifacts/sha256:" + "0" * 64).status_code == 404


def test_parse_range_edges() -> None:
    assert parse_range("bytes=0-0", 10) == (0, 1)
    assert parse_range("bytes=5-100", 10) == (5, 10)
    assert parse_range("bytes=-3", 10) == (7, 10)
    assert parse_range("bytes=-0", 10) is None
    assert parse_range("bytes=3-2", 10) is None
    assert parse_range("bytes=0-", 0) is None


def test_bad_uploads_and_manifests_are_refused_with_what_and_where(store: HubStore) -> None:
    client = make_client(store, Clock())
    data, manifest = trained("v1", 1)
    r = client.put(f"/v1/artifacts/{manifest.artifact}", content=data + b"x")
    assert r.status_code == 422 and r.json()["error"]["reason"] == "hash_mismatch"
    # Not uploaded yet: 404 naming the artifact and what to do.
    r = client.post("/v1/models", json={"manifest": manifest.to_dict(), "actor": "a"})
    assert r.status_code == 404
    assert manifest.artifact in r.json()["error"]["detail"] and "PUT" in r.json()["error"]["detail"]
    client.put(f"/v1/artifacts/{manifest.artifact}", content=data)
    bad = {**manifest.to_dict(), "size": -1}
    r = client.post("/v1/models", json={"manifest": bad, "actor": "a"})
    assert r.status_code == 422 and "size" in r.json()["error"]["detail"]
    wrong_size = {**manifest.to_dict(), "size": len(data) + 1}
    r = client.post("/v1/models", json={"manifest": wrong_size, "actor": "a"})
    assert r.status_code == 422 and "bytes" in r.json()["error"]["detail"]
    r = client.post(
        "/v1/models", json={"manifest": {**manifest.to_dict(), "bogus": 1}, "actor": "a"}
    )
    assert r.status_code == 422 and "bogus" in r.json()["error"]["detail"]
    ok(client.post("/v1/models", json={"manifest": manifest.to_dict(), "actor": "a"}), 201)
    r = client.post("/v1/models", json={"manifest": manifest.to_dict(), "actor": "a"})
    assert r.status_code == 409 and "already registered" in r.json()["error"]["detail"]
    orphan = trained("v9", 9, parent="nope")
    client.put(f"/v1/artifacts/{orphan[1].artifact}", content=orphan[0])
    r = client.post("/v1/models", json={"manifest": orphan[1].to_dict(), "actor": "a"})
    assert r.status_code == 409 and r.json()["error"]["field"] == "parent"


def test_promote_rollback_and_aliases_are_deployment_events(store: HubStore, clock: Clock) -> None:
    client = make_client(store, clock)
    register(client, "v1", 1)
    register(client, "v2", 2, parent="v1")
    assert client.post("/v1/rollback", json={"actor": "bob"}).status_code == 409
    ok(client.post("/v1/models/v1/promote", json={"actor": "bob", "reason": "first"}))
    clock.advance(60)
    ok(client.put("/v1/aliases/challenger", json={"version": "v2", "actor": "bob"}))
    ok(client.post("/v1/models/challenger/promote", json={"actor": "carol", "reason": "better"}))
    assert ok(client.get("/v1/aliases")) == {"champion": "v2"}  # promoting it cleared challenger
    clock.advance(60)
    ok(client.post("/v1/rollback", json={"actor": "dave", "reason": "alarms"}))
    assert ok(client.get("/v1/models/champion"))["version"] == "v1"

    events = ok(client.get("/v1/deployments"))["events"]
    assert [(e["seq"], e["kind"], e["version"], e["actor"]) for e in events] == [
        (1, "registered", "v1", "alice"),
        (2, "registered", "v2", "alice"),
        (3, "promoted", "v1", "bob"),
        (4, "alias_set", "v2", "bob"),
        (5, "promoted", "v2", "carol"),
        (6, "rolled_back", "v1", "dave"),
    ]
    assert events[5]["previous"] == "v2" and events[5]["reason"] == "alarms"
    assert events[5]["at_ns"] - events[4]["at_ns"] == 60 * 10**9
    assert "manifest" not in events[0]["detail"] and "signature" in events[0]["detail"]
    promoted = ok(client.get("/v1/deployments", params={"kind": "promoted"}))["events"]
    assert [e["version"] for e in promoted] == ["v1", "v2"]
    v2 = ok(client.get("/v1/models/v2"))
    assert v2["lineage"] == ["v2", "v1"] and {e["kind"] for e in v2["history"]} >= {"promoted"}
    listing = ok(client.get("/v1/models"))
    assert listing["champions"] == ["v1"] and [v["version"] for v in listing["versions"]] == [
        "v1",
        "v2",
    ]
    diff = ok(client.get("/v1/models/diff", params={"a": "v1", "b": "v2"}))
    paths = {c["path"] for c in diff["changes"]}
    assert {"version", "parent", "artifact", "metrics.recall"} <= paths


def test_alias_conflicts_and_unknown_names(store: HubStore) -> None:
    client = make_client(store, Clock())
    register(client, "v1", 1)
    r = client.put("/v1/aliases/champion", json={"version": "v1", "actor": "a"})
    assert r.status_code == 409 and "promote" in r.json()["error"]["detail"]
    r = client.put("/v1/aliases/v1", json={"version": "v1", "actor": "a"})
    assert r.status_code == 409 and "version name" in r.json()["error"]["detail"]
    ok(client.put("/v1/aliases/stable", json={"version": "v1", "actor": "a"}))
    assert client.put("/v1/aliases/stable", json={"version": "v1", "actor": "a"}).status_code == 409
    assert client.put("/v1/aliases/x", json={"version": "nope", "actor": "a"}).status_code == 404
    assert client.post("/v1/models/nope/promote", json={"actor": "a"}).status_code == 404
    assert client.get("/v1/models/nope").status_code == 404
    assert client.get("/v1/models/diff", params={"a": "v1", "b": "nope"}).status_code == 404
    assert client.delete("/v1/aliases/none", params={"actor": "a"}).status_code == 404
    ok(client.delete("/v1/aliases/stable", params={"actor": "a"}))
    assert client.post("/v1/models/v1/promote", json={"actor": ""}).status_code == 422


def test_a_restarted_hub_keeps_registry_and_signing_key(
    db_url: str, tmp_path: Path, clock: Clock
) -> None:
    key = hub_key(tmp_path / "data")
    store = HubStore.open(db_url)
    first = make_client(store, clock, key)
    register(first, "v1", 1)
    register(first, "v2", 2, parent="v1")
    ok(first.post("/v1/models/v1/promote", json={"actor": "a"}))
    ok(first.post("/v1/models/v2/promote", json={"actor": "a"}))
    before = ok(first.get("/v1/deployments"))
    store.close()

    again = HubStore.open(db_url)
    second = make_client(again, clock, hub_key(tmp_path / "data"))
    assert ok(second.get("/v1/deployments")) == before
    assert ok(second.get("/v1/models"))["champions"] == ["v1", "v2"]
    ok(second.post("/v1/rollback", json={"actor": "a"}))  # the champion history came back too
    shown = ok(second.get("/v1/models/v2"))
    data, _ = trained("v2", 2)
    assert ok(second.get("/v1/keys"))["keys"][0]["key_id"] == key.key_id
    verify_artifact(
        shown["manifest_text"].encode(),
        Signature.from_dict(shown["signature"]),
        served_keys(second),
        second.get(f"/v1/artifacts/{shown['artifact']}").content,
    )
    assert data == second.get(f"/v1/artifacts/{shown['artifact']}").content
    again.close()


def test_hub_key_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    a = hub_key(tmp_path / "d")
    path = tmp_path / "d" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert hub_key(tmp_path / "d").key_id == a.key_id
    assert hub_key(key_path=path).key_id == a.key_id
    assert [p.name for p in path.parent.iterdir()] == [KEY_FILE]
    with pytest.raises(KeyFileError, match=r"missing\.pem"):
        hub_key(key_path=tmp_path / "missing.pem")


def test_openapi_lists_the_model_and_fleet_routes(store: HubStore) -> None:
    paths = ok(make_client(store, Clock()).get("/openapi.json"))["paths"]
    for p in (
        "/v1/models",
        "/v1/models/{ref}/promote",
        "/v1/artifacts/{artifact}",
        "/v1/nodes/{node}/desired",
        "/v1/nodes/{node}/actual",
        "/v1/fleet/status",
        "/v1/keys",
        "/v1/ingest",
    ):
        assert p in paths, p


def test_two_hubs_on_one_database_share_the_registry_and_never_fork_its_log(
    db_url: str, tmp_path: Path
) -> None:
    key = hub_key(tmp_path / "data")
    stores = [HubStore.open(db_url), HubStore.open(db_url)]
    a, b = (make_client(s, Clock(), key) for s in stores)
    register(a, "v1", 1)
    register(b, "v2", 2, parent="v1")  # b's cache catches up with a's event first
    ok(b.post("/v1/models/v1/promote", json={"actor": "b"}))
    assert ok(a.get("/v1/aliases")) == {"champion": "v1"}

    # Both promote v2 at once: the commands serialize; exactly one wins, the other is
    # told v2 is already the champion.
    results: list[int] = []

    def promote(client: Any) -> None:
        results.append(client.post("/v1/models/v2/promote", json={"actor": "x"}).status_code)

    threads = [threading.Thread(target=promote, args=(c,)) for c in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 409]
    seqs = [e["seq"] for e in ok(a.get("/v1/deployments"))["events"]]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == 4
    assert ok(b.get("/v1/deployments")) == ok(a.get("/v1/deployments"))
    for s in stores:
        s.close()

"""A real gateway process sends curated normal windows: with ``models.samples`` set, each
measurement period's ``sample`` document reaches the hub through the outbox and the
uplink, carries the acting model's feature rows, stays under its byte cap, and the
gateway stays lean."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
from _gateway_probe import RSS_BOUND_MB, run_gateway
from test_node_reconcile_stub import StubHub, desired, signed_models, trusted_key_file, write_spec

from edgeloop.hub.app import create_app
from edgeloop.hub.server import BackgroundServer
from edgeloop.hub.store import HubStore
from edgeloop.node.samples import sample_rows


def test_a_gateway_process_uploads_curated_samples(tmp_path: Path) -> None:
    m = signed_models()
    cfg = {
        "node_id": "gw1",
        "pipeline": str(write_spec(tmp_path)),
        "outbox": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
        "uplink": {"kind": "http", "url": "INGEST"},
        "models": {
            "dir": str(tmp_path / "models"),
            "trusted_keys": [str(trusted_key_file(tmp_path))],
            "hub_url": "HUB",
            "reconcile_every_s": 0.5,
            "measure_every_s": 1.5,
            "samples": {"max_rows": 40, "max_bytes": 4096, "seed": 1},
        },
        "sources": [
            {
                "type": "sim",
                "seed": 3,
                "tick_s": 0.1,
                "factory": {"generate": {"n_machines": 3, "gateway": "gw1", "seed": 3}},
            }
        ],
    }
    store = HubStore("sqlite://")
    store.create_all()
    with StubHub() as hub, BackgroundServer(create_app(store)) as ingest:
        cfg["uplink"]["url"] = ingest.url  # type: ignore[index]
        hub.publish(m["v1"], m["bad"])
        hub.desired["gw1"] = desired("gw1", 1, "v1")
        cfg["models"]["hub_url"] = hub.url  # type: ignore[index]
        res, stats = run_gateway(cfg, tmp_path, duration_s=7)
        docs = store.documents("sample", "gw1")
        dead = store.dead_letters("gw1", 100)
    store.close()
    assert stats["models"]["status"] == "converged", stats["models"]
    assert dead == []
    assert len(docs) >= 2, [d.body.get("rows") for d in docs]
    names = docs[0].body["feature_names"]
    for d in docs:
        b = d.body
        x = sample_rows(b)
        assert (b["node"], b["version"], b["feature_names"]) == ("gw1", "v1", names)
        assert 1 <= x.shape[0] <= 40 and np.isfinite(x).all()
        assert b["eligible"] >= x.shape[0] and b["windows"] >= b["eligible"]
        assert len(json.dumps(b, sort_keys=True, separators=(",", ":"))) <= 4096
    # Periods follow each other without a gap or an overlap.
    ends = [(d.body["period_start_ns"], d.body["period_end_ns"]) for d in docs]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ends))
    assert "cryptography" not in set(res["modules"])
    assert res["rss"] < RSS_BOUND_MB, f"gateway peak RSS {res['rss']:.1f} MB"

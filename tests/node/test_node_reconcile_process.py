"""A real gateway process with model delivery configured: it converges on the hub's
desired models (verifying them in a child), runs a shadow, and stays lean.

``python -m edgeloop.node --config gw.yaml`` as a human starts it, against the stub hub on
loopback; afterwards the probe inspects what the gateway loaded and its peak memory.
"""

from __future__ import annotations

from pathlib import Path

from _gateway_probe import RSS_BOUND_MB, run_gateway
from test_node_reconcile_stub import StubHub, desired, signed_models, trusted_key_file, write_spec

from edgeloop.hub.app import create_app
from edgeloop.hub.server import BackgroundServer
from edgeloop.hub.store import HubStore


def test_a_gateway_process_converges_verifies_in_a_child_and_keeps_cryptography_out(
    tmp_path: Path,
) -> None:
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
            "measure_every_s": 2.0,
            "chunk_bytes": 1024,
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
    # Telemetry goes to a real hub's ingest; desired state and models come from the stub.
    store = HubStore("sqlite://")
    store.create_all()
    with StubHub() as hub, BackgroundServer(create_app(store)) as ingest:
        cfg["uplink"]["url"] = ingest.url  # type: ignore[index]
        hub.publish(m["v1"], m["bad"])
        hub.desired["gw1"] = desired("gw1", 1, "v1", shadow="bad")
        hub.cut_after = [200, None, 600]
        cfg["models"]["hub_url"] = hub.url  # type: ignore[index]
        res, stats = run_gateway(cfg, tmp_path, duration_s=8)
    store.close()
    models = stats["models"]
    assert models["status"] == "converged", models
    assert [(s["version"], s["mode"]) for s in models["active"]] == [
        ("v1", "act"),
        ("bad", "shadow"),
    ]
    assert hub.actual[-1]["status"] == "converged"
    assert sum(r[3] for r in hub.ranges) == 2  # the link was cut twice and resumed
    # The shadow alerted on every window it saw; none of that reached an action.
    assert stats["actions"] == {}
    # The verification ran in a child: the gateway never loaded cryptography.
    loaded = set(res["modules"])
    assert "cryptography" not in loaded and "onnxruntime" in loaded
    assert res["rss"] < RSS_BOUND_MB, f"gateway peak RSS {res['rss']:.1f} MB"

"""A running gateway imports only what it needs and stays small.

Runs a real node (simulator source, robust + ONNX detectors, SQLite outbox, HTTP uplink
to a hub) in a fresh interpreter for a few seconds and inspects what it loaded and its
peak resident memory.
"""

from __future__ import annotations

from pathlib import Path

from _gateway_probe import RSS_BOUND_MB, run_gateway

from edgeloop.hub.app import create_app
from edgeloop.hub.server import BackgroundServer
from edgeloop.hub.store import HubStore
from edgeloop.node.build import resolve_spec
from edgeloop.scenarios.plan import plan_floor
from edgeloop.scenarios.training import train_edge_models

FORBIDDEN = (
    "sklearn",
    "skl2onnx",
    "onnx",
    "scipy",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "typer",
    "rich",
    "httpx",
    "river",
    "pandas",
    # Validation is a launcher's job: the node runs a plan (docs/footprint.md).
    "pydantic",
    "pydantic_core",
    "yaml",
    "annotated_types",
    # The HTTP uplink is its own small client, not http.client (which pulls in email).
    "email",
)

# Issue #2 asks for < 80 MB resident. This probe peaks at ~67 MB total / 32 MB private
# in a long-lived venv; a fresh install maps ~8 MB more of the same shared libraries
# (page cache, see docs/footprint.md), which the total must absorb. The private part does
# not depend on the page cache: its bound is the tight one.
PRIVATE_BOUND_MB = 38.0

# The node runs exactly as a human starts it: see _gateway_probe.py.


def test_gateway_imports_no_hub_or_training_stack_and_stays_small(tmp_path: Path) -> None:
    plan = plan_floor(1, 6, 30.0, 0, seed=1, partition=None)
    spec = train_edge_models(plan, tmp_path, seed=1, seconds=40)
    assert any(d.type == "onnx" for d in resolve_spec(str(spec)).detectors)
    cfg = {
        "node_id": "gw1",
        "pipeline": str(spec),
        "outbox": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
        "uplink": {"kind": "http", "url": "HUB"},
        "sources": [
            {
                "type": "sim",
                "seed": 1,
                "tick_s": 0.1,
                "factory": {"generate": {"n_machines": 6, "gateway": "gw1", "seed": 1}},
            }
        ],
    }
    store = HubStore("sqlite://")
    store.create_all()
    with BackgroundServer(create_app(store)) as hub:
        cfg["uplink"]["url"] = hub.url  # type: ignore[index]
        res, stats = run_gateway(cfg, tmp_path, duration_s=4)
    store.close()
    assert stats["windows"] > 0
    loaded = set(res["modules"])
    assert not loaded & set(FORBIDDEN), sorted(loaded & set(FORBIDDEN))
    assert "onnxruntime" in loaded  # the edge model really runs
    assert res["rss"] < RSS_BOUND_MB, f"gateway peak RSS {res['rss']:.1f} MB"
    assert res["private"] < PRIVATE_BOUND_MB, f"gateway private memory {res['private']:.1f} MB"

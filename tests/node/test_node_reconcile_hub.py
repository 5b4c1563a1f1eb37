"""The node's reconciler against the real hub (FastAPI app, SQLite store) over HTTP.

The hub signs what is registered with its own key; the node trusts the key the hub
serves at ``/v1/keys``. A node unknown to the hub joins its group by reporting, gets its
document, downloads through a link that is cut mid-artifact, verifies in the child
process, swaps; then the group moves to another model with the first in shadow, and back.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest
from test_node_reconcile import Node
from test_node_reconcile_stub import GROUP, signed_models

from edgeloop._plain import to_plain
from edgeloop.errors import ConfigError, LinkDown
from edgeloop.hub.app import create_app
from edgeloop.hub.server import BackgroundServer
from edgeloop.hub.store import HubStore
from edgeloop.node.fetch import ControlClient
from edgeloop.registry import Manifest
from edgeloop.sim.netproxy import NetProxy


def test_a_node_joins_converges_and_follows_its_group_on_the_real_hub(tmp_path: Path) -> None:
    m = signed_models()
    store = HubStore("sqlite://")
    store.create_all()
    app = create_app(store)
    plane = app.state.control
    for v in ("v1", "v2"):
        plane.put_artifact(m[v].data)
        plane.register(Manifest.from_bytes(m[v].manifest).to_dict(), "test")
    plane.set_group("line-a", act="v1")
    with BackgroundServer(app) as hub:
        with urllib.request.urlopen(f"{hub.url}/v1/keys") as reply:
            pem = json.loads(reply.read())["keys"][0]["pem"]
        proxy = NetProxy("127.0.0.1", hub.port).start_in_thread()
        try:
            node = Node(tmp_path, hub)  # type: ignore[arg-type]
            host, port = proxy.address
            node.rec.client = ControlClient(f"http://{host}:{port}", timeout_s=5.0)
            (tmp_path / "models").mkdir(exist_ok=True)
            key = tmp_path / "hub-served.pem"
            key.write_text(pem)
            node.rec.trusted_keys = [str(key)]
            node.rec.fleet_group = "line-a"

            async def scenario() -> tuple[list[str], int]:
                # Unknown to the hub: the first round has no document and reports, joining.
                details = [(await node.rec.round()).detail]
                proxy.set_delay(0.05)

                async def cut_mid_artifact() -> None:
                    while node.rec.bytes_downloaded == 0:
                        await asyncio.sleep(0.001)
                    proxy.cut()  # the link drops after the first chunk arrived
                    await asyncio.sleep(0.3)
                    proxy.restore()

                cutter = asyncio.create_task(cut_mid_artifact())
                failed = 0
                for _ in range(40):
                    try:
                        rep = await node.rec.round()
                    except LinkDown:
                        failed += 1
                        await asyncio.sleep(0.05)  # Reconciler.run backs off likewise
                        continue
                    if rep.status == "converged" and rep.actual_generation > 0:
                        break
                await cutter
                details.append(rep.status)
                return details, failed

            node.rec.chunk_size = 1024
            seen, failed = asyncio.run(scenario())
        finally:
            proxy.stop_thread()
        assert seen == ["no desired state yet", "converged"] and failed >= 1
        assert node.rec.bytes_downloaded == len(m["v1"].data)  # resumed, nothing twice
        assert node.acting().name == "v1"
        status = plane.status()
        row = next(r for r in status["nodes"] if r["node"] == "gw1")
        assert row["in_sync"] and row["actual_version"] == "v1"

        # The group moves to v2 with v1 in shadow, then back to v1 alone (direct link).
        node.rec.client = ControlClient(hub.url)
        plane.set_group("line-a", act="v2", shadow="v1")
        rep = asyncio.run(node.converge())
        assert rep.status == "converged" and node.acting().name == "v2"
        assert node.core.pipeline.shadow(GROUP) is not None
        plane.set_group("line-a", act="v1")
        rep = asyncio.run(node.converge())
        assert rep.status == "converged" and node.acting().name == "v1"
        assert node.core.pipeline.shadow(GROUP) is None
        row = next(r for r in plane.status()["nodes"] if r["node"] == "gw1")
        assert row["in_sync"] and row["actual_version"] == "v1"

        # The group's pipeline config changes: the node applies it live, the delivered
        # model keeps acting (same object), the changed detector is rebuilt.
        own = node.core.pipeline.spec
        acting = node.acting()
        spec = node.rec.switch.own_plan
        tuned = to_plain(spec)
        for d in tuned["detectors"]:  # the spec an operator sends: no model path but ONNX's
            if d["model"] is None:
                del d["model"]
            if d["type"] == "robust":
                d["params"]["z_threshold"] = 4.5
        plane.set_group("line-a", act="v1", pipeline=tuned)
        rep = asyncio.run(node.converge())
        doc = node.rec.actual_doc(rep)
        assert rep.status == "converged" and doc["pipeline_applied"], doc
        assert node.core.pipeline.spec != own and node.acting() is acting
        assert all(
            d.params["z_threshold"] == 4.5
            for d in node.core.pipeline.spec.detectors
            if d.type == "robust"
        )
        # A summary period change cannot be applied live: refused, reported, nothing changes.
        running = node.core.pipeline.spec
        plane.set_group("line-a", act="v1", pipeline={**tuned, "summaries": {"period_s": 5.0}})
        rep = asyncio.run(node.converge())
        doc = node.rec.actual_doc(rep)
        assert not doc["pipeline_applied"] and "summaries" in doc["pipeline_error"], doc
        assert node.core.pipeline.spec is running
        row = next(r for r in plane.status()["nodes"] if r["node"] == "gw1")
        assert "pipeline config refused: summaries" in row["detail"], row
        # An invalid spec never reaches a node: the hub names the field.
        bad = {**tuned, "windows": [{"group": "x", "size": -1}]}
        with pytest.raises(ConfigError, match="size"):
            plane.set_group("line-a", act="v1", pipeline=bad)
        # {} returns the node to its own configured pipeline.
        plane.set_group("line-a", act="v1")
        rep = asyncio.run(node.converge())
        assert node.rec.actual_doc(rep)["pipeline_applied"]
        assert node.core.pipeline.spec == own and node.acting() is acting
    store.close()

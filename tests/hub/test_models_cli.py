"""``edgeloop models`` and ``edgeloop fleet`` against a real hub served over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.hub.app import create_app
from edgeloop.hub.client import HubClient, HubError
from edgeloop.hub.server import BackgroundServer
from edgeloop.hub.store import HubStore
from edgeloop.security import PrivateKey

from ._control_helpers import Clock, HttpNode, make_client, ok, register, trained

runner = CliRunner()


@pytest.fixture
def hub(store: HubStore) -> Iterator[str]:
    """URL of a hub with v1 (champion) and v2 registered and node gw1 on line-a."""
    clock = Clock()
    key = PrivateKey.generate()
    setup = make_client(store, clock, key)
    register(setup, "v1", 1)
    register(setup, "v2", 2, parent="v1")
    ok(setup.post("/v1/models/v1/promote", json={"actor": "setup"}))
    ok(setup.put("/v1/groups/line-a", json={"act": "champion"}))
    node = HttpNode(setup, "gw1", "line-a", chunk=1024)
    node.report()  # joins line-a
    node.converge()
    with BackgroundServer(create_app(store, clock=clock, signing_key=key)) as server:
        yield server.url


def cli(hub: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--hub", hub])
    return result.exit_code, result.output


def test_list_show_diff_as_tables_and_json(hub: str) -> None:
    code, out = cli(hub, "models", "list")
    assert code == 0 and "v1" in out and "champion" in out and "2 versions" in out
    code, out = cli(hub, "models", "list", "--json")
    data = json.loads(out)
    assert [v["version"] for v in data["versions"]] == ["v1", "v2"]
    code, out = cli(hub, "models", "show", "champion", "--json")
    shown = json.loads(out)
    assert shown["version"] == "v1" and shown["signature"]["algorithm"] == "ed25519"
    code, out = cli(hub, "models", "show", "v2")
    assert code == 0 and "lineage" in out and "v2 <- v1" in out
    code, out = cli(hub, "models", "diff", "v1", "v2", "--json")
    assert {"parent", "version"} <= {c["path"] for c in json.loads(out)["changes"]}


def test_promote_and_rollback_then_fleet_status_shows_drift(hub: str) -> None:
    code, out = cli(hub, "fleet", "status", "--json")
    status = json.loads(out)
    assert code == 0 and status["in_sync"] == 1 and status["nodes"][0]["actual_version"] == "v1"
    code, out = cli(hub, "models", "promote", "v2", "--actor", "carol", "--reason", "better")
    assert code == 0 and "promoted" in out
    code, out = cli(hub, "fleet", "status")
    assert code == 0 and "drifting" in out and "gw1" in out
    status = json.loads(cli(hub, "fleet", "status", "--json")[1])
    assert status["nodes"][0]["desired_version"] == "v2" and status["drifting"] == 1
    code, out = cli(hub, "models", "rollback", "--json")
    assert code == 0 and json.loads(out)["events"][0]["version"] == "v1"
    assert json.loads(cli(hub, "fleet", "status", "--json")[1])["in_sync"] == 1


def test_errors_are_one_line_with_the_hubs_reason(hub: str) -> None:
    code, out = cli(hub, "models", "show", "nope")
    assert code == 1 and "404 unknown (version)" in out and "'nope'" in out
    code, out = cli(hub, "models", "promote", "v1")
    assert code == 1 and "409" in out and "already the champion" in out
    code, out = cli("http://127.0.0.1:9", "models", "list")
    assert code == 2 and "unreachable" in out


def test_the_client_registers_a_version_and_the_cli_shows_it(hub: str) -> None:
    data, manifest = trained("v3", 3, parent="v2")
    with HubClient(hub) as client:
        shown = client.register(data, manifest.to_dict(), "retrain", "drift")
        assert shown["version"] == "v3" and shown["lineage"] == ["v3", "v2", "v1"]
        with pytest.raises(HubError) as info:
            client.register(data, manifest.to_dict(), "retrain")
        assert (info.value.status, info.value.field) == (409, "version")
    code, out = cli(hub, "models", "show", "v3", "--json")
    assert code == 0 and json.loads(out)["history"][0]["actor"] == "retrain"


def test_hub_serve_refuses_a_missing_key_file(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["hub", "serve", "--key", str(tmp_path / "nope.pem"), "--db", "sqlite://"]
    )
    assert result.exit_code == 1 and "nope.pem" in result.output

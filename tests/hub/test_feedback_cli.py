"""``edgeloop events list|label`` and ``edgeloop models retrain|runs`` against a real hub
served over HTTP (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.hub.app import create_app
from edgeloop.hub.server import BackgroundServer
from edgeloop.hub.store import HubStore
from edgeloop.security import PrivateKey

from ._control_helpers import Clock
from .conftest import event, events_item
from .test_retrain import CONFIG, upload_samples, with_champion

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

runner = CliRunner()


@pytest.fixture
def hub(store: HubStore) -> Iterator[str]:
    """A hub with a champion, 10 online nodes, samples from 4 of them and two events."""
    clock = Clock()
    app = create_app(store, clock=clock, signing_key=PrivateKey.generate(), retrain_config=CONFIG)
    setup = TestClient(app)
    with_champion(setup)
    upload_samples(setup, clock, [f"gw{i:02d}" for i in range(4)], load=1.4)
    store.ingest("gw09", 0, [events_item(1, [event("m01"), event("m02")])], {}, now_ns=1)
    with BackgroundServer(app) as server:
        yield server.url


def cli(hub: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--hub", hub], env={"COLUMNS": "250"})
    return result.exit_code, result.output


def test_events_are_listed_and_labelled(hub: str) -> None:
    code, out = cli(hub, "events", "list", "--json")
    assert code == 0
    ids = [e["id"] for e in json.loads(out)]
    assert len(ids) == 2 and all(e["label"] is None for e in json.loads(out))
    code, out = cli(hub, "events", "label", str(ids[0]), "--false", "--note", "load change")
    assert code == 0 and f"event {ids[0]}: false_alarm by operator" in out
    code, out = cli(hub, "events", "label", str(ids[1]), "--true", "--actor", "ann", "--json")
    assert code == 0 and json.loads(out)["label"] == "true_alarm"
    code, out = cli(hub, "events", "list")
    assert code == 0 and "false_alarm" in out and "true_alarm" in out and "ann" in out
    code, out = cli(hub, "events", "label", str(ids[1] + 100), "--true")
    assert code == 1 and "404" in out and "no event" in out
    code, out = cli(hub, "events", "label", str(ids[0]))
    assert code == 2 and "--true or --false" in out


def test_models_retrain_and_runs(hub: str) -> None:
    code, out = cli(hub, "models", "retrain", "--reason", "load went up", "--json")
    assert code == 0, out
    done = json.loads(out)
    assert done["outcome"] == "rolled_out" and done["parent"] == "v1"
    code, out = cli(hub, "models", "retrain", "--since-ns", str(2**62))
    assert code == 1 and "refused" in out and "0 usable sample rows" in out
    code, out = cli(hub, "models", "runs", "--json")
    runs = json.loads(out)["runs"]
    assert [(r["outcome"], r["reason"]) for r in runs] == [
        ("rolled_out", "load went up"),
        ("refused", "by hand"),
    ]
    code, out = cli(hub, "models", "runs")
    assert code == 0 and "rolled_out" in out and "refused" in out and "load went up" in out

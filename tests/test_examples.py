"""The example configs shipped in examples/ stay valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeloop.cli.main import app

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_passes_node_check(path: Path) -> None:
    result = CliRunner().invoke(app, ["node", "check", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output

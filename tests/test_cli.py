"""The ``edgeloop`` command line: help for every command, version, ``node check``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import edgeloop
from edgeloop.cli.main import app

runner = CliRunner()


def walk(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of the app as (path, click command), the root first."""
    yield path, cmd
    for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
        yield from walk(sub, (*path, name))


COMMANDS = dict(walk(typer.main.get_command(app)))


def flat(text: str) -> str:
    """Help text with the box drawing and line wrapping of rich taken out."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_discovery_finds_every_known_command() -> None:
    expected = {
        (),
        ("demo",),
        ("bench",),
        ("version",),
        ("node",),
        ("node", "run"),
        ("node", "check"),
        ("hub",),
        ("hub", "serve"),
        ("eval",),
        ("eval", "nab"),
        ("eval", "skab"),
        ("models",),
        ("models", "list"),
        ("models", "show"),
        ("models", "promote"),
        ("models", "rollback"),
        ("models", "diff"),
        ("fleet",),
        ("fleet", "status"),
    }
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(p) or "edgeloop")
def test_help_works_for_every_command(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert f"Usage: {' '.join(('edgeloop', *path))} [OPTIONS]" in out
    cmd = COMMANDS[path]
    assert cmd.help, f"{' '.join(path)} has no help text"
    first_words = " ".join(cmd.help.split()[:4])
    assert first_words in out
    for name in getattr(cmd, "commands", None) or {}:
        assert re.search(rf"\b{name}\b", out), f"{name} missing from the help of {path}"


def test_no_arguments_shows_help_for_groups() -> None:
    for path in [(), ("node",), ("hub",)]:
        result = runner.invoke(app, list(path))
        assert "Usage:" in result.output
        assert result.exit_code == 2  # click's no_args_is_help exits as a usage error


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout == f"{edgeloop.__version__}\n"
    assert edgeloop.__version__ == dist_version("edgeloop")


def test_node_check_good_config_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text("node_id: gw1\ntier: device\npipeline: factory\n")
    result = runner.invoke(app, ["node", "check", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{path}: ok (node gw1, tier device, pipeline factory)"


def test_node_check_bad_config_exits_2_and_names_each_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "node_id: gw1\nsummary_every_s: -1\nuplink: {kind: http}\nsources:\n  - {type: modbus}\n"
    )
    result = runner.invoke(app, ["node", "check", "-c", str(path)])
    assert result.exit_code == 2
    err = result.stderr
    assert err.startswith(f"{path}:")
    for field in ("summary_every_s:", "uplink.url:", "sources.0:"):
        assert field in err, err
    assert "ok" not in result.stdout


def test_node_check_unknown_pipeline_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    path.write_text("node_id: gw1\npipeline: no-such-preset\n")
    result = runner.invoke(app, ["node", "check", "--config", str(path)])
    assert result.exit_code == 2
    assert "pipeline:" in result.stderr and "no-such-preset" in result.stderr


def test_node_check_bad_yaml_and_missing_file_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("node_id: [\n")
    missing = tmp_path / "missing.yaml"
    for path, words in [(bad, "not valid YAML"), (missing, "cannot read")]:
        result = runner.invoke(app, ["node", "check", "--config", str(path)])
        assert result.exit_code == 2, path
        assert result.stderr.startswith(f"{path}: {words}"), result.stderr


def test_node_check_without_config_is_a_usage_error() -> None:
    result = runner.invoke(app, ["node", "check"])
    assert result.exit_code == 2
    assert "--config" in result.output

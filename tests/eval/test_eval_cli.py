"""``edgeloop eval nab|skab`` as a user runs it: outputs, table, --json, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeloop.cli.main import app

DATA = Path(__file__).parents[2].parent / "shared" / "data"
runner = CliRunner()

UNI = """name: uni
windows:
  - {group: s, sensors: ["*"], size: 1, features: [mean]}
summaries: null
detectors:
  - {group: s, type: robust, params: {warmup: 30, z_threshold: 8.0, log_features: []}}
"""
JOINED = """name: joined
windows:
  - {group: pump, sensors: ["*"], size: 1, features: [mean], join: machine}
summaries: null
detectors:
  - {group: pump, type: robust, params: {warmup: 400, alpha: 0.001, log_features: []}}
"""


@pytest.fixture(scope="module")
def data() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"benchmark data not found at {DATA} (see ../shared/data/README.md)")
    return DATA


def test_eval_nab_writes_results_and_json(data: Path, tmp_path: Path) -> None:
    preset = tmp_path / "uni.yaml"
    preset.write_text(UNI)
    out, js = tmp_path / "out", tmp_path / "nab.json"
    args = ["eval", "nab", "--data", str(data / "nab" / "data"), "--out", str(out)]
    res = runner.invoke(app, [*args, "--preset", str(preset), "--json", str(js)])
    assert res.exit_code == 0, res.output
    assert "standard" in res.output and "scoreboard" in res.output
    figures = json.loads(js.read_text())
    assert figures["files"] == 31 and figures["rows"] == 191_345
    assert set(figures["scoreboard"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    assert figures["samples_per_s"] > 0 and "s/robust" in figures["detector_samples_per_s"]
    assert len(list(out.glob("*/edgeloop_*.csv"))) == 31


def test_eval_skab_writes_outputs_and_json(data: Path, tmp_path: Path) -> None:
    preset = tmp_path / "joined.yaml"
    preset.write_text(JOINED)
    out, js = tmp_path / "out", tmp_path / "skab.json"
    args = ["eval", "skab", "--data", str(data / "skab" / "data"), "--out", str(out)]
    res = runner.invoke(app, [*args, "--preset", str(preset), "--json", str(js)])
    assert res.exit_code == 0, res.output
    figures = json.loads(js.read_text())
    assert figures["files"] == 17 and 0 < figures["outliers"]["f1"] <= 1
    assert set(figures["changepoints"]["scores"]) == {"standard", "LowFP", "LowFN"}
    assert len(list(out.glob("*/*.csv"))) == 17


def test_eval_errors_are_one_clear_line(tmp_path: Path) -> None:
    res = runner.invoke(app, ["eval", "nab", "--data", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "data directory not found" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("windows: [{group: g, size: 0}]\n")
    res = runner.invoke(app, ["eval", "skab", "--data", str(tmp_path), "--preset", str(bad)])
    assert res.exit_code == 2 and "windows[0].size" in res.output
    res = runner.invoke(app, ["eval", "skab", "--data", str(tmp_path), "--preset", "nosuch"])
    assert res.exit_code == 2 and "neither a YAML file nor a bundled preset" in res.output

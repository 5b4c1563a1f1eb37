"""``retrain_config``: a RetrainConfig from JSON, every bad field named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgeloop.cli.main import app
from edgeloop.errors import ConfigError
from edgeloop.hub.retrain import RetrainConfig, retrain_config


def test_fields_and_the_rollout_policy_are_read() -> None:
    cfg = retrain_config(
        {
            "window_s": 600,
            "min_rows": 500,
            "max_holdout_alert_rate": 0.05,
            "start_rollout": False,
            "params": {"variance": 0.9},
            "policy": {
                "canary_fraction": 0.3,
                "steps": [0.6],
                "shadow_fraction": 0.0,
                "evidence": {"min_windows": 60},
                "gates": {"max_score_shift": None},
            },
        }
    )
    assert (cfg.window_s, cfg.min_rows, cfg.start_rollout) == (600, 500, False)
    assert cfg.policy.canary_fraction == 0.3 and cfg.policy.steps == (0.6,)
    assert cfg.policy.evidence.min_windows == 60 and cfg.policy.gates.max_score_shift is None
    assert retrain_config({}) == RetrainConfig()


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"min_row": 5}, "min_row"),
        ({"min_rows": "many"}, "min_rows"),
        ({"start_rollout": 1}, "start_rollout"),
        ({"min_rows": True}, "min_rows"),
        ({"holdout_fraction": 1.5}, "holdout_fraction"),
        ({"policy": {"canary_fraction": 2}}, "canary_fraction"),
        ({"policy": {"gates": {"min_agree": 0.5}}}, "min_agree"),
    ],
)
def test_bad_fields_are_named(data: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        retrain_config(data)


def test_hub_serve_refuses_a_bad_retrain_config(tmp_path: Path) -> None:
    bad = tmp_path / "retrain.json"
    bad.write_text(json.dumps({"min_rows": 10, "policy": {"canary_fraction": 1.5}}))
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    result = CliRunner().invoke(app, ["hub", "serve", "--db", db, "--retrain-config", str(bad)])
    assert result.exit_code == 2
    assert "canary_fraction" in result.output and "--retrain-config" in result.output
    assert not (tmp_path / "hub.db").exists()  # refused before the store was opened
    missing = CliRunner().invoke(
        app, ["hub", "serve", "--db", db, "--retrain-config", str(tmp_path / "none.json")]
    )
    assert missing.exit_code == 2 and "none.json" in missing.output

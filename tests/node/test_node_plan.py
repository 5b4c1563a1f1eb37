"""A node's plan: validated in a launcher (pydantic), rebuilt in the node without it.

The schema of the node config and of the simulated floor is one set of dataclasses;
the pipeline spec's pydantic models have a plain mirror (``pipeline/plan.py``). These
tests check that validated data survives the trip through JSON unchanged, that the
mirror keeps every field of the spec, and that a pipeline built from the plan behaves
exactly like one built from the spec.
"""

from __future__ import annotations

import dataclasses
import doctest
import json
import subprocess
import sys
import textwrap
import typing
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import edgeloop._plain
import edgeloop.pipeline.plan
from edgeloop._plain import from_plain, to_plain
from edgeloop.detect import registry
from edgeloop.errors import ConfigError
from edgeloop.node.config import NodeConfig, parse_node_config
from edgeloop.node.plan import NodePlan, make_plan, plan_from_json, plan_to_json
from edgeloop.pipeline import spec as spec_mod
from edgeloop.pipeline.pipeline import Pipeline
from edgeloop.pipeline.plan import (
    AnonymisePlan,
    DetectorPlan,
    FilterPlan,
    PipelinePlan,
    SpectrumPlan,
    SummaryPlan,
    WindowPlan,
    plan_from_data,
    plan_of,
)
from edgeloop.pipeline.spec import load_preset, load_spec
from edgeloop.sim.config import FactoryConfig, LoadProfile
from edgeloop.sim.factory import FactorySim

GATEWAY = {
    "node_id": "gw1",
    "pipeline": "factory",
    "summary_every_s": 2.0,
    "decide": {"rules": [{"name": "stop", "min_score": 0.9, "severity": "alarm"}]},
    "outbox": {"url": "sqlite:///x.db", "budget_bytes": 1 << 20},
    "uplink": {"kind": "http", "url": "http://hub:8000"},
    "sensors": [{"name": "m9.temp", "machine": "m9", "kind": "temperature", "rate_hz": 10}],
    "sources": [
        {
            "type": "sim",
            "seed": 3,
            "factory": {"generate": {"n_machines": 2, "gateway": "gw1", "seed": 5}},
            "faults": [{"kind": "imbalance", "machine": "gw1.m02", "start_s": 1, "end_s": 2}],
        },
        {"type": "http", "port": 8081},
    ],
    "chaos": {"partitions": [[1.0, 2.0]], "ack_loss": 0.1},
}

# Every section and every kind of entry a spec can hold.
FULL_SPEC = """
name: full
windows:
  - {group: vib, kinds: [vibration], size: 64, hop: 32, features: [rms, p2p], spectrum: {bands: 4, log: false}}
  - {group: proc, sensors: ["m*/temp"], size: 10, features: [mean, std], join: machine}
filters:
  - {mode: range, kinds: [temperature], range: [-40.0, 200.0]}
  - {mode: drop, sensors: ["m9/*"]}
summaries: {period_s: 0.5, lateness_s: 0.25}
anonymise: {hash: [machine], drop: [raw], key_env: TEST_PLAN_KEY}
detectors:
  - {group: vib, type: robust, params: {warmup: 3, alpha: 0.1}}
  - {group: proc, type: plan_copy, name: copy, params: {warmup: 2}}
  - {group: vib, type: onnx, name: pca, model: models/vib.onnx, params: {threshold: 0.7}}
"""


@pytest.fixture
def copy_type() -> Iterator[None]:
    registry.register("plan_copy", "edgeloop.detect.robust:RobustDetector")
    yield
    registry._TYPES.pop("plan_copy")


def test_docstring_examples() -> None:
    for module in (edgeloop._plain, edgeloop.pipeline.plan):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_node_plan_survives_json_unchanged() -> None:
    plan = make_plan(parse_node_config(GATEWAY))
    assert plan.floor == FactoryConfig.generate(2, gateway="gw1", seed=5)
    assert plan.pipeline == plan_of(load_preset("factory"))
    assert plan.sim is not None and plan.sim.seed == 3
    again = plan_from_json(plan_to_json(plan))
    assert again == plan
    assert isinstance(again.config.sources[1], type(plan.config.sources[1]))


def test_validated_config_and_rebuilt_config_agree() -> None:
    """pydantic (launcher) and from_plain (node) build the same objects from the same data."""
    cfg = parse_node_config(GATEWAY)
    assert from_plain(NodeConfig, json.loads(json.dumps(to_plain(cfg)))) == cfg
    assert parse_node_config(to_plain(cfg)) == cfg
    floor = FactoryConfig.generate(3, seed=2, load=LoadProfile(regimes=((0.0, 0.4), (60, 0.9))))
    assert FactoryConfig.parse(to_plain(floor)) == floor
    assert from_plain(FactoryConfig, json.loads(json.dumps(to_plain(floor)))) == floor


def test_plan_mirrors_every_field_of_the_spec() -> None:
    pairs = [
        (spec_mod.SpectrumSpec, SpectrumPlan),
        (spec_mod.WindowSpec, WindowPlan),
        (spec_mod.FilterSpec, FilterPlan),
        (spec_mod.SummarySpec, SummaryPlan),
        (spec_mod.AnonymiseSpec, AnonymisePlan),
        (spec_mod.PipelineSpec, PipelinePlan),
    ]
    for model, plan in pairs:
        assert list(model.model_fields) == [f.name for f in dataclasses.fields(plan)], plan
    detector_fields = set()
    for model in typing.get_args(typing.get_args(spec_mod.DetectorSpec)[0]):
        detector_fields |= set(typing.get_args(model)[0].model_fields)
    assert detector_fields == {f.name for f in dataclasses.fields(DetectorPlan)}
    # Defaults in step: an empty spec and an empty plan are the same pipeline.
    assert plan_of(load_spec({})) == PipelinePlan()


def test_full_spec_round_trips_through_json(copy_type: None) -> None:
    spec = load_spec(FULL_SPEC)
    plan = plan_of(spec)
    assert plan_from_data(json.loads(json.dumps(to_plain(plan)))) == plan
    assert plan.window("vib").step == 32 and plan.window("proc").join == "machine"
    assert plan.filters[0].range == (-40.0, 200.0)
    onnx = plan.detectors[2]
    assert (onnx.type, onnx.model, onnx.params) == ("onnx", "models/vib.onnx", {"threshold": 0.7})
    assert plan.detectors[0].params["warmup"] == 3  # defaults resolved by the spec
    assert plan.detectors[0].params["z_threshold"] == 6.0


def test_pipeline_from_plan_scores_like_pipeline_from_spec() -> None:
    spec = load_preset("factory")
    sim_a = FactorySim(FactoryConfig.generate(2, seed=4), seed=9)
    sim_b = FactorySim(FactoryConfig.generate(2, seed=4), seed=9)
    a = Pipeline.from_spec(spec, sim_a.catalog)
    b = Pipeline.from_spec(
        plan_from_data(json.loads(json.dumps(to_plain(plan_of(spec))))), sim_b.catalog
    )
    windows = 0
    for k in range(30):
        now = (k + 1) * 100_000_000
        out_a = a.process(sim_a.step(100_000_000), now)
        out_b = b.process(sim_b.step(100_000_000), now)
        windows += out_a.windows
        assert out_a.windows == out_b.windows
        for sa, sb in zip(out_a.scores, out_b.scores, strict=True):
            np.testing.assert_array_equal(sa.score, sb.score)
    assert windows > 0


def test_plan_from_json_rejects_what_is_not_a_plan() -> None:
    with pytest.raises(ConfigError, match="not a node plan"):
        plan_from_json(json.dumps({"node_id": "gw1"}), where="x.json")
    with pytest.raises(ConfigError, match=r"x\.json: not valid JSON"):
        plan_from_json("{", where="x.json")
    good = json.loads(plan_to_json(make_plan(parse_node_config({"node_id": "n1"}))))
    del good["pipeline"]
    with pytest.raises(ConfigError, match="malformed node plan"):
        plan_from_json(json.dumps(good))


def test_make_plan_names_bad_floor_and_fault_fields() -> None:
    bad_floor = {"machines": [{"name": "a", "shaft_hz": -1}]}
    with pytest.raises(ConfigError, match=r"sources\.0\.factory: .*\n.*machines\.0\.shaft_hz"):
        make_plan(
            parse_node_config({"node_id": "n", "sources": [{"type": "sim", "factory": bad_floor}]})
        )
    fault = {"kind": "imbalance", "machine": "nope", "start_s": 1, "end_s": 2}
    src = {"type": "sim", "factory": {"generate": {"n_machines": 1}}, "faults": [fault]}
    with pytest.raises(ConfigError, match="unknown machine 'nope'"):
        make_plan(parse_node_config({"node_id": "n", "sources": [src]}))


def node_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeloop.node", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_print_plan_is_the_plan_a_node_runs(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    path.write_text(
        "node_id: n1\nsources:\n  - {type: sim, factory: {generate: {n_machines: 1}}}\n"
    )
    out = node_cli("--config", str(path), "--print-plan")
    assert out.returncode == 0, out.stderr
    plan = plan_from_json(out.stdout)
    assert isinstance(plan, NodePlan) and plan.config.node_id == "n1"
    assert plan.floor is not None and len(plan.floor.machines) == 1


def test_node_started_with_a_bad_config_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    path.write_text(textwrap.dedent("node_id: n1\nuplink: {kind: http}\n"))
    out = node_cli("--config", str(path), "--duration", "1")
    assert out.returncode == 2
    assert out.stderr.startswith(f"config error: {path}: 1 problem(s)"), out.stderr
    assert "uplink.url: required when uplink.kind is 'http'" in out.stderr


def test_node_started_with_a_broken_plan_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text('{"format": "something-else"}')
    out = node_cli("--plan", str(path))
    assert out.returncode == 2
    assert f"{path}: not a node plan" in out.stderr

"""Node configuration: a valid YAML loads; every wrong config raises ConfigError naming
the file and the path of the offending field. ``resolve_spec`` finds bundled presets."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from edgeloop.errors import ConfigError
from edgeloop.node.build import preset_path, resolve_spec
from edgeloop.node.config import (
    CsvSourceConfig,
    HttpSourceConfig,
    NodeConfig,
    SimSourceConfig,
    load_node_config,
    parse_node_config,
)
from edgeloop.pipeline.spec import PipelineSpec

GOOD = """\
node_id: gw-1.hall_a
tier: regional
tenant: acme
parent: hub
pipeline: factory
summary_every_s: 2.5
decide:
  min_confidence: 0.9
  rules:
    - {name: alarms, groups: [vibration], min_score: 0.5, severity: alarm, actions: [relay]}
outbox: {url: "sqlite:///outbox.db", budget_bytes: 1000000}
uplink: {kind: http, url: "http://hub:8000", timeout_s: 2}
sensors:
  - {name: m1.temp, machine: m1, kind: temperature, rate_hz: 10, unit: C}
  - {name: m1.vib, machine: m1, kind: vibration, rate_hz: 2000}
sources:
  - {type: csv, path: replay.csv, speed: 1.0}
  - {type: http, port: 8081}
  - {type: sim, seed: 3, tick_s: 0.05}
chaos: {partitions: [[1.0, 2.0]], ack_loss: 0.1}
"""


def write(tmp_path: Path, text: str, name: str = "node.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_yaml_loads_every_section(tmp_path: Path) -> None:
    cfg = load_node_config(write(tmp_path, GOOD))
    assert isinstance(cfg, NodeConfig)
    assert (cfg.node_id, cfg.tier, cfg.tenant, cfg.parent) == (
        "gw-1.hall_a",
        "regional",
        "acme",
        "hub",
    )
    assert cfg.summary_every_s == 2.5
    assert cfg.decide.min_confidence == 0.9
    rule = cfg.decide.rules[0]
    assert (rule.name, rule.groups, rule.min_score, rule.severity, rule.actions) == (
        "alarms",
        ["vibration"],
        0.5,
        "alarm",
        ["relay"],
    )
    assert (cfg.outbox.url, cfg.outbox.budget_bytes) == ("sqlite:///outbox.db", 1_000_000)
    assert (cfg.uplink.kind, cfg.uplink.url, cfg.uplink.timeout_s) == (
        "http",
        "http://hub:8000",
        2.0,
    )
    assert [(s.name, s.kind, s.rate_hz) for s in cfg.sensors] == [
        ("m1.temp", "temperature", 10.0),
        ("m1.vib", "vibration", 2000.0),
    ]
    csv_src, http_src, sim_src = cfg.sources
    assert isinstance(csv_src, CsvSourceConfig) and (csv_src.path, csv_src.speed) == (
        "replay.csv",
        1.0,
    )
    assert isinstance(http_src, HttpSourceConfig) and (http_src.host, http_src.port) == (
        "127.0.0.1",
        8081,
    )
    assert isinstance(sim_src, SimSourceConfig) and (sim_src.seed, sim_src.tick_s) == (3, 0.05)
    assert cfg.chaos is not None
    assert (cfg.chaos.partitions, cfg.chaos.ack_loss) == ([(1.0, 2.0)], 0.1)


def test_minimal_yaml_takes_the_defaults(tmp_path: Path) -> None:
    cfg = load_node_config(write(tmp_path, "node_id: n1\n"))
    assert (cfg.tier, cfg.pipeline, cfg.summary_every_s) == ("gateway", "factory", 5.0)
    assert (cfg.uplink.kind, cfg.uplink.url) == ("none", None)
    assert cfg.outbox.url == "memory://"
    assert cfg.sources == [] and cfg.sensors == [] and cfg.chaos is None
    assert [r.name for r in cfg.decide.rules] == ["anomaly"]


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_node_config(write(tmp_path, "node_id: n1\n"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.node_id = "other"  # type: ignore[misc]


# (YAML body, the field path the error must name, a word of the reason)
BAD = {
    "negative-summary": ("node_id: n1\nsummary_every_s: -1\n", "summary_every_s", "greater than 0"),
    "zero-summary": ("node_id: n1\nsummary_every_s: 0\n", "summary_every_s", "greater than 0"),
    "summary-not-a-number": ("node_id: n1\nsummary_every_s: soon\n", "summary_every_s", "number"),
    "http-uplink-without-url": ("node_id: n1\nuplink: {kind: http}\n", "uplink.url", "http"),
    "http-uplink-empty-url": ("node_id: n1\nuplink: {kind: http, url: ''}\n", "uplink.url", "http"),
    "unknown-uplink-kind": ("node_id: n1\nuplink: {kind: carrier-pigeon}\n", "uplink.kind", "none"),
    "unknown-top-level-key": ("node_id: n1\ncolour: blue\n", "colour", "not permitted"),
    "unknown-nested-key": (
        "node_id: n1\noutbox: {url: 'memory://', size: 3}\n",
        "outbox.size",
        "not permitted",
    ),
    "wrong-source-type": ("node_id: n1\nsources:\n  - {type: modbus}\n", "sources.0", "modbus"),
    "source-not-a-mapping": ("node_id: n1\nsources: [replay.csv]\n", "sources.0", "dict"),
    "csv-source-without-path": (
        "node_id: n1\nsources:\n  - {type: csv}\n",
        "sources.0.csv.path",
        "required",
    ),
    "bad-sensor-rate": (
        "node_id: n1\nsensors:\n  - {name: a, machine: m}\n  - {name: b, machine: m, rate_hz: -2}\n",
        "sensors.1.rate_hz",
        "greater than 0",
    ),
    "bad-node-id": ("node_id: 'has space'\n", "node_id", "pattern"),
    "missing-node-id": ("tier: gateway\n", "node_id", "required"),
    "unknown-tier": ("node_id: n1\ntier: planet\n", "tier", "device"),
    "ack-loss-one": ("node_id: n1\nchaos: {ack_loss: 1.0}\n", "chaos.ack_loss", "less than 1"),
    "rule-score-above-one": (
        "node_id: n1\ndecide:\n  rules: [{name: r, min_score: 2}]\n",
        "decide.rules.0.min_score",
        "less than or equal to 1",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_wrong_config_names_the_file_and_the_field(tmp_path: Path, case: str) -> None:
    text, field, why = BAD[case]
    path = write(tmp_path, text, f"{case}.yaml")
    with pytest.raises(ConfigError) as info:
        load_node_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:"), msg
    lines = msg.splitlines()
    assert any(line.strip().startswith(f"{field}:") and why in line for line in lines), msg


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        node_id: n1
        summary_every_s: -1
        uplink: {kind: http}
        colour: blue
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_node_config(path)
    msg = str(info.value)
    assert "3 problem(s)" in msg
    fields = sorted(line.strip().split(":")[0] for line in msg.splitlines()[1:])
    assert fields == ["colour", "summary_every_s", "uplink.url"]


def test_bad_yaml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "node_id: n1\nsensors: [\n  {name: a, machine: m}\n")
    with pytest.raises(ConfigError) as info:
        load_node_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: not valid YAML")
    assert "line" in msg


@pytest.mark.parametrize("text", ["", "- node_id: n1\n", "just a string\n"])
def test_yaml_that_is_not_a_mapping_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_node_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:")
    assert "dictionary" in msg


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "node.yaml"
    with pytest.raises(ConfigError) as info:
        load_node_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: cannot read")
    assert "No such file" in msg


def test_parse_node_config_names_its_source() -> None:
    with pytest.raises(ConfigError) as info:
        parse_node_config({"node_id": "n1", "uplink": {"kind": "http"}}, where="desired state v7")
    msg = str(info.value)
    assert msg.startswith("desired state v7:")
    assert "uplink.url" in msg


def test_config_error_is_not_raised_for_http_uplink_with_url() -> None:
    cfg = parse_node_config({"node_id": "n1", "uplink": {"kind": "http", "url": "http://h:1"}})
    assert cfg.uplink.url == "http://h:1"


# -- resolve_spec -------------------------------------------------------------------


def test_resolve_spec_finds_the_bundled_factory_preset() -> None:
    assert preset_path("factory").is_file()
    spec = resolve_spec("factory")
    assert isinstance(spec, PipelineSpec)
    assert spec.name == "factory"
    assert [w.group for w in spec.windows] == ["vibration", "process"]
    assert {d.group for d in spec.detectors} == {"vibration", "process"}


def test_resolve_spec_reads_a_yaml_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        name: mine
        windows:
          - {group: g, kinds: [temperature], size: 4, features: [mean]}
        """,
        "mine.yaml",
    )
    spec = resolve_spec(str(path))
    assert spec.name == "mine"
    assert [w.group for w in spec.windows] == ["g"]


def test_resolve_spec_unknown_name_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_spec("no-such-preset")
    msg = str(info.value)
    assert msg.startswith("pipeline:")
    assert "'no-such-preset'" in msg
    assert "preset" in msg and "YAML" in msg


def test_resolve_spec_missing_yaml_path_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "gone.yaml"
    with pytest.raises(ConfigError) as info:
        resolve_spec(str(path))
    assert str(path) in str(info.value)

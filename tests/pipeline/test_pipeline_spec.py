"""Pipeline spec: the factory preset, and errors that name the bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeloop.errors import ConfigError
from edgeloop.pipeline.spec import (
    OnnxDetectorSpec,
    PipelineSpec,
    SpecError,
    load_preset,
    load_spec,
)
from edgeloop.telemetry.frame import SensorKind

GOOD = """
version: 1
name: t
windows:
  - {group: vib, kinds: [vibration], size: 1024, hop: 512, features: [rms], spectrum: {bands: 8}}
detectors:
  - {group: vib, type: robust, params: {warmup: 5}}
  - {group: vib, type: onnx, model: models/vib.onnx}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(text)
    assert isinstance(info.value, ConfigError)
    return info.value.problems


def test_factory_preset() -> None:
    spec = load_preset("factory")
    vib, proc = spec.window("vibration"), spec.window("process")
    assert (vib.size, vib.step, vib.kinds) == (1024, 1024, (SensorKind.VIBRATION,))
    assert vib.spectrum is not None and vib.spectrum.bands == 8 and vib.spectrum.log
    assert set(proc.kinds) == {SensorKind.TEMPERATURE, SensorKind.PRESSURE, SensorKind.CURRENT}
    assert (proc.size, proc.step, proc.spectrum) == (10, 10, None)
    assert spec.summaries is not None and spec.summaries.period_s == 1.0
    assert {(d.group, d.type) for d in spec.detectors} == {
        ("vibration", "robust"),
        ("process", "robust"),
    }


def test_good_spec_from_text_and_from_file(tmp_path: Path) -> None:
    spec = load_spec(GOOD)
    assert spec.windows[0].step == 512
    onnx = spec.detectors[1]
    assert isinstance(onnx, OnnxDetectorSpec) and onnx.model == "models/vib.onnx"
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    assert load_spec(path) == spec == load_spec(str(path))
    assert load_spec({"windows": []}) == PipelineSpec()


def test_a_dumped_spec_loads_back_unchanged() -> None:
    """Tools write specs from ``model_dump`` (e.g. adding a trained detector)."""
    import yaml

    spec = load_spec(GOOD)
    assert load_spec(yaml.safe_dump(spec.model_dump(mode="json"))) == spec
    assert load_spec(yaml.safe_dump(load_preset().model_dump(mode="json"))) == load_preset()


def test_hop_larger_than_size_names_the_path() -> None:
    text = GOOD.replace("hop: 512", "hop: 2048")
    assert problems(text) == ["windows[0].hop: must be <= size (got 2048 > 1024)"]


def test_all_problems_are_listed_with_their_paths() -> None:
    text = """
windows:
  - {group: vib, kinds: [vibration], size: 1024, features: [rms, median], spectrum: {bands: 600}}
  - {group: p, kinds: [temperature], size: 0, features: [mean], colour: red}
  - {group: q, size: 10, features: [mean]}
filters:
  - {mode: range, kinds: [temperature]}
detectors:
  - {group: vib, type: robust, params: {alpha: 2.0, typo: 1}}
  - {group: vib, type: magic}
"""
    got = problems(text)
    expected_prefixes = [
        "windows[0].features[1]:",
        "windows[0].spectrum: bands must be <= size // 2 = 512 (got 600)",
        "windows[1].size:",
        "windows[1].colour: unknown field",
        "windows[2]: give kinds and/or sensors",
        "filters[0]: mode 'range' needs range",
        "detectors[0].params.alpha:",
        "detectors[0].params.typo: unknown field",
        "detectors[1].type: must be one of robust, onnx, multivariate, novelty",
    ]
    assert len(got) == len(expected_prefixes), got
    for want in expected_prefixes:
        assert any(p.startswith(want) for p in got), (want, got)
    assert any("'median'" in p for p in got)
    assert any(p.endswith("(got 'magic')") for p in got)


def test_cross_references_are_checked() -> None:
    text = GOOD + "  - {group: nope, type: robust}\n  - {group: vib, type: robust}\n"
    got = problems(text)
    assert "detectors[2].group: unknown group 'nope' (known: vib)" in got
    assert any(p.startswith("detectors[3].name: two detectors named 'robust'") for p in got)
    dup = GOOD.replace(
        "detectors:", "  - {group: vib, kinds: [current], size: 4, features: [mean]}\ndetectors:"
    )
    assert problems(dup) == ["windows[1].group: 'vib' already used by windows[0]"]


def test_yaml_and_shape_errors() -> None:
    [p] = problems("windows: [\n")
    assert p.startswith("YAML line")
    assert problems("- 1\n") == ["the spec must be a mapping (got list)"]
    assert problems("version: 2\n")[0].startswith("version:")


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="no such preset"):
        load_preset("nope")


def test_message_lists_problems_one_per_line() -> None:
    with pytest.raises(SpecError) as info:
        load_spec(GOOD.replace("hop: 512", "hop: 2048").replace("warmup: 5", "warmup: 0"))
    msg = str(info.value)
    assert msg.splitlines()[0] == "invalid pipeline spec (2 problems):"
    assert "  windows[0].hop: must be <= size (got 2048 > 1024)" in msg.splitlines()

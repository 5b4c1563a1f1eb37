"""Detector types named in specs resolve through the registry, parameters checked early."""

from __future__ import annotations

import pytest

from edgeloop.detect import registry
from edgeloop.errors import ConfigError
from edgeloop.pipeline.spec import RegisteredDetectorSpec, SpecError, load_spec

SPEC = """
windows:
  - {group: g, kinds: [temperature], size: 10, features: [mean, std]}
detectors:
"""


@pytest.fixture
def echo_type() -> object:
    registry.register("robust_copy", "edgeloop.detect.robust:RobustDetector")
    yield
    registry._TYPES.pop("robust_copy")


def test_registered_type_builds_with_its_params(echo_type: object) -> None:
    spec = load_spec(SPEC + "  - {group: g, type: robust_copy, params: {warmup: 3}}\n")
    (d,) = spec.detectors
    assert isinstance(d, RegisteredDetectorSpec) and d.params == {"warmup": 3}
    det = registry.build_detector(d.type, 2, ("mean", "std"), d.params, "mine")
    assert det.name == "mine" and det.warmup == 3  # type: ignore[attr-defined]


def test_unknown_type_and_unknown_param_are_reported_with_paths(echo_type: object) -> None:
    with pytest.raises(SpecError) as e:
        load_spec(
            SPEC
            + "  - {group: g, type: nope}\n"
            + "  - {group: g, type: robust_copy, params: {warmup: 3, warmpu: 4, name: x}}\n"
        )
    assert e.value.problems[0].startswith("detectors[0].type: must be one of robust, onnx, ")
    assert "(got 'nope')" in e.value.problems[0]
    assert e.value.problems[1].startswith("detectors[1].params: 'name' is set by the pipeline")
    assert "unknown parameter 'warmpu'" in e.value.problems[1]


def test_bad_values_fail_when_the_pipeline_is_built(echo_type: object) -> None:
    from edgeloop.pipeline.pipeline import Pipeline
    from edgeloop.telemetry.frame import SensorCatalog, SensorKind, SensorSpec

    cat = SensorCatalog.of([SensorSpec("m.t", "m", SensorKind.TEMPERATURE, 10.0)])
    spec = load_spec(SPEC + "  - {group: g, type: robust_copy, params: {alpha: 2.0}}\n")
    with pytest.raises(ConfigError, match=r"detectors\[0\]: robust detector: alpha"):
        Pipeline.from_spec(spec, cat)


def test_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"known: .*robust"):
        registry.detector_class("nope")
    with pytest.raises(ValueError):
        registry.register("x", "no_colon")


@pytest.mark.parametrize(
    ("value", "rule", "ok"),
    [
        (0.5, "(0, 1]", True),
        (0.0, "(0, 1]", False),
        (1.0, "(0, 1]", True),
        (1.0, "(0, 1)", False),
        (0.0, "[0, 1)", True),
        (float("nan"), "[0, 1]", False),
        (float("nan"), ">= 0", False),
        (2, ">= 2", True),
        (1, "> 1", False),
        (-1, "<= 0", True),
    ],
)
def test_parameter_bounds(value: float, rule: str, ok: bool) -> None:
    from edgeloop.detect.params import bound

    passed, message = bound(value, rule)
    assert passed is ok and rule in message and str(value) in message


def test_every_failed_parameter_is_named_at_once() -> None:
    from edgeloop.detect.multivariate import MultivariateDetector

    with pytest.raises(ConfigError) as err:
        MultivariateDetector(2, ("a", "b"), smooth=0.0, hold=0, release=1.0)
    text = str(err.value)
    assert text.startswith("multivariate detector: ")
    assert "smooth: must be in (0, 1]" in text and "hold: must be >= 1" in text
    assert "release: must be in (0, 1)" in text

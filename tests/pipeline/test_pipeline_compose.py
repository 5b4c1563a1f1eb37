"""Pipeline: the factory preset end to end, accounting, detector composition, public API."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _pipeline_helpers import T0, factory_catalog, factory_frame

import edgeloop.pipeline as pipeline_pkg
from edgeloop.errors import ConfigError, RejectReason
from edgeloop.pipeline import Pipeline, PipelineSpec, combine_scores, load_preset, load_spec
from edgeloop.pipeline.spec import OnnxDetectorSpec
from edgeloop.pipeline.types import Features, Scores
from edgeloop.telemetry.frame import Frame, SensorKind, SensorSpec
from edgeloop.telemetry.records import SummaryBatch

VIB_NAMES = ("mean", "std", "rms", "p2p", "kurtosis", "crest", *(f"band_{i}" for i in range(8)))


def run_seconds(pipe: Pipeline, seconds: int, frame_s: float = 1.0, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    feats: dict[str, list[Features]] = {}
    scores: dict[str, list[Scores]] = {}
    batches: list[SummaryBatch] = []
    fed = 0
    for k in range(round(seconds / frame_s)):
        frame = factory_frame(pipe.catalog, k * frame_s, frame_s, rng)
        fed += len(frame)
        out = pipe.process(frame, now_ns=T0 + round((k + 1) * frame_s * 1e9))
        assert out.samples == len(frame) and out.rejected == {} and out.filtered == 0
        assert out.windows == sum(len(f) for f in out.features)
        for f, s in zip(out.features, out.scores, strict=True):
            assert len(s.score) == len(f)
            feats.setdefault(f.group, []).append(f)
            scores.setdefault(f.group, []).append(s)
        if out.summaries is not None:
            batches.append(out.summaries)
    tail = pipe.flush()
    if tail is not None:
        batches.append(tail)
    return {"features": feats, "scores": scores, "summaries": batches, "fed": fed}


def test_factory_preset_end_to_end() -> None:
    cat = factory_catalog(2)
    pipe = Pipeline.from_spec(load_preset("factory"), cat)
    assert {g: s.tolist() for g, s in pipe.groups.items()} == {
        "vibration": [0, 4],
        "process": [1, 2, 3, 5, 6, 7],
    }
    res = run_seconds(pipe, 40, frame_s=0.8)  # frames do not align with windows
    vib = res["features"]["vibration"]
    proc = res["features"]["process"]
    assert vib[0].names == VIB_NAMES
    assert proc[0].names == ("mean", "std", "min", "max")
    # 2 vibration sensors x floor(40 s * 2000 / 1024) windows; 6 process x 40 windows.
    assert sum(len(f) for f in vib) == 2 * (40 * 2000 // 1024)
    assert sum(len(f) for f in proc) == 6 * 40
    # Stationary synthetic data: after warm-up nothing is anomalous.
    vib_scores = np.concatenate([s.score for s in res["scores"]["vibration"]])
    assert vib_scores.max() < 0.5
    # Every sample fed is in exactly one summary row; one row per sensor per second.
    summaries = SummaryBatch.concat(res["summaries"])
    assert summaries.samples == res["fed"]
    assert len(summaries) == len(cat) * 40
    assert summaries.sensor_names == tuple(cat.names())


def test_stuck_temperature_is_flagged_end_to_end() -> None:
    cat = factory_catalog(1)
    pipe = Pipeline.from_spec(load_preset("factory"), cat)
    run_seconds(pipe, 60)
    rng = np.random.default_rng(99)
    frame = factory_frame(cat, 60.0, 1.0, rng)
    temp = frame.sensor == cat.index("m0/temp")
    value = frame.value.copy()
    value[temp] = 21.0
    out = pipe.process(Frame(frame.sensor, frame.ts, value), T0 + 61 * 10**9)
    [proc] = [(f, s) for f, s in zip(out.features, out.scores, strict=True) if f.group == "process"]
    f, s = proc
    flagged = {cat[int(i)].name for i in f.sensor[s.anomalous]}
    assert flagged == {"m0/temp"}
    assert f.names[s.top_feature[s.anomalous][0]] == "std"


def test_bad_samples_are_rejected_counted_and_the_rest_kept() -> None:
    cat = factory_catalog(1)
    pipe = Pipeline.from_spec(load_preset("factory"), cat)
    f = Frame.from_arrays([0, 1, 1, 9, 2], [1, 1, 2, 1, 1], [0.5, np.nan, 20.0, 1.0, np.inf])
    out = pipe.process(f, T0)
    assert out.rejected == {RejectReason.NON_FINITE: 2, RejectReason.UNKNOWN_SENSOR: 1}
    assert out.samples == 2
    assert pipe.rejected == out.rejected and pipe.samples_in == 5
    b = out.summaries  # samples from 1970: their periods are closed at once
    assert b is not None and b.samples == 2 and pipe.flush() is None


def test_filters_run_before_windows_and_summaries() -> None:
    spec = load_spec(
        """
windows:
  - {group: process, kinds: [temperature, pressure, current], size: 10, features: [mean]}
filters:
  - {mode: drop, kinds: [vibration]}
  - {mode: range, kinds: [temperature], range: [0.0, 20.5]}
"""
    )
    cat = factory_catalog(1)
    pipe = Pipeline.from_spec(spec, cat)
    frame = factory_frame(cat, 0.0, 1.0, np.random.default_rng(0))
    out = pipe.process(frame, T0 + 10**9)
    n_vib = int((frame.sensor == 0).sum())
    n_hot = int(((frame.sensor == 1) & (frame.value > 20.5)).sum())
    assert out.filtered == n_vib + n_hot == pipe.filtered
    b = pipe.flush()
    assert b is not None and b.samples == len(frame) - out.filtered
    assert 0 not in b.sensor.tolist()


class ConstantDetector:
    """A stand-in for a detector built by another module (e.g. ONNX)."""

    def __init__(self, name: str, value: float, threshold: float) -> None:
        self.name, self.value, self.threshold = name, value, threshold
        self.learned = 0

    def score(self, features: Features) -> Scores:
        n = len(features)
        return Scores(
            np.full(n, self.value, np.float32),
            self.threshold,
            np.ones(n, np.float32),
            np.zeros(n, np.int32),
            self.name,
        )

    def learn(self, features: Features, scores: Scores) -> None:
        self.learned += len(features)


def test_detectors_from_a_factory_are_combined_by_max() -> None:
    spec = load_spec(
        """
windows:
  - {group: process, kinds: [temperature], size: 10, features: [mean, std]}
summaries: null
detectors:
  - {group: process, type: robust, params: {warmup: 2}}
  - {group: process, type: onnx, model: m.onnx}
"""
    )
    with pytest.raises(ConfigError, match="detector_factory"):
        Pipeline.from_spec(spec, factory_catalog(1))
    built: list[ConstantDetector] = []

    def factory(entry: OnnxDetectorSpec) -> ConstantDetector:
        built.append(ConstantDetector(entry.model, 0.7, threshold=0.6))
        return built[-1]

    pipe = Pipeline.from_spec(spec, factory_catalog(2), detector_factory=factory)
    res = run_seconds(pipe, 3)
    assert pipe.flush() is None and res["summaries"] == []
    assert built[0].learned == 2 * 3  # learn ran on every window (2 sensors, 3 s of 10)
    robust = pipe.detectors("process")["robust"]
    assert robust.windows_seen(1) == 3  # type: ignore[attr-defined]
    for s in res["scores"]["process"]:
        assert s.detector == "max(robust,m.onnx)" and s.threshold == 0.5
        assert np.all(s.anomalous)  # the constant detector says 0.7 >= 0.6


def test_combine_scores_keeps_each_detectors_decision() -> None:
    def sc(values: list[float], t: float, name: str) -> Scores:
        n = len(values)
        return Scores(
            np.array(values, np.float32),
            t,
            np.ones(n, np.float32),
            np.full(n, 1 if name == "a" else 2, np.int32),
            name,
        )

    a = sc([0.1, 0.85, 0.5, 0.0], 0.8, "a")
    b = sc([0.2, 0.1, 0.35, 0.3], 0.3, "b")
    c = combine_scores([a, b])
    assert c.anomalous.tolist() == [False, True, True, True]
    assert c.anomalous.tolist() == (a.anomalous | b.anomalous).tolist()
    assert c.top_feature.tolist()[:2] == [2, 1]
    same = combine_scores([a, sc([0.9, 0.0, 0.0, 0.0], 0.8, "b")])
    assert same.threshold == 0.8 and same.score.tolist()[0] == pytest.approx(0.9)


def test_sensors_registered_later_join_their_group() -> None:
    cat = factory_catalog(1)
    pipe = Pipeline.from_spec(load_preset("factory"), cat)
    run_seconds(pipe, 2)
    cat.add(SensorSpec("m1/temp", "m1", SensorKind.TEMPERATURE, 10.0))
    out = pipe.process(
        Frame.from_arrays(np.full(10, 4), T0 + np.arange(10) * 10**8, np.full(10, 3.0)), T0
    )
    assert 4 in pipe.groups["process"].tolist()
    assert [f.sensor.tolist() for f in out.features if f.group == "process"] == [[4]]


def test_anonymiser_key_comes_from_the_environment() -> None:
    spec = PipelineSpec.model_validate(
        {"anonymise": {"hash": ["machine"], "key_env": "TEST_ANON_KEY"}}
    )
    with pytest.raises(ConfigError, match="TEST_ANON_KEY"):
        Pipeline.from_spec(spec, factory_catalog(1), environ={})
    pipe = Pipeline.from_spec(spec, factory_catalog(1), environ={"TEST_ANON_KEY": "s3cret"})
    assert pipe.anonymiser is not None and pipe.anonymiser.hash("m0").startswith("h:")
    assert Pipeline.from_spec(load_preset(), factory_catalog(1)).anonymiser is None


def test_public_api() -> None:
    assert pipeline_pkg.__all__ == sorted(pipeline_pkg.__all__, key=lambda n: (not n.isupper(), n))
    for name in pipeline_pkg.__all__:
        assert getattr(pipeline_pkg, name) is not None
    with pytest.raises(AttributeError):
        pipeline_pkg.nope  # noqa: B018


@pytest.mark.parametrize(
    "module", ["edgeloop.detect.robust", "edgeloop.detect.base", "edgeloop.pipeline.types"]
)
def test_import_order_has_no_cycle(module: str) -> None:
    code = f"import {module}; import edgeloop.pipeline.pipeline"
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)

"""Live reconfiguration of a running pipeline (``edgeloop.pipeline.reconfigure``): what
the change does not touch keeps running (open windows, learned baselines, delivered and
shadow models), what it changes starts afresh, and a refused plan changes nothing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from _pipeline_helpers import factory_catalog, factory_frame

from edgeloop.detect.robust import RobustDetector
from edgeloop.errors import ConfigError
from edgeloop.pipeline.pipeline import Pipeline
from edgeloop.pipeline.plan import DetectorPlan, PipelinePlan, SummaryPlan, WindowPlan, plan_of
from edgeloop.pipeline.reconfigure import reconfigure
from edgeloop.pipeline.spec import load_preset


def base() -> PipelinePlan:
    return plan_of(load_preset("factory"))


def run(
    p: Pipeline, t0_s: float, seconds: float, seed: int = 0
) -> dict[str, list[tuple[int, int]]]:
    """(sensor, window start) per group over ``seconds`` fed in 0.25 s frames."""
    rng = np.random.default_rng(seed)
    starts: dict[str, list[tuple[int, int]]] = {}
    step = 0.25
    for k in range(round(seconds / step)):
        frame = factory_frame(p.catalog, t0_s + k * step, step, rng)
        prepared, _, _ = p.prepare(frame, 0)
        for feats, _, _ in p.detect_groups(prepared):
            pairs = zip(feats.sensor.tolist(), feats.t0_ns.tolist(), strict=True)
            starts.setdefault(feats.group, []).extend(pairs)
    return starts


def with_threshold(plan: PipelinePlan, group: str, z: float) -> PipelinePlan:
    dets = tuple(
        replace(d, params={**d.params, "z_threshold": z}) if d.group == group else d
        for d in plan.detectors
    )
    return replace(plan, detectors=dets)


def test_a_threshold_change_keeps_windows_and_the_other_groups_baselines() -> None:
    p = Pipeline.from_spec(base(), factory_catalog())
    before = run(p, 0.0, 3.0)
    vib_windower = p._groups[0].windower
    process_det = p.detectors("process")["robust"]
    vib_det = p.detectors("vibration")["robust"]

    done = reconfigure(p, with_threshold(base(), "vibration", 4.0))

    assert done.kept_groups == ("vibration", "process") and not done.restarted_groups
    assert done.built_detectors == ("vibration/robust",)
    assert p.detectors("process")["robust"] is process_det  # its learned baseline stays
    new_vib = p.detectors("vibration")["robust"]
    assert new_vib is not vib_det and isinstance(new_vib, RobustDetector)
    assert p._groups[0].windower is vib_windower
    after = run(p, 3.0, 3.0)
    # Each vibration sensor's windows continue evenly spaced across the change: none
    # lost, none doubled.
    windows = before["vibration"] + after["vibration"]
    for sensor in {s for s, _ in windows}:
        t0 = np.array([t for s, t in windows if s == sensor], dtype=np.int64)
        assert len(t0) >= 8 and len(set(np.diff(t0).tolist())) == 1, sensor
    assert p.spec.detectors[0].params["z_threshold"] == 4.0


def test_a_changed_window_group_restarts_and_a_new_group_starts_empty() -> None:
    p = Pipeline.from_spec(base(), factory_catalog())
    run(p, 0.0, 2.0)
    plan = base()
    windows = (
        replace(plan.windows[0], features=("mean", "std", "rms")),
        plan.windows[1],
        WindowPlan(
            group="temp_slow", kinds=(plan.windows[1].kinds[0],), size=20, features=("mean",)
        ),
    )
    dets = (*plan.detectors, DetectorPlan(type="robust", group="temp_slow", params={"warmup": 5}))
    done = reconfigure(p, replace(plan, windows=windows, detectors=dets))
    assert done.restarted_groups == ("vibration",)
    assert done.added_groups == ("temp_slow",)
    assert done.kept_groups == ("process",)
    assert p.feature_names("vibration")[:3] == ("mean", "std", "rms")
    assert "temp_slow" in run(p, 2.0, 3.0)


def test_a_summary_period_change_is_refused_and_nothing_changes() -> None:
    p = Pipeline.from_spec(base(), factory_catalog())
    spec, groups = p.spec, list(p._groups)
    plan = replace(with_threshold(base(), "vibration", 4.0), summaries=SummaryPlan(period_s=5.0))
    with pytest.raises(ConfigError, match="summaries"):
        reconfigure(p, plan)
    assert p.spec is spec and p._groups == groups


def test_a_delivered_model_and_a_shadow_move_with_their_group() -> None:
    p = Pipeline.from_spec(base(), factory_catalog())
    names = p.feature_names("process")
    delivered = RobustDetector(len(p.catalog), names, name="onnx")
    shadow = RobustDetector(len(p.catalog), names, name="shadow")
    p.replace_detector("process", "onnx", delivered)  # ModelSwitch's default name
    p.set_shadow("process", shadow, compare_with="onnx")

    reconfigure(p, with_threshold(base(), "process", 5.0))
    assert p.detectors("process")["onnx"] is delivered
    assert p.shadow("process") is shadow

    # Changing the features the delivered model reads is refused, atomically.
    plan = base()
    changed = replace(plan, windows=(plan.windows[0], replace(plan.windows[1], features=("mean",))))
    spec = p.spec
    with pytest.raises(ConfigError, match="delivered model"):
        reconfigure(p, changed)
    assert p.spec is spec and p.detectors("process")["onnx"] is delivered
    # Neither can the group go away.
    with pytest.raises(ConfigError, match="cannot be removed"):
        reconfigure(p, replace(plan, windows=plan.windows[:1], detectors=plan.detectors[:1]))


def test_an_onnx_entry_cannot_bring_a_new_model_file() -> None:
    p = Pipeline.from_spec(base(), factory_catalog())
    plan = base()
    onnx = DetectorPlan(type="onnx", group="process", name="pca", model="/tmp/other.onnx")
    with pytest.raises(ConfigError, match="registry"):
        reconfigure(p, replace(plan, detectors=(*plan.detectors, onnx)))
    assert "pca" not in p.detectors("process")

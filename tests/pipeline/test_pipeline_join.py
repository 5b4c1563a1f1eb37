"""Joined window groups: one multivariate row per machine and window end."""

from __future__ import annotations

import numpy as np
import pytest
from _pipeline_helpers import T0, factory_catalog, factory_frame

from edgeloop.errors import ConfigError
from edgeloop.pipeline.join import Joiner, channel_of
from edgeloop.pipeline.pipeline import Pipeline
from edgeloop.pipeline.spec import load_spec
from edgeloop.pipeline.types import Features
from edgeloop.telemetry.frame import SensorCatalog, SensorKind, SensorSpec

JOINED = """
windows:
  - {group: proc, kinds: [temperature, pressure, current], size: 1, features: [mean],
     join: machine}
summaries: null
"""


def feats(sensor: list[int], t1: list[int], values: list[float]) -> Features:
    t = np.array(t1, np.int64)
    v = np.array(values, np.float32)[:, None]
    return Features("g", ("mean",), np.array(sensor, np.uint32), t, t, v)


def test_channel_strips_the_machine_prefix() -> None:
    assert channel_of("m1.temp", "m1") == "temp"
    assert channel_of("m1/temp", "m1") == "temp"
    assert channel_of("temp", "m1") == "temp"
    assert channel_of("m10.temp", "m1") == "m10.temp"


def test_rows_split_across_blocks_are_joined_when_complete() -> None:
    j = Joiner(machine=[0, 0, 1, 1], channel=["a", "b", "a", "b"])
    out = j.process(feats([0, 2, 3], [5, 5, 5], [1.0, 3.0, 4.0]))
    assert out.sensor.tolist() == [2] and out.values.tolist() == [[3.0, 4.0]]
    out = j.process(feats([1, 0, 1], [5, 6, 6], [2.0, 7.0, 8.0]))
    assert out.sensor.tolist() == [0, 0]
    assert out.t1_ns.tolist() == [5, 6]
    assert out.values.tolist() == [[1.0, 2.0], [7.0, 8.0]]
    assert j.incomplete == 0


def test_a_key_missing_a_channel_is_given_up_once_a_later_one_completes() -> None:
    j = Joiner(machine=[0, 0], channel=["a", "b"])
    assert len(j.process(feats([0], [1], [1.0]))) == 0  # b of t=1 may still come
    out = j.process(feats([0, 1], [2, 2], [2.0, 3.0]))
    assert out.t1_ns.tolist() == [2] and j.incomplete == 1
    out = j.process(feats([1], [1], [9.0]))  # too late: the key was given up
    assert len(out) == 0


def test_machines_must_share_channels() -> None:
    with pytest.raises(ConfigError, match="share their channels"):
        Joiner(machine=[0, 0, 1], channel=["a", "b", "c"])


def test_pipeline_scores_one_row_per_machine_and_time() -> None:
    spec = load_spec(JOINED + "detectors:\n  - {group: proc, type: robust, params: {warmup: 3}}\n")
    pipe = Pipeline.from_spec(spec, factory_catalog(3))
    rng = np.random.default_rng(1)
    out = pipe.process(factory_frame(pipe.catalog, 0.0, 2.0, rng), T0)
    (f,) = out.features
    assert f.names == ("temp.mean", "press.mean", "current.mean")
    assert len(f) == 3 * 20  # 3 machines x 20 rows (10 Hz, 2 s)
    assert sorted(set(f.sensor.tolist())) == [1, 5, 9]  # each machine's first process sensor
    # the columns hold the machine's own sensors (values 20 + catalog index + noise)
    m1 = f.values[f.sensor == 5]
    assert np.allclose(m1.mean(axis=0), [25.0, 26.0, 27.0], atol=0.3)
    assert np.all(np.diff(f.t1_ns[f.sensor == 5]) > 0)
    assert len(out.scores[0].score) == len(f)


def test_joined_group_gets_sensors_added_later() -> None:
    cat = factory_catalog(1)
    pipe = Pipeline.from_spec(load_spec(JOINED), cat)
    cat.add(SensorSpec("m9/temp", "m9", SensorKind.TEMPERATURE, 10.0))
    cat.add(SensorSpec("m9/press", "m9", SensorKind.PRESSURE, 10.0))
    cat.add(SensorSpec("m9/current", "m9", SensorKind.CURRENT, 10.0))
    out = pipe.process(factory_frame(cat, 0.0, 1.0, np.random.default_rng(2)), T0)
    assert sorted(set(out.features[0].sensor.tolist())) == [1, 4]


def test_joined_group_without_sensors_is_a_config_error() -> None:
    cat = SensorCatalog.of([SensorSpec("v", "m", SensorKind.VIBRATION, 100.0)])
    with pytest.raises(ConfigError, match="join: machine needs"):
        Pipeline.from_spec(load_spec(JOINED), cat)

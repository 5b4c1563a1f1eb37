"""FilterStage and Anonymiser: pure, counted, deterministic."""

from __future__ import annotations

import numpy as np
import pytest
from _pipeline_helpers import factory_catalog

from edgeloop.errors import ConfigError
from edgeloop.pipeline.stages import Anonymiser, FilterStage
from edgeloop.telemetry.frame import Frame, SensorKind, SensorSpec
from edgeloop.telemetry.records import Event, Severity, SummaryBatch


def every_sensor_frame(n_sensors: int, per_sensor: int = 3) -> Frame:
    s = np.repeat(np.arange(n_sensors), per_sensor)
    return Frame.from_arrays(s, np.tile(np.arange(per_sensor), n_sensors), s * 10.0)


def test_keep_by_kind_and_by_glob() -> None:
    cat = factory_catalog(2)  # m0/vib m0/temp m0/press m0/current m1/...
    f = every_sensor_frame(len(cat))
    vib = FilterStage(cat, "keep", kinds=[SensorKind.VIBRATION])
    out = vib.process(f)
    assert sorted(set(out.sensor.tolist())) == [0, 4]
    assert vib.dropped == {"sensor": 18, "range": 0}
    m1 = FilterStage(cat, "keep", sensors=["m1/*"], kinds=["temperature", "pressure"])
    assert sorted(set(m1.process(f).sensor.tolist())) == [5, 6]


def test_drop_selected_sensors() -> None:
    cat = factory_catalog(1)
    stage = FilterStage(cat, "drop", sensors=["*/current"])
    out = stage.process(every_sensor_frame(4))
    assert 3 not in out.sensor.tolist() and len(out) == 9
    assert stage.dropped_total == 3


def test_range_drops_out_of_range_and_nan_of_selected_sensors_only() -> None:
    cat = factory_catalog(1)
    stage = FilterStage(cat, "range", kinds=["temperature"], value_range=(-40.0, 150.0))
    f = Frame.from_arrays([1, 1, 1, 1, 0], [0, 1, 2, 3, 0], [20.0, 500.0, np.nan, -40.0, 900.0])
    out = stage.process(f)
    assert out.value.tolist() == [20.0, -40.0, 900.0]  # vibration untouched
    assert stage.dropped == {"sensor": 0, "range": 2}


def test_nothing_dropped_returns_the_same_frame() -> None:
    cat = factory_catalog(1)
    f = every_sensor_frame(4)
    assert FilterStage(cat, "keep", kinds=list(SensorKind)).process(f) is f


def test_sensors_registered_later_are_classified() -> None:
    cat = factory_catalog(1)
    stage = FilterStage(cat, "keep", kinds=["vibration"])
    stage.process(every_sensor_frame(4))
    cat.add(SensorSpec("m9/vib", "m9", SensorKind.VIBRATION, 2000.0))
    cat.add(SensorSpec("m9/temp", "m9", SensorKind.TEMPERATURE, 10.0))
    out = stage.process(every_sensor_frame(6))
    assert sorted(set(out.sensor.tolist())) == [0, 4]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": "range"}, "range"),
        ({"mode": "keep", "value_range": (0.0, 1.0)}, "range"),
        ({"mode": "range", "value_range": (2.0, 1.0)}, "range"),
        ({"mode": "clip"}, "mode"),
    ],
)
def test_bad_filters_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=f"filters.{field}"):
        FilterStage(factory_catalog(1), **kwargs)  # type: ignore[arg-type]


def event() -> Event:
    return Event(
        node="edge-7",
        machine="press-1",
        sensor="press-1/vib",
        severity=Severity.ANOMALY,
        t_start_ns=1,
        t_end_ns=2,
        detected_ns=3,
        score=0.9,
        threshold=0.5,
        detector="robust",
        reason="robust score 0.90",
        features={"rms": 1.0},
        raw=Frame.from_arrays([0], [1], [1.0]),
        raw_sensors=("press-1/vib",),
    )


def test_event_fields_are_hashed_consistently_or_dropped() -> None:
    a = Anonymiser(b"secret-key", hash_fields=["machine", "sensor"], drop_fields=["raw"])
    e = a.event(event())
    assert e.machine == a.hash("press-1") and e.machine.startswith("h:") and len(e.machine) == 14
    assert e.sensor == a.hash("press-1/vib")
    assert e.raw is None and e.raw_sensors == ()
    assert e.node == "edge-7" and e.features == {"rms": 1.0} and e.score == 0.9
    # Same name, same hash (the hub can still group); another key, another hash.
    assert a.event(event()) == e
    assert Anonymiser(b"other-key", hash_fields=["machine"]).hash("press-1") != e.machine


def test_summary_sensor_names_are_hashed_like_event_sensors() -> None:
    a = Anonymiser(b"k", hash_fields=["sensor"])
    one = np.ones(1)
    b = SummaryBatch(
        np.zeros(1, np.uint32),
        *(one.astype(np.int64),) * 3,
        *(one.astype(np.float32),) * 4,
        sensor_names=("press-1/vib",),
    )
    out = a.process(b)
    assert out.sensor_names == (a.event(event()).sensor,)
    assert np.array_equal(out.count, b.count)
    dropped = Anonymiser(b"", drop_fields=["sensor"]).summary(b)
    assert dropped.sensor_names == ()


def test_bad_anonymiser_config() -> None:
    with pytest.raises(ConfigError, match="cannot anonymise"):
        Anonymiser(b"k", hash_fields=["features"])
    with pytest.raises(ConfigError, match="both"):
        Anonymiser(b"k", hash_fields=["machine"], drop_fields=["machine"])
    with pytest.raises(ConfigError, match="key"):
        Anonymiser(b"", hash_fields=["machine"])

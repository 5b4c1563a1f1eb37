"""Incident logic: one event per incident, hysteresis, dropouts, rules and actions."""

from __future__ import annotations

import numpy as np

from edgeloop.node.decide import Decider, Rule
from edgeloop.pipeline.types import Features, Scores
from edgeloop.telemetry.frame import Frame, SensorCatalog, SensorKind, SensorSpec
from edgeloop.telemetry.records import Severity

S = 1_000_000_000


def catalog() -> SensorCatalog:
    return SensorCatalog.of(
        [
            SensorSpec("m1.vib", "m1", SensorKind.VIBRATION),
            SensorSpec("m1.temp", "m1", SensorKind.TEMPERATURE),
            SensorSpec("m2.vib", "m2", SensorKind.VIBRATION),
        ]
    )


def block(
    sensors: list[int], t_s: float, scores: list[float], conf: float = 1.0, span_s: float = 0.5
):
    n = len(sensors)
    feats = Features(
        group="vibration",
        names=("rms", "kurtosis"),
        sensor=np.array(sensors, np.uint32),
        t0_ns=np.full(n, int((t_s - span_s) * S), np.int64),
        t1_ns=np.full(n, int(t_s * S), np.int64),
        values=np.ones((n, 2), np.float32),
    )
    sc = Scores(
        score=np.array(scores, np.float32),
        threshold=0.5,
        confidence=np.full(n, conf, np.float32),
        top_feature=np.array([1] * n, np.int32),
        detector="robust",
    )
    return feats, sc


def test_one_event_per_incident_then_rearm_after_quiet() -> None:
    d = Decider("gw", catalog(), clear_after_s=2.0)
    out = d.decide(*map(lambda x: [x], block([0, 2], 1.0, [0.9, 0.1])), now_ns=1 * S)
    assert [x.event.machine for x in out] == ["m1"]
    assert out[0].event.sensor == "m1.vib"
    assert "kurtosis" in out[0].event.reason
    # still anomalous: the incident continues, nothing new is raised
    f, s = block([0, 1], 1.5, [0.95, 0.7])
    assert d.decide([f], [s], now_ns=int(1.5 * S)) == []
    assert d.open_incidents == ["m1"]
    # quiet for less than clear_after_s: still open
    f, s = block([0], 3.0, [0.1])
    assert d.decide([f], [s], now_ns=3 * S) == []
    assert d.open_incidents == ["m1"]
    # quiet long enough: closed, and a new anomaly opens a new incident
    f, s = block([0], 4.0, [0.1])
    d.decide([f], [s], now_ns=4 * S)
    assert d.open_incidents == []
    f, s = block([1], 5.0, [0.8])
    out = d.decide([f], [s], now_ns=5 * S)
    assert [x.event.sensor for x in out] == ["m1.temp"]


def test_a_continuous_alarm_on_windows_longer_than_clear_after_is_one_incident() -> None:
    # 1 s windows, clear_after 0.5 s: between two anomalous windows 1 s of data time
    # passes without one, yet the alarm never stopped.
    d = Decider("gw", catalog(), clear_after_s=0.5)
    events = []
    for k in range(1, 11):  # windows of 10 samples at 10 Hz: t1 - t0 = 0.9 s
        f, s = block([1], float(k), [0.9], span_s=0.9)
        events += d.decide([f], [s], now_ns=k * S)
        # a frame between two windows (data time moves on, no window completes)
        events += d.decide([], [], now_ns=int((k + 0.7) * S))
    assert len(events) == 1 and d.open_incidents == ["m1"]
    # The next window is normal: closed once it is surely in.
    f, s = block([1], 11.0, [0.1], span_s=0.9)
    d.decide([f], [s], now_ns=11 * S)
    d.decide([], [], now_ns=12 * S)
    assert d.open_incidents == []
    # Short windows still close after clear_after_s.
    f, s = block([0], 12.0, [0.9], span_s=0.1)
    assert len(d.decide([f], [s], now_ns=12 * S)) == 1
    d.decide([], [], now_ns=int(12.6 * S))
    assert d.open_incidents == []


def test_open_incidents_outside_a_group_name_what_else_raised_them() -> None:
    d = Decider("gw", catalog(), clear_after_s=2.0)
    f, s = block([0], 1.0, [0.9])  # m1's vibration
    d.decide([f], [s], now_ns=1 * S)
    assert d.open_incidents == ["m1"]
    assert d.open_incidents_outside("vibration") == []
    assert d.open_incidents_outside("process") == ["m1"]
    assert d.open_incidents_outside(None) == ["m1"]
    # m1's temperature extends the same incident: now tainted for vibration too.
    f, s = block([1], 1.5, [0.9])
    f = Features("process", f.names, f.sensor, f.t0_ns, f.t1_ns, f.values)
    d.decide([f], [s], now_ns=int(1.5 * S))
    assert d.open_incidents_outside("vibration") == ["m1"]
    # Closed, then opened again by vibration alone: the old group is forgotten.
    f, s = block([0], 5.0, [0.1])
    d.decide([f], [s], now_ns=5 * S)
    assert d.open_incidents == []
    f, s = block([0], 6.0, [0.9])
    d.decide([f], [s], now_ns=6 * S)
    assert d.open_incidents_outside("vibration") == []


def test_low_confidence_windows_never_open_incidents() -> None:
    d = Decider("gw", catalog())
    f, s = block([0], 1.0, [0.99], conf=0.5)
    assert d.decide([f], [s], now_ns=S) == []


def test_highest_scoring_row_explains_the_incident() -> None:
    d = Decider("gw", catalog())
    f, s = block([0, 1], 1.0, [0.6, 0.97])
    out = d.decide([f], [s], now_ns=S)
    assert len(out) == 1 and out[0].event.sensor == "m1.temp"
    assert abs(out[0].event.score - 0.97) < 1e-6


def test_first_matching_rule_sets_severity_and_actions() -> None:
    rules = [
        Rule("alarm", min_score=0.9, severity=Severity.ALARM, actions=("relay",)),
        Rule("anomaly"),
    ]
    d = Decider("gw", catalog(), rules=rules)
    f, s = block([0, 2], 1.0, [0.95, 0.6])
    out = {x.event.machine: x for x in d.decide([f], [s], now_ns=S)}
    assert out["m1"].event.severity == Severity.ALARM and out["m1"].actions == ("relay",)
    assert out["m2"].event.severity == Severity.ANOMALY and out["m2"].actions == ()


def test_silent_sensor_raises_a_dropout_once_and_holds_the_incident() -> None:
    cat = catalog()
    d = Decider("gw", cat, stale_after_s=1.0, clear_after_s=0.5)
    all_sensors = Frame.from_arrays([0, 1, 2], [0, 0, 0], [1.0, 1.0, 1.0])
    d.observe(all_sensors, now_ns=0)
    d.decide([], [], now_ns=0)
    no_temp = Frame.from_arrays([0, 2], [S, S], [1.0, 1.0])
    for t in (0.5, 1.0):
        d.observe(no_temp, now_ns=int(t * S))
        assert d.decide([], [], now_ns=int(t * S)) == []
    d.observe(no_temp, now_ns=int(1.5 * S))
    out = d.decide([], [], now_ns=int(1.5 * S))
    assert [(x.event.sensor, x.event.detector) for x in out] == [("m1.temp", "rule:dropout")]
    # still silent: no second event, incident stays open past clear_after_s
    d.observe(no_temp, now_ns=3 * S)
    assert d.decide([], [], now_ns=3 * S) == []
    assert d.open_incidents == ["m1"]
    # data returns: the incident can close
    d.observe(all_sensors, now_ns=4 * S)
    d.decide([], [], now_ns=4 * S)
    d.observe(all_sensors, now_ns=5 * S)
    d.decide([], [], now_ns=5 * S)
    assert d.open_incidents == []

from edgeloop.scenarios.scoring import EventTime, FaultInterval, score_events


def test_fault_detected_only_inside_its_interval_plus_one_window() -> None:
    faults = [FaultInterval("m1", "imbalance", 100, 200), FaultInterval("m2", "stuck", 300, 400)]
    events = [
        EventTime("m1", 99),  # before the fault: false
        EventTime("m1", 205),  # within end + window: true
        EventTime("m2", 450),  # after end + window: false
        EventTime("m3", 150),  # wrong machine: false
    ]
    r = score_events(faults, events, window_ns=10)
    assert r.detected == 1 and r.recall == 0.5
    assert r.true_events == 1 and r.precision == 0.25
    assert [f.machine for f in r.missed] == ["m2"]
    assert r.by_kind == {"imbalance": (1, 1), "stuck": (0, 1)}


def test_no_events_means_zero_recall_and_vacuous_precision() -> None:
    r = score_events([FaultInterval("m1", "x", 0, 10)], [], window_ns=1)
    assert r.recall == 0.0 and r.precision == 1.0

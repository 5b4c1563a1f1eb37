"""FrameValidator: one test per bad-input case, plus equivalence with a per-sample model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _telemetry_helpers import NAMES, SEC, T0, catalog, frame, rows_of
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeloop.errors import RejectReason, TelemetryError
from edgeloop.telemetry.frame import Frame, SensorSpec
from edgeloop.telemetry.validate import (
    MAX_PAYLOAD_BYTES,
    FrameValidator,
    RejectRecord,
    check_payload_size,
    check_rows,
    count_rejects,
)

NOW = T0 + 100 * SEC


def only_example(v: FrameValidator) -> RejectRecord:
    (rec,) = v.examples
    return rec


def test_valid_frame_passes_through_unchanged() -> None:
    v = FrameValidator(catalog())
    f = frame([(0, T0, 1.0), (0, T0 + 1, 2.0), (3, T0, 3.0)])
    assert v.process(f, NOW) is f
    assert v.accepted == 3 and v.rejected == 0 and not v.examples


def test_non_finite_values() -> None:
    v = FrameValidator(catalog())
    f = frame(
        [
            (0, T0, 1.0),
            (0, T0 + 1, math.nan),
            (1, T0, math.inf),
            (1, T0 + 1, 2.5),
            (2, T0, -math.inf),
        ]
    )
    out = v.process(f, NOW)
    assert rows_of(out) == [(0, T0, 1.0), (1, T0 + 1, 2.5)]
    assert v.rejects == {RejectReason.NON_FINITE: 3}
    assert v.accepted == 2
    rec = only_example(v)
    assert (rec.reason, rec.field, rec.count) == (RejectReason.NON_FINITE, "value", 3)
    assert str(rec).startswith("value: non_finite (3 samples of 3 sensors")
    assert f"sensor '{NAMES[0]}' at ts {T0 + 1} (value nan)" in rec.detail


def test_unknown_sensor() -> None:
    v = FrameValidator(catalog())
    f = frame([(7, T0, 1.0), (1, T0, 2.0), (5, T0 + 1, 3.0)])
    out = v.process(f, NOW)
    assert rows_of(out) == [(1, T0, 2.0)]
    assert v.rejects == {RejectReason.UNKNOWN_SENSOR: 2}
    rec = only_example(v)
    assert str(rec).startswith("sensor: unknown_sensor (2 samples of 2 sensors")
    assert "sensor #7" in rec.detail and "catalog of 5 sensors" in rec.detail


def test_timestamp_far_in_the_future() -> None:
    v = FrameValidator(catalog(), max_future_ns=5 * SEC)
    f = frame([(0, NOW + 5 * SEC, 1.0), (0, NOW + 6 * SEC, 2.0), (2, NOW, 3.0)])
    out = v.process(f, NOW)
    assert rows_of(out) == [(0, NOW + 5 * SEC, 1.0), (2, NOW, 3.0)]  # the limit is inclusive
    assert v.rejects == {RejectReason.FUTURE: 1}
    rec = only_example(v)
    assert str(rec).startswith("ts: future (1 sample of 1 sensor")
    assert "6.000 s ahead of now, limit 5 s" in rec.detail


def test_out_of_order_across_frames() -> None:
    v = FrameValidator(catalog())
    v.process(frame([(0, T0 + 10, 1.0), (1, T0 + 10, 1.0)]), NOW)
    f = frame([(0, T0 + 9, 2.0), (0, T0 + 10, 3.0), (0, T0 + 11, 4.0), (1, T0 + 5, 5.0)])
    out = v.process(f, NOW)
    # strictly older is rejected; an equal timestamp is accepted (documented choice)
    assert rows_of(out) == [(0, T0 + 10, 3.0), (0, T0 + 11, 4.0)]
    assert v.rejects == {RejectReason.OUT_OF_ORDER: 2}
    rec = only_example(v)
    assert str(rec).startswith("ts: out_of_order (2 samples of 2 sensors")
    assert f"at ts {T0 + 9} (value 2.0), older than its last accepted ts {T0 + 10}" in rec.detail
    assert v.last_ts[:2].tolist() == [T0 + 11, T0 + 10]


def test_out_of_order_within_a_frame_interleaved() -> None:
    v = FrameValidator(catalog())
    f = frame([(0, 30, 1.0), (1, 5, 2.0), (0, 20, 3.0), (1, 6, 4.0), (0, 30, 5.0), (0, 25, 6.0)])
    out = v.process(f, NOW)
    assert rows_of(out) == [(0, 30, 1.0), (1, 5, 2.0), (1, 6, 4.0), (0, 30, 5.0)]
    assert v.rejects == {RejectReason.OUT_OF_ORDER: 2}
    assert "at ts 20 (value 3.0), older than its last accepted ts 30" in only_example(v).detail


def test_oversized_frame_is_rejected_whole_and_later_frames_pass() -> None:
    v = FrameValidator(catalog(), max_batch=3)
    big = frame([(0, T0 + i, float(i)) for i in range(4)])
    assert len(v.process(big, NOW)) == 0
    assert v.rejects == {RejectReason.OVERSIZED: 4}
    assert str(only_example(v)).startswith("frame: oversized (4 rows > max_batch 3")
    ok = frame([(0, T0, 1.0), (1, T0, 2.0)])
    assert rows_of(v.process(ok, NOW)) == [(0, T0, 1.0), (1, T0, 2.0)]


def test_each_rejected_sample_gets_one_reason_in_priority_order() -> None:
    v = FrameValidator(catalog())
    v.process(frame([(0, T0, 0.0)]), NOW)
    f = frame(
        [
            (9, NOW + 99 * SEC, math.nan),  # unknown wins over everything
            (0, NOW + 99 * SEC, math.nan),  # non-finite wins over future
            (0, T0 - 1, math.inf),  # non-finite wins over out-of-order
            (0, NOW + 99 * SEC, 1.0),  # future
            (0, T0 - 1, 1.0),  # out of order
            (0, T0 + 1, 7.0),  # valid
        ]
    )
    out = v.process(f, NOW)
    assert rows_of(out) == [(0, T0 + 1, 7.0)]
    assert v.rejects == {
        RejectReason.UNKNOWN_SENSOR: 1,
        RejectReason.NON_FINITE: 2,
        RejectReason.FUTURE: 1,
        RejectReason.OUT_OF_ORDER: 1,
    }
    assert v.accepted == 2 and v.rejected == 5
    assert [r.reason for r in v.examples] == [
        RejectReason.UNKNOWN_SENSOR,
        RejectReason.NON_FINITE,
        RejectReason.FUTURE,
        RejectReason.OUT_OF_ORDER,
    ]
    assert count_rejects(v.examples) == v.rejects


def test_rejected_future_sample_does_not_move_the_watermark() -> None:
    v = FrameValidator(catalog())
    v.process(frame([(0, NOW + 60 * SEC, 1.0)]), NOW)
    assert rows_of(v.process(frame([(0, NOW, 2.0)]), NOW)) == [(0, NOW, 2.0)]


def test_catalog_growth_is_picked_up() -> None:
    cat = catalog()
    v = FrameValidator(cat)
    f = frame([(5, T0, 1.0)])
    assert len(v.process(f, NOW)) == 0
    cat.add(SensorSpec("late.sensor", "m09"))
    assert rows_of(v.process(f, NOW)) == [(5, T0, 1.0)]
    assert v.rejects == {RejectReason.UNKNOWN_SENSOR: 1}


def test_examples_are_bounded() -> None:
    v = FrameValidator(catalog(), max_examples=3)
    for i in range(10):
        v.process(frame([(0, T0, math.nan), (9, T0, 1.0)]), NOW + i)
    assert len(v.examples) == 3
    assert v.rejects == {RejectReason.NON_FINITE: 10, RejectReason.UNKNOWN_SENSOR: 10}


def test_check_payload_size_and_rows() -> None:
    check_payload_size(MAX_PAYLOAD_BYTES)
    with pytest.raises(TelemetryError) as info:
        check_payload_size(MAX_PAYLOAD_BYTES + 1, field="body")
    assert (info.value.field, info.value.reason) == ("body", RejectReason.OVERSIZED)
    assert (
        str(info.value)
        == f"body: oversized ({MAX_PAYLOAD_BYTES + 1} bytes > limit {MAX_PAYLOAD_BYTES})"
    )
    check_rows(10, 10)
    with pytest.raises(TelemetryError, match=r"^frame: oversized \(11 rows > limit 10\)$"):
        check_rows(11, 10)


def test_reject_record_as_error() -> None:
    rec = RejectRecord(RejectReason.WRONG_TYPE, "records[2].ts", "expected integer ns")
    err = rec.error()
    assert (err.field, err.reason, str(err)) == (rec.field, rec.reason, str(rec))


# -- equivalence with a per-sample reference model --------------------------------------

N_KNOWN = 4


def reference(
    frames: list[list[tuple[int, int, float]]], now: int, max_future: int
) -> tuple[list[list[tuple[int, int, float]]], dict[RejectReason, int]]:
    """The rules written as a plain loop over samples."""
    last: dict[int, int] = {}
    counts: dict[RejectReason, int] = {}
    outs = []
    for rows in frames:
        out = []
        for s, t, x in rows:
            if s >= N_KNOWN:
                reason = RejectReason.UNKNOWN_SENSOR
            elif not math.isfinite(x):
                reason = RejectReason.NON_FINITE
            elif t > now + max_future:
                reason = RejectReason.FUTURE
            elif t < last.get(s, -(2**63)):
                reason = RejectReason.OUT_OF_ORDER
            else:
                last[s] = t
                out.append((s, t, x))
                continue
            counts[reason] = counts.get(reason, 0) + 1
        outs.append(out)
    return outs, counts


Rows = list[tuple[int, int, float]]


def check_against_reference(batches: list[tuple[Rows, str]], now: int, max_future: int) -> None:
    frames = []
    for part, how in batches:
        if how == "by-sensor":
            part = sorted(part, key=lambda r: (r[0], r[1]))
        elif how == "by-time":
            part = sorted(part, key=lambda r: r[1])
        frames.append(part)
    want, want_counts = reference(frames, now, max_future)
    v = FrameValidator(catalog(NAMES[:N_KNOWN]), max_future_ns=max_future)
    for part, expected in zip(frames, want, strict=True):
        assert rows_of(v.process(frame(part), now)) == expected
    assert dict(v.rejects) == want_counts
    assert v.accepted == sum(len(o) for o in want)


values = st.sampled_from([0.5, 1.0, -2.0, math.nan, math.inf])
layout = st.sampled_from(["as-is", "by-sensor", "by-time"])


def frames_of(ts: st.SearchStrategy[int]) -> st.SearchStrategy[list[tuple[Rows, str]]]:
    # Clean frames (every check passes) reach the fast paths; dirty ones the general path.
    dirty = st.lists(st.tuples(st.integers(0, N_KNOWN + 1), ts, values), max_size=25)
    clean = st.lists(st.tuples(st.integers(0, N_KNOWN - 1), ts, st.just(1.0)), max_size=12)
    return st.lists(st.tuples(dirty | clean, layout), max_size=5)


@given(frames_of(st.integers(-5, 40)))
@settings(max_examples=300)
def test_matches_per_sample_reference(batches: list[tuple[Rows, str]]) -> None:
    check_against_reference(batches, now=30, max_future=5)


EXTREME = st.sampled_from([-(2**63), -(2**62), -1, 0, 1, 2**62, 2**63 - 6])


@given(frames_of(EXTREME | st.integers(-(2**63), 2**63 - 6)))
@settings(max_examples=100)
def test_matches_reference_over_the_whole_int64_range(batches: list[tuple[Rows, str]]) -> None:
    # time spans this wide take the rank-based branch of the running maximum
    check_against_reference(batches, now=2**63 - 6, max_future=5)


def test_fast_path_keeps_state_for_time_ordered_interleaved_frames() -> None:
    v = FrameValidator(catalog())
    f = Frame.from_arrays(np.tile([0, 1, 2], 4), T0 + np.arange(12), np.ones(12))
    assert v.process(f, NOW) is f
    assert v.last_ts[:3].tolist() == [T0 + 9, T0 + 10, T0 + 11]
    late = frame([(0, T0 + 8, 1.0), (1, T0 + 10, 1.0)])
    assert rows_of(v.process(late, NOW)) == [(1, T0 + 10, 1.0)]

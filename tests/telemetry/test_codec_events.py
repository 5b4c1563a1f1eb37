"""Events on the wire, version 2 (columns) and version 1 (a map per event, still read):
round trips, the columnar view, one test per bad-input case, fuzzing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest
from _telemetry_helpers import SEC, T0, assert_events_equal, events, frame, repack, unpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeloop.errors import CodecError, RejectReason
from edgeloop.telemetry import codec
from edgeloop.telemetry.codec_core import _enc_i8, _enc_i8_delta, _enc_u4
from edgeloop.telemetry.codec_events import _enc_f8
from edgeloop.telemetry.event_columns import EventColumns
from edgeloop.telemetry.records import Event, Severity


def event(i: int, **kw: Any) -> Event:
    args: dict[str, Any] = {
        "node": "gw1",
        "machine": f"m{i % 3}",
        "sensor": f"m{i % 3}.vib_x",
        "severity": Severity.ALARM if i % 2 else Severity.ANOMALY,
        "t_start_ns": T0 + i * SEC,
        "t_end_ns": T0 + (i + 1) * SEC,
        "detected_ns": T0 + (i + 2) * SEC,
        "score": 0.9,
        "threshold": 0.8,
        "detector": "zscore",
        "reason": f"rms high #{i}",
        "features": {"rms": 2.5 + i, "kurtosis": 3.0},
        "raw": frame([(0, T0 + i, 1.5), (1, T0 + i + 5, -2.0)]) if i % 2 == 0 else None,
        "raw_sensors": ("m0.vib_x", "m0.temp") if i % 2 == 0 else (),
    }
    args.update(kw)
    return Event(**args)


EVENTS = [event(i) for i in range(6)]
GOOD = [codec.encode_events(EVENTS), codec.encode_events(EVENTS[:2])]


def expect(bad: bytes, reason: RejectReason, field: str) -> CodecError:
    """``bad`` is refused naming ``field``; the good payloads beside it still decode."""
    with pytest.raises(CodecError) as info:
        codec.decode_events(bad)
    assert (info.value.field, info.value.reason) == (field, reason), str(info.value)
    for good in GOOD:
        assert len(codec.decode_events(good)) in (2, 6)
    return info.value


def with_u4(payload: bytes, change: Callable[[np.ndarray[Any, Any], int], None]) -> bytes:
    """``payload`` with its u4 column changed in place by ``change(u4, n)``."""
    env = unpack(payload)
    u4 = codec.decode_events(payload)
    n = len(u4)
    cols = np.concatenate(
        (
            u4.codes.reshape(-1),
            np.diff(u4.feature_offsets),
            np.diff(u4.raw_sensor_offsets),
            u4.feature_keys,
            u4.raw_sensor_names,
        )
    ).astype(np.uint32)
    change(cols, n)
    env["u4"] = _enc_u4(cols)
    out: bytes = msgpack.packb(env, use_bin_type=True)
    return out


# -- round trips ------------------------------------------------------------------------


@given(st.lists(events(), max_size=5))
def test_version_1_and_2_decode_to_the_same_events(evs: list[Event]) -> None:
    new, old = codec.encode_events(evs), codec.encode_events_v1(evs)
    assert (unpack(new)["v"], unpack(old)["v"]) == (2, 1)
    from_new, from_old = codec.decode_events(new), codec.decode_events(old)
    assert from_new.wire == new and from_old.wire == b""
    for a, b, c in zip(evs, from_new, from_old, strict=True):
        assert_events_equal(a, b)
        assert_events_equal(a, c)


def test_columns_are_a_sequence_of_events() -> None:
    cols = codec.decode_events(GOOD[0])
    assert isinstance(cols, EventColumns) and len(cols) == 6
    assert_events_equal(cols[-1], cols[5])
    assert [e.reason for e in cols[1:3]] == ["rms high #1", "rms high #2"]
    assert [e.reason for e in cols] == [e.reason for e in EVENTS]
    assert cols[0].raw is not None and cols[1].raw is None
    with pytest.raises(IndexError, match="event 6 out of range"):
        cols[6]
    # a name repeated by every event travels once
    assert cols.strings.count("gw1") == 1 and cols.strings.count("zscore") == 1


def test_columnar_payload_is_smaller_than_a_map_per_event() -> None:
    evs = [event(i, raw=None, raw_sensors=()) for i in range(200)]
    assert len(codec.encode_events(evs)) * 2 < len(codec.encode_events_v1(evs))


def test_encoding_columns_again_gives_equal_events() -> None:
    cols = codec.decode_events(GOOD[0])
    again = codec.decode_events(codec.encode_events(cols))
    for a, b in zip(EVENTS, again, strict=True):
        assert_events_equal(a, b)


def test_encode_refuses_raw_indices_beyond_the_names_and_non_events() -> None:
    with pytest.raises(ValueError, match=r"index 5 beyond 2 names \(events\[0\]\)"):
        codec.encode_events([event(0, raw=frame([(5, T0, 1.0)]))])
    with pytest.raises(TypeError, match=r"events\[1\]: expected Event, got str"):
        codec.encode_events([event(0), "event"])  # type: ignore[list-item]


# -- bad input, one test per case -------------------------------------------------------


def test_unknown_version_names_the_supported_ones() -> None:
    err = expect(
        repack(GOOD[0], lambda e: e.update(v=3)), RejectReason.SCHEMA_VERSION, "envelope.v"
    )
    assert "events version 3 not supported; supported: [1, 2]" in err.detail


def test_string_index_beyond_the_table_names_the_event_and_field() -> None:
    def machine_of_event_4(u4: np.ndarray[Any, Any], n: int) -> None:
        u4[1 * n + 4] = 999  # codes row 1 is machine

    err = expect(with_u4(GOOD[0], machine_of_event_4), RejectReason.MALFORMED, "events[4].machine")
    assert "string index 999 beyond" in err.detail


def test_feature_key_beyond_the_table_names_the_event() -> None:
    def last_key(u4: np.ndarray[Any, Any], n: int) -> None:
        u4[8 * n + 11] = 999  # keys follow codes (6n) and two count rows (2n); 2 per event

    expect(with_u4(GOOD[0], last_key), RejectReason.MALFORMED, "events[5].features")


def test_unknown_severity() -> None:
    def reason_as_severity(u4: np.ndarray[Any, Any], n: int) -> None:
        u4[3 * n + 2] = u4[5 * n + 2]  # event 2's severity names its reason string

    err = expect(with_u4(GOOD[0], reason_as_severity), RejectReason.MALFORMED, "events[2].severity")
    assert "unknown severity 'rms high #2'" in err.detail


def test_feature_given_twice() -> None:
    def same_key(u4: np.ndarray[Any, Any], n: int) -> None:
        u4[8 * n + 7] = u4[8 * n + 6]  # event 3: kurtosis -> rms

    err = expect(with_u4(GOOD[0], same_key), RejectReason.MALFORMED, "events[3].features")
    assert "'rms' given twice" in err.detail


def test_counts_that_do_not_add_up_are_truncation() -> None:
    def more_features(u4: np.ndarray[Any, Any], n: int) -> None:
        u4[6 * n] += 1  # event 0 claims 3 features; the keys are 12, not 13

    err = expect(with_u4(GOOD[0], more_features), RejectReason.TRUNCATED, "events.u4")
    assert "values," in err.detail


def test_columns_shorter_than_n_events() -> None:
    expect(repack(GOOD[0], lambda e: e.update(n=60)), RejectReason.TRUNCATED, "events.u4")
    expect(repack(GOOD[0], lambda e: e.update(n=-1)), RejectReason.MALFORMED, "events.n")


def test_f8_and_i8_lengths_are_checked() -> None:
    expect(
        repack(GOOD[1], lambda e: e.update(f8=_enc_f8(np.zeros(3)))),
        RejectReason.TRUNCATED,
        "events.f8",
    )
    expect(
        repack(GOOD[1], lambda e: e.update(i8=_enc_i8_delta(np.zeros(3)))),
        RejectReason.TRUNCATED,
        "events.i8",
    )


def _with_raw_counts(payload: bytes, counts: list[int]) -> bytes:
    env = unpack(payload)
    cols = codec.decode_events(payload)
    i8 = np.concatenate((cols.times.reshape(-1), np.asarray(counts, dtype=np.int64)))
    env["i8"] = _enc_i8_delta(i8)
    out: bytes = msgpack.packb(env, use_bin_type=True)
    return out


def test_raw_counts() -> None:
    expect(_with_raw_counts(GOOD[1], [-2, -1]), RejectReason.MALFORMED, "events[0].raw")
    err = expect(_with_raw_counts(GOOD[1], [1, -1]), RejectReason.TRUNCATED, "events.raw")
    assert "counts add to 1, 2 samples sent" in err.detail


def test_raw_sensor_index_beyond_the_events_names() -> None:
    def bad_sensor(env: dict[str, Any]) -> None:
        env["raw"]["sensor"] = _enc_u4(np.array([0, 7]))

    err = expect(repack(GOOD[1], bad_sensor), RejectReason.MALFORMED, "events[0].raw.sensor")
    assert "sensor index 7 beyond 2 names" in err.detail


def test_wrong_types() -> None:
    expect(
        repack(GOOD[1], lambda e: e.update(strings=["a", 1])),
        RejectReason.WRONG_TYPE,
        "events.strings[1]",
    )
    expect(repack(GOOD[1], lambda e: e.update(u4=[1, 2])), RejectReason.WRONG_TYPE, "events.u4")
    expect(repack(GOOD[1], lambda e: e.pop("f8")), RejectReason.MALFORMED, "events.f8")
    expect(repack(GOOD[1], lambda e: e.update(raw=5)), RejectReason.MALFORMED, "events.raw")


# -- fuzzing: decoding is total ------------------------------------------------------------


@st.composite
def v2_envelopes(draw: st.DrawFn) -> bytes:
    """Version-2 envelopes with random values for its keys (columns of a few shapes)."""
    column = st.sampled_from(
        [_enc_u4(np.arange(k)) for k in (0, 3, 8, 12)]
        + [_enc_i8(np.arange(3) - 1), _enc_f8(np.zeros(4)), b"", b"\x28\xb5\x2f\xfd"]
    )
    value = st.one_of(
        st.none(), st.integers(-3, 3), column, st.lists(st.text(max_size=3), max_size=4)
    )
    raw = st.dictionaries(st.sampled_from(["sensor", "ts", "value"]), column)
    env: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "n": st.integers(-1, 3),
                "strings": st.lists(st.sampled_from(["gw1", "alarm", "x"]), max_size=5),
                "u4": value,
                "i8": value,
                "f8": value,
                "raw": raw | value,
            },
        )
    )
    env.update(v=2, k="events")
    out: bytes = msgpack.packb(env, use_bin_type=True)
    return out


@given(v2_envelopes())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_version_2_envelopes(data: bytes) -> None:
    try:
        cols = codec.decode_events(data)
    except CodecError as exc:
        assert isinstance(exc.reason, RejectReason) and exc.field
        return
    for e in cols:  # what decodes is self-consistent: every event can be built
        assert isinstance(e, Event)

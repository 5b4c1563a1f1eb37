"""The wire codec: round trips, one test per bad-input case, bomb guard, fuzzing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import numpy as np
import pytest
import zstandard
from _telemetry_helpers import (
    NAMES,
    SEC,
    T0,
    acks,
    assert_events_equal,
    assert_frames_equal,
    assert_summaries_equal,
    batches,
    events,
    frame,
    frames,
    repack,
    summaries,
    unpack,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeloop.errors import CodecError, RejectReason, TelemetryError
from edgeloop.outbox.base import Entry, Priority
from edgeloop.telemetry import codec
from edgeloop.telemetry.frame import Frame
from edgeloop.telemetry.records import Event, Severity, SummaryBatch
from edgeloop.transport.base import Ack, Batch

# -- fixtures of valid payloads -------------------------------------------------------


def good_frame(i: int = 0) -> Frame:
    return frame([(0, T0 + i, 1.5 + i), (2, T0 + i + 5, -2.25), (0, T0 + i + 10, 3.0)])


def event(i: int, score: float = 0.9) -> Event:
    return Event(
        node="gw1",
        machine="m01",
        sensor="m01.vib.x",
        severity=Severity.ALARM if i % 2 else Severity.ANOMALY,
        t_start_ns=T0 + i * SEC,
        t_end_ns=T0 + (i + 1) * SEC,
        detected_ns=T0 + (i + 2) * SEC,
        score=score,
        threshold=0.8,
        detector="zscore",
        reason=f"rms high #{i}",
        features={"rms": 2.5 + i, "kurtosis": 3.0},
        raw=good_frame(i),
        raw_sensors=("m01.vib.x", "m01.vib.y", "m01.temp"),
    )


def receive(
    payloads: Sequence[bytes], decode: Callable[[bytes], Any]
) -> tuple[list[Any], Counter[RejectReason], list[CodecError]]:
    """What a receiver does: decode each payload, keep the good, count the rejects."""
    kept: list[Any] = []
    rejects: Counter[RejectReason] = Counter()
    errors: list[CodecError] = []
    for p in payloads:
        try:
            kept.append(decode(p))
        except CodecError as exc:
            rejects[exc.reason] += 1
            errors.append(exc)
    return kept, rejects, errors


def expect_reject(
    bad: bytes,
    decode: Callable[[bytes], Any],
    good: Sequence[bytes],
    reason: RejectReason,
    field: str,
) -> tuple[list[Any], CodecError]:
    """Decode ``[good[0], bad, good[1:]...]``: one reject with ``reason`` naming ``field``,
    every good payload kept. Returns the decoded good values and the error."""
    kept, rejects, errors = receive([good[0], bad, *good[1:]], decode)
    assert rejects == Counter({reason: 1})
    (err,) = errors
    assert err.field == field
    assert str(err).startswith(f"{field}: {reason.value}")
    assert len(kept) == len(good)
    return kept, err


def assert_good_frames_kept(kept: list[tuple[Frame, tuple[str, ...]]]) -> None:
    for i, (f, names) in enumerate(kept):
        assert names == (NAMES[0], NAMES[2])  # absent sensors dropped, indices renumbered
        assert f.sensor.tolist() == [0, 1, 0]
        assert f.ts.tolist() == [T0 + i, T0 + i + 5, T0 + i + 10]
        assert f.value.tolist() == [1.5 + i, -2.25, 3.0]


GOOD_FRAMES = [codec.encode_frame(good_frame(i), NAMES) for i in range(2)]


# -- round trips --------------------------------------------------------------------


@given(frames())
def test_frame_round_trip(case: tuple[Frame, list[str]]) -> None:
    f, names = case
    out, out_names = codec.decode_frame(codec.encode_frame(f, names))
    # the decoded indices name the same sensors as the original ones
    assert [out_names[i] for i in out.sensor.tolist()] == [names[i] for i in f.sensor.tolist()]
    assert (out.sensor.dtype, out.ts.dtype, out.value.dtype) == (np.uint32, np.int64, np.float32)
    np.testing.assert_array_equal(out.ts, f.ts)
    np.testing.assert_array_equal(out.value.view(np.uint32), f.value.view(np.uint32))
    assert out.ts.flags.writeable and out.value.flags.writeable and out.sensor.flags.writeable


def test_frame_keeps_full_names_table_for_large_frames() -> None:
    n = 64 * len(NAMES)
    f = Frame.from_arrays(np.zeros(n), T0 + np.arange(n), np.ones(n))
    out, names = codec.decode_frame(codec.encode_frame(f, NAMES))
    assert names == NAMES
    assert_frames_equal(out, f)


def test_frame_encode_refuses_index_without_name() -> None:
    with pytest.raises(ValueError, match="index 5 has no name"):
        codec.encode_frame(frame([(5, 1, 1.0)]), NAMES)


@given(st.lists(events(), max_size=4))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_events_round_trip(evs: list[Event]) -> None:
    out = codec.decode_events(codec.encode_events(evs))
    assert len(out) == len(evs)
    for a, b in zip(evs, out, strict=True):
        assert_events_equal(a, b)


@given(summaries())
def test_summaries_round_trip(batch: SummaryBatch) -> None:
    assert_summaries_equal(batch, codec.decode_summaries(codec.encode_summaries(batch)))


@given(batches())
def test_batch_round_trip(batch: Batch) -> None:
    assert codec.decode_batch(codec.encode_batch(batch)) == batch


@given(acks)
def test_ack_round_trip(ack: Ack) -> None:
    assert codec.decode_ack(codec.encode_ack(ack)) == ack


def test_batch_epoch_round_trips_and_defaults_to_zero_when_absent() -> None:
    b = Batch("n1", 3, (Entry(4, Priority.RAW, "raw", b"x"),), epoch=2**63 - 1)
    assert codec.decode_batch(codec.encode_batch(b)).epoch == 2**63 - 1
    legacy = repack(codec.encode_batch(b), lambda e: e.pop("epoch"))
    out = codec.decode_batch(legacy)
    assert out.epoch == 0
    assert out == Batch("n1", 3, b.entries)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-1, RejectReason.MALFORMED),
        ("7", RejectReason.WRONG_TYPE),
        (True, RejectReason.WRONG_TYPE),
        (1.0, RejectReason.WRONG_TYPE),
        (None, RejectReason.WRONG_TYPE),
        (2**64 - 1, RejectReason.WRONG_TYPE),
    ],
)
def test_batch_epoch_is_validated(value: object, reason: RejectReason) -> None:
    good = codec.encode_batch(Batch("gw1", 0, (), epoch=5))
    with pytest.raises(CodecError) as info:
        codec.decode_batch(repack(good, lambda e: e.update(epoch=value)))
    assert info.value.field == "batch.epoch"
    assert info.value.reason == reason


def test_batch_status_accepts_numpy_scalars() -> None:
    b = Batch("n1", 0, (), status={"p50": np.float64(1.5), "rej": {"nan": np.int64(3)}})
    assert codec.decode_batch(codec.encode_batch(b)).status == {"p50": 1.5, "rej": {"nan": 3}}


def test_every_envelope_carries_version_and_kind() -> None:
    payloads = {
        "frame": GOOD_FRAMES[0],
        "events": codec.encode_events([event(0)]),
        "summaries": codec.encode_summaries(
            SummaryBatch(*(np.zeros(0, d) for d in ("u4", "i8", "i8", "i8", *["f4"] * 4)))
        ),
        "batch": codec.encode_batch(Batch("n", 0, ())),
        "ack": codec.encode_ack(Ack("n", 1)),
    }
    for kind, p in payloads.items():
        env = unpack(p)
        version = codec.EVENTS_VERSION if kind == "events" else codec.SCHEMA_VERSION
        assert (env["v"], env["k"]) == (version, kind)


# -- bad input, one test per case ---------------------------------------------------------


def test_oversized_payload_is_rejected_before_parsing() -> None:
    bad = b"\x00" * (codec.MAX_PAYLOAD_BYTES + 1)
    kept, err = expect_reject(
        bad, codec.decode_frame, GOOD_FRAMES, RejectReason.OVERSIZED, "payload"
    )
    assert str(codec.MAX_PAYLOAD_BYTES) in err.detail
    assert_good_frames_kept(kept)


def _zstd_stream(n_bytes: int) -> bytes:
    """A tiny zstd frame of ``n_bytes`` zeros that declares its size (a 'bomb')."""
    cobj = zstandard.ZstdCompressor(level=1).compressobj(size=n_bytes)
    chunk = bytes(1 << 20)
    out = [cobj.compress(chunk) for _ in range(n_bytes // len(chunk))]
    out.append(cobj.compress(bytes(n_bytes % len(chunk))))
    out.append(cobj.flush())
    return b"".join(out)


def test_zstd_bomb_is_refused_before_inflating() -> None:
    bomb = _zstd_stream(codec.MAX_DECODED_BYTES + 4)
    assert len(bomb) < 10_000  # small on the wire, 64 MiB once inflated

    def plant(env: dict[str, Any]) -> None:
        env["sensor"] = bomb

    bad = repack(GOOD_FRAMES[0], plant)
    kept, err = expect_reject(
        bad, codec.decode_frame, GOOD_FRAMES, RejectReason.OVERSIZED, "frame.sensor"
    )
    assert "decompressed bytes" in err.detail
    assert_good_frames_kept(kept)


def test_decompressed_budget_is_per_payload_not_per_column() -> None:
    half = _zstd_stream(codec.MAX_DECODED_BYTES // 2 + 8)  # multiple of 4 and of 8

    def plant(env: dict[str, Any]) -> None:
        env["sensor"] = half
        env["ts"] = half

    kept, _ = expect_reject(
        repack(GOOD_FRAMES[0], plant),
        codec.decode_frame,
        GOOD_FRAMES,
        RejectReason.OVERSIZED,
        "frame.ts",
    )
    assert_good_frames_kept(kept)


def test_truncated_msgpack() -> None:
    bad = GOOD_FRAMES[0][:-7]
    kept, err = expect_reject(
        bad, codec.decode_frame, GOOD_FRAMES, RejectReason.TRUNCATED, "payload"
    )
    assert "ends early" in err.detail
    assert_good_frames_kept(kept)


def test_truncated_zstd_column() -> None:
    def cut(env: dict[str, Any]) -> None:
        env["value"] = env["value"][:-6]

    kept, _ = expect_reject(
        repack(GOOD_FRAMES[0], cut),
        codec.decode_frame,
        GOOD_FRAMES,
        RejectReason.TRUNCATED,
        "frame.value",
    )
    assert_good_frames_kept(kept)


def test_column_length_not_a_multiple_of_the_item_size() -> None:
    def odd(env: dict[str, Any]) -> None:
        env["ts"] = zstandard.ZstdCompressor().compress(bytes(20))  # 2.5 int64

    kept, err = expect_reject(
        repack(GOOD_FRAMES[0], odd),
        codec.decode_frame,
        GOOD_FRAMES,
        RejectReason.TRUNCATED,
        "frame.ts",
    )
    assert "not a multiple of 8" in err.detail
    assert_good_frames_kept(kept)


def test_columns_of_unequal_length() -> None:
    def short(env: dict[str, Any]) -> None:
        env["value"] = codec._enc_f4_shuffled(np.array([1.0, 2.0], dtype=np.float32))

    kept, err = expect_reject(
        repack(GOOD_FRAMES[0], short),
        codec.decode_frame,
        GOOD_FRAMES,
        RejectReason.TRUNCATED,
        "frame",
    )
    assert "differ in length" in err.detail and "'value': 2" in err.detail
    assert_good_frames_kept(kept)


def test_unknown_schema_version() -> None:
    def bump(env: dict[str, Any]) -> None:
        env["v"] = 2

    kept, err = expect_reject(
        repack(GOOD_FRAMES[0], bump),
        codec.decode_frame,
        GOOD_FRAMES,
        RejectReason.SCHEMA_VERSION,
        "envelope.v",
    )
    assert "version 2" in err.detail and "supported: [1]" in err.detail
    assert_good_frames_kept(kept)


@pytest.mark.parametrize(
    ("mutate", "field", "hint"),
    [
        (lambda env: env.pop("names"), "frame.names", "missing key"),
        (lambda env: env.pop("ts"), "frame.ts", "missing key"),
        (lambda env: env.pop("v"), "envelope.v", "missing key"),
        (lambda env: env.update(k="events"), "envelope.k", "expected kind 'frame'"),
        (lambda env: env.update(names=["a"]), "frame.sensor", "sensor index 1 beyond 1 names"),
        (lambda env: env.update(value=b"\x00" * 16), "frame.value", "bad magic"),
    ],
    ids=["no-names", "no-ts", "no-version", "wrong-kind", "index-beyond-names", "not-zstd"],
)
def test_malformed_envelope(
    mutate: Callable[[dict[str, Any]], None], field: str, hint: str
) -> None:
    kept, err = expect_reject(
        repack(GOOD_FRAMES[0], mutate),
        codec.decode_frame,
        GOOD_FRAMES,
        RejectReason.MALFORMED,
        field,
    )
    assert hint in err.detail
    assert_good_frames_kept(kept)


@pytest.mark.parametrize(
    ("bad", "hint"),
    [
        (msgpack.packb([1, 2, 3]), "expected a map, got list"),
        (GOOD_FRAMES[0] + b"\x01", "trailing bytes"),
        (b"\xc1", "invalid msgpack"),
    ],
    ids=["not-a-map", "trailing-bytes", "reserved-byte"],
)
def test_malformed_payload(bad: bytes, hint: str) -> None:
    kept, rejects, errors = receive([GOOD_FRAMES[0], bad, GOOD_FRAMES[1]], codec.decode_frame)
    assert rejects == Counter({RejectReason.MALFORMED: 1})
    assert hint in errors[0].detail
    assert_good_frames_kept(kept)


def test_corrupt_zstd_column_fails_its_checksum() -> None:
    def flip(env: dict[str, Any]) -> None:
        b = bytearray(env["value"])
        b[len(b) // 2] ^= 0x40
        env["value"] = bytes(b)

    kept, err = expect_reject(
        repack(GOOD_FRAMES[0], flip),
        codec.decode_frame,
        GOOD_FRAMES,
        RejectReason.MALFORMED,
        "frame.value",
    )
    assert "corrupt" in err.detail
    assert_good_frames_kept(kept)


def test_wrong_type_names_the_event_field() -> None:
    evs = [event(i) for i in range(5)]
    good = codec.encode_events_v1(evs)  # version 1: one map per event

    def stringly(env: dict[str, Any]) -> None:
        env["events"][3]["score"] = "high"

    bad = repack(good, stringly)
    kept, err = expect_reject(
        bad, codec.decode_events, [good, good], RejectReason.WRONG_TYPE, "events[3].score"
    )
    assert "expected float, got str" in err.detail
    for out in kept:  # the valid payloads beside it decode exactly
        for a, b in zip(evs, out, strict=True):
            assert_events_equal(a, b)


@pytest.mark.parametrize(
    ("decode", "payload", "mutate", "field"),
    [
        (
            codec.decode_ack,
            codec.encode_ack(Ack("n", 5)),
            lambda e: e.update(upto_seq=True),
            "ack.upto_seq",
        ),
        (
            codec.decode_ack,
            codec.encode_ack(Ack("n", 5)),
            lambda e: e.update(upto_seq=1.0),
            "ack.upto_seq",
        ),
        (
            codec.decode_ack,
            codec.encode_ack(Ack("n", 5)),
            lambda e: e.update(upto_seq=2**64 - 1),
            "ack.upto_seq",
        ),
        (
            codec.decode_ack,
            codec.encode_ack(Ack("n", 5)),
            lambda e: e.update(node=b"n"),
            "ack.node",
        ),
        (codec.decode_ack, codec.encode_ack(Ack("n", 5)), lambda e: e.update(v="1"), "envelope.v"),
        (
            codec.decode_batch,
            codec.encode_batch(Batch("n", 0, (Entry(1, Priority.RAW, "raw", b"x"),))),
            lambda e: e["entries"][0].__setitem__(3, "x"),
            "batch.entries[0].payload",
        ),
        (
            codec.decode_batch,
            codec.encode_batch(Batch("n", 0, ())),
            lambda e: e.update(status={b"k": 2}),  # int keys fail in msgpack itself
            "batch.status",
        ),
        (
            codec.decode_events,
            codec.encode_events_v1([event(0)]),
            lambda e: e["events"][0].update(raw_sensors=["a", 7]),
            "events[0].raw_sensors[1]",
        ),
        (
            codec.decode_events,
            codec.encode_events_v1([event(0)]),
            lambda e: e["events"][0]["features"].update(rms="2"),
            "events[0].features.rms",
        ),
        (codec.decode_frame, GOOD_FRAMES[0], lambda e: e.update(sensor=[1, 2]), "frame.sensor"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_wrong_type_fields(
    decode: Callable[[bytes], Any],
    payload: bytes,
    mutate: Callable[[dict[str, Any]], None],
    field: str,
) -> None:
    expect_reject(
        repack(payload, mutate), decode, [payload, payload], RejectReason.WRONG_TYPE, field
    )


@pytest.mark.parametrize(
    ("mutate", "field", "hint"),
    [
        (
            lambda e: e["entries"][0].__setitem__(1, 9),
            "batch.entries[0].priority",
            "unknown priority 9",
        ),
        (lambda e: e["entries"][1].__setitem__(0, 1), "batch.entries[1].seq", "not above 1"),
        (lambda e: e.update(after_seq=1), "batch.entries[0].seq", "not above 1"),
        (lambda e: e["entries"][0].pop(), "batch.entries[0]", "expected 6 fields, got 5"),
    ],
)
def test_malformed_batch(mutate: Callable[[dict[str, Any]], None], field: str, hint: str) -> None:
    entries = (
        Entry(1, Priority.ALARM, "events", b"e1", 0, T0),
        Entry(2, Priority.RAW, "raw", b"r", 10, T0),
    )
    good = codec.encode_batch(Batch("gw1", 0, entries, {"frames": 3}, T0))
    kept, err = expect_reject(
        repack(good, mutate), codec.decode_batch, [good], RejectReason.MALFORMED, field
    )
    assert hint in err.detail
    assert kept[0].entries == entries and kept[0].status == {"frames": 3}


def test_codec_error_is_a_telemetry_error() -> None:
    with pytest.raises(TelemetryError):
        codec.decode_ack(b"")


def test_non_bytes_input_is_wrong_type() -> None:
    with pytest.raises(CodecError) as info:
        codec.decode_ack("not bytes")  # type: ignore[arg-type]
    assert (info.value.field, info.value.reason) == ("payload", RejectReason.WRONG_TYPE)


# -- fuzzing: decoding is total ------------------------------------------------------------

DECODERS: list[Callable[[bytes], Any]] = [
    codec.decode_frame,
    codec.decode_events,
    codec.decode_summaries,
    codec.decode_batch,
    codec.decode_ack,
]


def decode_all_or_codec_error(data: bytes) -> None:
    for decode in DECODERS:
        try:
            out = decode(data)
        except CodecError as exc:
            assert isinstance(exc.reason, RejectReason) and exc.field
            continue
        if decode is codec.decode_frame:  # a successful decode is self-consistent
            f, names = out
            assert len(f) == 0 or int(f.sensor.max()) < len(names)


@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    decode_all_or_codec_error(data)


@st.composite
def valid_payloads(draw: st.DrawFn) -> bytes:
    which = draw(st.sampled_from(["frame", "events", "summaries", "batch", "ack"]))
    if which == "frame":
        f, names = draw(frames(max_rows=20))
        return codec.encode_frame(f, names)
    if which == "events":
        return codec.encode_events(draw(st.lists(events(), max_size=2)))
    if which == "summaries":
        return codec.encode_summaries(draw(summaries()))
    if which == "batch":
        return codec.encode_batch(draw(batches()))
    return codec.encode_ack(draw(acks))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(valid_payloads()))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete", "set"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xDC, 0xDE, 0xFF]))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


@given(mutated())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_mutated_valid_payloads(data: bytes) -> None:
    decode_all_or_codec_error(data)


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    """Envelopes with the right version and kind and random values for known keys:
    this reaches the field checks, which random bytes rarely do."""
    kind = draw(st.sampled_from(["frame", "events", "summaries", "batch", "ack"]))
    keys = [
        "names", "sensor", "ts", "value", "events", "t0_ns", "t1_ns", "count", "mean",
        "std", "min", "max", "node", "after_seq", "sent_ns", "status", "entries",
        "upto_seq", "accepted", "duplicates", "rejected", "epoch",
    ]  # fmt: skip
    column = st.sampled_from(
        [codec._enc_u4(np.arange(3)), codec._enc_i8(np.arange(3)), b"", b"\x28\xb5\x2f\xfd"]
    )
    scalar = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=3)
    )
    shallow = (
        scalar
        | column
        | st.lists(scalar, max_size=3)
        | st.dictionaries(st.text(max_size=3), scalar, max_size=3)
    )
    event_map = st.dictionaries(
        st.sampled_from(
            ["node", "severity", "t_start_ns", "score", "features", "raw", "raw_sensors"]
        ),
        shallow | st.dictionaries(st.sampled_from(["sensor", "ts", "value"]), column),
    )
    entry = st.lists(scalar | st.binary(max_size=3), min_size=5, max_size=7)
    value = shallow | st.lists(event_map, max_size=2) | st.lists(entry, max_size=2)
    env: dict[str, Any] = draw(st.dictionaries(st.sampled_from(keys), value))
    env.update(v=1, k=kind)
    out: bytes = msgpack.packb(env, use_bin_type=True)
    return out


@given(structured())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_structured_envelopes(data: bytes) -> None:
    decode_all_or_codec_error(data)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e["entries"][1].__setitem__(0, True), "batch.entries[1].seq"),
        (lambda e: e["entries"][1].__setitem__(4, 2**63), "batch.entries[1].samples"),
        (lambda e: e["entries"][1].__setitem__(5, 1.5), "batch.entries[1].created_ns"),
        (lambda e: e["entries"][1].__setitem__(2, b"raw"), "batch.entries[1].kind"),
        (lambda e: e["entries"].__setitem__(1, (2, 1)), "batch.entries[1]"),
    ],
)
def test_batch_entry_checked_field_by_field_when_one_is_off(
    mutate: Callable[[dict[str, Any]], None], field: str
) -> None:
    # Entries are checked with one test each; the one that fails it is decoded again
    # field by field, so the error still names the entry and field.
    entries = tuple(Entry(s, Priority.RAW, "raw", b"r", 10, T0) for s in (1, 2, 3))
    good = codec.encode_batch(Batch("gw1", 0, entries, {}, T0))
    assert codec.decode_batch(good).entries == entries
    bad = repack(good, mutate)
    with pytest.raises(CodecError) as info:
        codec.decode_batch(bad)
    assert info.value.field == field

"""Builders, Hypothesis strategies and comparisons shared by the telemetry tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
from hypothesis import strategies as st

from edgeloop.outbox.base import Entry, Priority
from edgeloop.telemetry.frame import Frame, SensorCatalog, SensorKind, SensorSpec
from edgeloop.telemetry.records import Event, Severity, SummaryBatch
from edgeloop.transport.base import Ack, Batch

T0 = 1_700_000_000_000_000_000
SEC = 1_000_000_000
I64 = st.integers(-(2**63), 2**63 - 1)
NAMES = ("m01.vib.x", "m01.vib.y", "m01.temp", "m02.vib.x", "m02.pressure")


def catalog(names: tuple[str, ...] = NAMES) -> SensorCatalog:
    return SensorCatalog.of(SensorSpec(n, n.split(".")[0], SensorKind.GENERIC) for n in names)


def frame(rows: list[tuple[int, int, float]]) -> Frame:
    """A frame from (sensor, ts, value) rows."""
    if not rows:
        return Frame.empty()
    s, t, v = zip(*rows, strict=True)
    return Frame.from_arrays(s, t, v)


def rows_of(f: Frame) -> list[tuple[int, int, float]]:
    return list(zip(f.sensor.tolist(), f.ts.tolist(), f.value.tolist(), strict=True))


def assert_frames_equal(a: Frame, b: Frame) -> None:
    """Column-wise equality; values compared bit for bit (NaN payloads included)."""
    assert a.sensor.dtype == b.sensor.dtype == np.uint32
    assert a.ts.dtype == b.ts.dtype == np.int64
    assert a.value.dtype == b.value.dtype == np.float32
    np.testing.assert_array_equal(a.sensor, b.sensor)
    np.testing.assert_array_equal(a.ts, b.ts)
    np.testing.assert_array_equal(a.value.view(np.uint32), b.value.view(np.uint32))


def unpack(payload: bytes) -> dict[str, Any]:
    out: dict[str, Any] = msgpack.unpackb(payload, raw=False)
    return out


def repack(payload: bytes, mutate: Callable[[dict[str, Any]], None]) -> bytes:
    """Decode the envelope, let ``mutate`` edit it in place, encode it again."""
    env = unpack(payload)
    mutate(env)
    out: bytes = msgpack.packb(env, use_bin_type=True)
    return out


# -- strategies ---------------------------------------------------------------------

f32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
text = st.text(max_size=12)


@st.composite
def frames(draw: st.DrawFn, max_sensors: int = 6, max_rows: int = 40) -> tuple[Frame, list[str]]:
    """A frame and a names table covering its indices (names may include absent ones)."""
    k = draw(st.integers(1, max_sensors))
    names = draw(st.lists(text, min_size=k, max_size=k))
    n = draw(st.integers(0, max_rows))
    sensor = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    ts = draw(st.lists(I64, min_size=n, max_size=n))
    value = draw(st.lists(f32, min_size=n, max_size=n))
    return Frame.from_arrays(sensor, ts, value), names


@st.composite
def events(draw: st.DrawFn) -> Event:
    with_raw = draw(st.booleans())
    raw, raw_sensors = (None, ())
    if with_raw:
        f, names = draw(frames(max_rows=20))
        raw, raw_sensors = f, tuple(names)
    finite = st.floats(allow_nan=False)
    return Event(
        node=draw(text),
        machine=draw(text),
        sensor=draw(text),
        severity=draw(st.sampled_from(list(Severity))),
        t_start_ns=draw(I64),
        t_end_ns=draw(I64),
        detected_ns=draw(I64),
        score=draw(finite),
        threshold=draw(finite),
        detector=draw(text),
        reason=draw(text),
        features=draw(st.dictionaries(text, finite, max_size=5)),
        raw=raw,
        raw_sensors=raw_sensors,
    )


def assert_events_equal(a: Event, b: Event) -> None:
    for name in Event.__slots__:
        if name != "raw":
            assert getattr(a, name) == getattr(b, name), name
    assert (a.raw is None) == (b.raw is None)
    if a.raw is not None and b.raw is not None:
        assert_frames_equal(a.raw, b.raw)


@st.composite
def summaries(draw: st.DrawFn) -> SummaryBatch:
    k = draw(st.integers(0, 5))
    names = tuple(draw(st.lists(text, min_size=k, max_size=k)))
    n = draw(st.integers(0, 12))

    def col(elements: st.SearchStrategy[Any], dtype: Any) -> Any:
        return np.array(draw(st.lists(elements, min_size=n, max_size=n)), dtype=dtype)

    sensor_elems = st.integers(0, max(k - 1, 0)) if k else st.integers(0, 2**32 - 1)
    return SummaryBatch(
        sensor=col(sensor_elems, np.uint32),
        t0_ns=col(I64, np.int64),
        t1_ns=col(I64, np.int64),
        count=col(I64, np.int64),
        mean=col(f32, np.float32),
        std=col(f32, np.float32),
        min=col(f32, np.float32),
        max=col(f32, np.float32),
        sensor_names=names,
    )


def assert_summaries_equal(a: SummaryBatch, b: SummaryBatch) -> None:
    assert a.sensor_names == b.sensor_names
    for name in ("sensor", "t0_ns", "t1_ns", "count"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y)
    for name in ("mean", "std", "min", "max"):
        x, y = getattr(a, name), getattr(b, name)
        assert y.dtype == np.float32, name
        np.testing.assert_array_equal(x.view(np.uint32), y.view(np.uint32))


json_like = st.recursive(
    st.none() | st.booleans() | I64 | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    after = draw(st.integers(0, 2**40))
    gaps = draw(st.lists(st.integers(1, 5), max_size=6))
    seqs = [after + sum(gaps[: i + 1]) for i in range(len(gaps))]
    entries = tuple(
        Entry(
            seq=s,
            priority=draw(st.sampled_from(list(Priority))),
            kind=draw(text),
            payload=draw(st.binary(max_size=40)),
            samples=draw(st.integers(0, 2**40)),
            created_ns=draw(I64),
        )
        for s in seqs
    )
    return Batch(
        node=draw(text),
        after_seq=after,
        entries=entries,
        status=draw(st.dictionaries(text, json_like, max_size=4)),
        sent_ns=draw(I64),
        epoch=draw(st.integers(0, 2**63 - 1)),
    )


acks = st.builds(
    Ack,
    node=text,
    upto_seq=I64,
    accepted=st.integers(0, 2**31),
    duplicates=st.integers(0, 2**31),
    rejected=st.integers(0, 2**31),
)

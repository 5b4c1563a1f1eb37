"""Node sources at the API boundary: CSV replay and the HTTP push endpoint.

Both turn per-sample records into frames once, reject each bad record with a field and
a reason, and keep the valid records beside them. Type problems are rejected here; value
problems (NaN) pass the boundary and are rejected by the node's FrameValidator, which the
node runs next (see ``edgeloop.telemetry.boundary``).

The HTTP tests talk real HTTP over loopback to the source running in an asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np
import pytest

from edgeloop.errors import RejectReason, TelemetryError
from edgeloop.node.push import HttpPushSource
from edgeloop.node.sources import csv_source
from edgeloop.telemetry.frame import Frame, SensorCatalog, SensorKind, SensorSpec
from edgeloop.telemetry.validate import FrameValidator, RejectRecord

T = TypeVar("T")


def catalog() -> SensorCatalog:
    return SensorCatalog.of(
        [
            SensorSpec("m1.temp", "m1", SensorKind.TEMPERATURE, 10.0, "C"),
            SensorSpec("m1.vib", "m1", SensorKind.VIBRATION, 2000.0, "g"),
            SensorSpec("m2.press", "m2", SensorKind.PRESSURE, 10.0, "bar"),
        ]
    )


def rows(frame: Frame, cat: SensorCatalog) -> list[tuple[str, int, float]]:
    return [
        (cat[int(s)].name, int(t), float(v))
        for s, t, v in zip(frame.sensor, frame.ts, frame.value, strict=True)
    ]


def check_dtypes(frame: Frame) -> None:
    assert frame.sensor.dtype == np.uint32
    assert frame.ts.dtype == np.int64
    assert frame.value.dtype == np.float32


async def collect(frames: AsyncIterator[Frame]) -> list[Frame]:
    return [f async for f in frames]


# -- CSV replay ---------------------------------------------------------------------

CSV = """sensor,ts,value
m1.temp,1000,21.5
m1.vib,1000,0.25
m1.temp,abc,22.0
m9.temp,1500,1.0
m2.press,2000,101.25
m1.temp,3000,oops
m1.temp,2500,nan
m2.press,1500,-3.0
m1.vib,4000,0.5,extra
m1.vib,3500,0.75
"""

VALID = [  # (sensor, ts, value) of every row of CSV that has the right types
    ("m1.temp", 1000, 21.5),
    ("m1.vib", 1000, 0.25),
    ("m2.press", 2000, 101.25),
    ("m1.temp", 2500, math.nan),
    ("m2.press", 1500, -3.0),
    ("m1.vib", 3500, 0.75),
]


def replay(path: Path, cat: SensorCatalog, **kw: Any) -> tuple[list[Frame], list[list[Any]]]:
    calls: list[list[Any]] = []
    frames = asyncio.run(collect(csv_source(path, cat, on_reject=calls.append, **kw)))
    return frames, calls


def test_csv_source_keeps_every_valid_row_and_rejects_bad_rows_with_a_reason(
    tmp_path: Path,
) -> None:
    path = tmp_path / "replay.csv"
    path.write_text(CSV)
    cat = catalog()
    frames, calls = replay(path, cat)

    assert len(calls) == 1, "on_reject is called once with the rejects of the file"
    rejects = calls[0]
    assert all(isinstance(r, RejectRecord) for r in rejects)
    assert [(r.field, r.reason) for r in rejects] == [
        ("rows[2].ts", RejectReason.WRONG_TYPE),
        ("rows[3].sensor", RejectReason.UNKNOWN_SENSOR),
        ("rows[5].value", RejectReason.WRONG_TYPE),
        ("rows[8]", RejectReason.MALFORMED),
    ]
    # Each reason says what was found and on which line of the file.
    assert "line 4" in rejects[0].detail and "abc" in rejects[0].detail
    assert "line 5" in rejects[1].detail and "m9.temp" in rejects[1].detail
    assert "line 7" in rejects[2].detail and "oops" in rejects[2].detail
    assert "line 10" in rejects[3].detail and "got 4" in rejects[3].detail

    assert len(frames) == 1
    frame = frames[0]
    check_dtypes(frame)
    got = rows(frame, cat)
    # One frame, grouped by sensor and ascending in time inside each sensor.
    assert frame.is_sorted()
    key = {name: i for i, name in enumerate(cat.names())}
    assert [(n, t) for n, t, _ in got] == sorted(
        ((n, t) for n, t, _ in VALID), key=lambda x: (key[x[0]], x[1])
    )
    by_key = {(n, t): v for n, t, v in got}
    for name, ts, value in VALID:
        if math.isnan(value):
            assert math.isnan(by_key[(name, ts)])
        else:
            assert by_key[(name, ts)] == value  # exact: these values are float32-exact


def test_csv_nan_passes_the_boundary_and_the_node_validator_rejects_it(tmp_path: Path) -> None:
    path = tmp_path / "replay.csv"
    path.write_text(CSV)
    cat = catalog()
    frames, _ = replay(path, cat)
    validator = FrameValidator(cat)
    kept = [validator.process(f, now_ns=10**12) for f in frames]

    assert dict(validator.rejects) == {RejectReason.NON_FINITE: 1}
    example = validator.examples[-1]
    assert (example.reason, example.field) == (RejectReason.NON_FINITE, "value")
    assert "'m1.temp'" in example.detail and "2500" in example.detail
    out = [r for f in kept for r in rows(f, cat)]
    assert sorted(out) == sorted(r for r in VALID if not math.isnan(r[2]))


def test_csv_source_splits_into_frames_in_time_order(tmp_path: Path) -> None:
    path = tmp_path / "replay.csv"
    path.write_text(CSV)
    cat = catalog()
    frames, _ = replay(path, cat, frame_rows=2)

    assert [len(f) for f in frames] == [2, 2, 2]
    for prev, nxt in itertools.pairwise(frames):
        assert int(prev.ts.max()) <= int(nxt.ts.min())
    got = [r for f in frames for r in rows(f, cat)]
    assert sorted((n, t) for n, t, _ in got) == sorted((n, t) for n, t, _ in VALID)


def test_csv_source_with_no_bad_rows_does_not_call_on_reject(tmp_path: Path) -> None:
    path = tmp_path / "clean.csv"
    path.write_text("value,sensor,ts\n1.5,m2.press,10\n\n2.5,m1.temp,20\n")  # any column order
    cat = catalog()
    frames, calls = replay(path, cat)
    assert calls == []
    assert [r for f in frames for r in rows(f, cat)] == [
        ("m1.temp", 20, 2.5),
        ("m2.press", 10, 1.5),
    ]


def test_csv_source_header_only_yields_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("sensor,ts,value\n")
    frames, calls = replay(path, catalog())
    assert frames == []
    assert calls == []


def test_csv_source_without_the_needed_columns_raises_naming_the_header(tmp_path: Path) -> None:
    path = tmp_path / "bad_header.csv"
    path.write_text("sensor,time,value\nm1.temp,1,2.0\n")
    with pytest.raises(TelemetryError) as info:
        replay(path, catalog())
    assert info.value.field == "header"
    assert info.value.reason == RejectReason.MALFORMED
    assert "ts" in info.value.detail


def test_csv_source_replays_in_recorded_time_at_the_given_speed(tmp_path: Path) -> None:
    path = tmp_path / "timed.csv"
    path.write_text("sensor,ts,value\nm1.temp,0,1.0\nm1.temp,100000000,2.0\n")  # 100 ms apart
    t0 = time.monotonic()
    frames, _ = replay(path, catalog(), frame_rows=1, speed=2.0)
    elapsed = time.monotonic() - t0
    assert [float(f.value[0]) for f in frames] == [1.0, 2.0]
    assert 0.045 <= elapsed < 2.0  # 100 ms of recording at speed 2 takes >= 50 ms


# -- HTTP push ----------------------------------------------------------------------


class Pushed:
    """An HttpPushSource iterated by the running loop, as a node iterates it."""

    def __init__(self, cat: SensorCatalog, **kw: Any) -> None:
        self.source = HttpPushSource(cat, **kw)
        self.frames = self.source.__aiter__()
        self.pending: asyncio.Future[Frame] = asyncio.ensure_future(anext(self.frames))

    async def next_frame(self, timeout: float = 5.0) -> Frame:
        frame = await asyncio.wait_for(self.pending, timeout)
        self.pending = asyncio.ensure_future(anext(self.frames))
        return frame

    async def no_frame(self) -> bool:
        """True when no frame reaches the iterator within a short while."""
        await asyncio.sleep(0.05)
        return not self.pending.done()

    async def close(self) -> None:
        await asyncio.sleep(0)  # let the iterator start, so that closing it stops the server
        self.pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await self.pending
        await self.frames.aclose()  # type: ignore[attr-defined]


def run_push(
    scenario: Callable[[Pushed], Awaitable[T]], cat: SensorCatalog | None = None, **kw: Any
) -> T:
    async def main() -> T:
        pushed = Pushed(cat or catalog(), **kw)
        try:
            return await scenario(pushed)
        finally:
            await pushed.close()

    return asyncio.run(main())


def request(
    url: str,
    path: str = "/v1/push",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST over a fresh connection; ``headers`` are sent as given (no automatic
    Content-Length), so a test can announce any length."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        sent = {"Content-Type": "application/json"}
        if body is not None:
            sent["Content-Length"] = str(len(body))
        sent.update(headers or {})
        for k, v in sent.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        assert resp.getheader("Content-Type") == "application/json"
        return resp.status, json.loads(data)
    finally:
        conn.close()


async def post(pushed: Pushed, *args: Any, **kw: Any) -> tuple[int, dict[str, Any]]:
    return await asyncio.to_thread(request, pushed.source.url, *args, **kw)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


RECORDS: list[Any] = [
    {"sensor": "m1.temp", "ts": 1_700_000_000_000_000_000, "value": 21.5},
    {"sensor": "m1.temp", "ts": 1_700_000_000_100_000_000, "value": "abc"},
    {"sensor": "m2.press", "ts": "1700000000200000000", "value": 101.25},  # digit-string ts
    {"sensor": "m1.vib", "value": 0.5},
    {"sensor": "m9.x", "ts": 1_700_000_000_300_000_000, "value": 1.0},
    {"sensor": "m1.vib", "ts": 1.7e18, "value": 0.5},
    {"sensor": "m1.vib", "ts": 1_700_000_000_400_000_000, "value": -3, "unit": "g"},
    {"sensor": "m1.temp", "ts": 1_700_000_000_500_000_000, "value": True},
    ["m1.temp", 1_700_000_000_600_000_000, 1.0],
]


def test_push_accepts_valid_records_and_explains_each_rejected_one() -> None:
    cat = catalog()

    async def scenario(pushed: Pushed) -> tuple[int, dict[str, Any], Frame]:
        status, reply = await post(pushed, body=dumps(RECORDS))
        return status, reply, await pushed.next_frame()

    status, reply, frame = run_push(scenario, cat)

    assert status == 200
    assert reply["accepted"] == 3
    assert [(r["field"], r["reason"]) for r in reply["rejected"]] == [
        ("records[1].value", "wrong_type"),
        ("records[3].ts", "malformed"),
        ("records[4].sensor", "unknown_sensor"),
        ("records[5].ts", "wrong_type"),
        ("records[7].value", "wrong_type"),
        ("records[8]", "malformed"),
    ]
    details = [r["detail"] for r in reply["rejected"]]
    assert "'abc'" in details[0]
    assert "missing" in details[1]
    assert "m9.x" in details[2]
    assert "float" in details[3]
    assert "bool" in details[4]

    check_dtypes(frame)
    assert rows(frame, cat) == [  # exactly the valid records, grouped by sensor
        ("m1.temp", 1_700_000_000_000_000_000, 21.5),
        ("m1.vib", 1_700_000_000_400_000_000, -3.0),
        ("m2.press", 1_700_000_000_200_000_000, 101.25),
    ]


def test_push_hands_each_request_to_the_iterator_in_order_and_counts() -> None:
    cat = catalog()

    async def scenario(pushed: Pushed) -> tuple[list[Frame], int, int]:
        first = [{"sensor": "m1.temp", "ts": 10, "value": 1.0}]
        second = [
            {"sensor": "m2.press", "ts": 30, "value": 3.0},
            {"sensor": "m1.temp", "ts": 20, "value": 2.0},
            {"sensor": "nope", "ts": 20, "value": 2.0},
        ]
        assert (await post(pushed, body=dumps(first)))[0] == 200
        a = await pushed.next_frame()
        assert (await post(pushed, body=dumps(second)))[0] == 200
        b = await pushed.next_frame()
        return [a, b], pushed.source.accepted, pushed.source.rejected

    frames, accepted, rejected = run_push(scenario, cat)
    assert [rows(f, cat) for f in frames] == [
        [("m1.temp", 10, 1.0)],
        [("m1.temp", 20, 2.0), ("m2.press", 30, 3.0)],
    ]
    assert (accepted, rejected) == (3, 1)


def test_push_with_only_bad_records_replies_but_hands_over_no_frame() -> None:
    async def scenario(pushed: Pushed) -> tuple[int, dict[str, Any], bool]:
        status, reply = await post(pushed, body=dumps([{"sensor": "m1.temp", "ts": 1}]))
        return status, reply, await pushed.no_frame()

    status, reply, none = run_push(scenario)
    assert status == 200
    assert reply["accepted"] == 0
    assert [(r["field"], r["reason"]) for r in reply["rejected"]] == [
        ("records[0].value", "malformed")
    ]
    assert none


NOT_AN_ARRAY = {
    "not-json": (b"{not json", "malformed", "not JSON"),
    "not-utf8": (b'["\xff"]', "malformed", "not JSON"),
    "empty": (b"", "malformed", "not JSON"),
    "object": (b'{"sensor": "m1.temp", "ts": 1, "value": 2.0}', "wrong_type", "JSON array"),
}


def test_push_rejects_a_body_that_is_not_a_json_array_with_400() -> None:
    async def scenario(pushed: Pushed) -> tuple[dict[str, tuple[int, dict[str, Any]]], bool]:
        replies = {k: await post(pushed, body=body) for k, (body, _, _) in NOT_AN_ARRAY.items()}
        return replies, await pushed.no_frame()

    replies, none = run_push(scenario)
    for case, (_, reason, detail) in NOT_AN_ARRAY.items():
        status, reply = replies[case]
        assert status == 400, case
        assert reply["error"]["field"] == "body", case
        assert reply["error"]["reason"] == reason, case
        assert detail in reply["error"]["detail"], case
    assert none


def test_push_refuses_an_oversized_content_length_with_413_without_reading() -> None:
    async def scenario(pushed: Pushed) -> list[tuple[int, dict[str, Any]]]:
        # Headers only: the announced length alone decides, nothing is read.
        return [
            await post(pushed, headers={"Content-Length": str(8 * 1024 * 1024 + 1)}),
            await post(pushed, headers={"Content-Length": str(10**12)}),
        ]

    for status, reply in run_push(scenario):
        assert status == 413
        assert reply["error"]["field"] == "body"
        assert reply["error"]["reason"] == "oversized"


def test_push_max_body_is_configurable() -> None:
    body = dumps([{"sensor": "m1.temp", "ts": 1, "value": 1.0}] * 4)

    async def scenario(pushed: Pushed) -> list[tuple[int, dict[str, Any]]]:
        small = dumps([{"sensor": "m1.temp", "ts": 1, "value": 1.0}])
        return [
            await post(pushed, body=small),
            await post(pushed, headers={"Content-Length": str(len(body))}),
        ]

    (ok, reply_ok), (big, reply_big) = run_push(scenario, max_body=len(body) - 1)
    assert (ok, reply_ok["accepted"]) == (200, 1)
    assert big == 413
    assert f"{len(body)} > {len(body) - 1}" in reply_big["error"]["detail"]


def test_push_refuses_too_many_records_with_413() -> None:
    body = ("[" + ",".join(["0"] * 1_000_001) + "]").encode()  # ~2 MB, within max_body

    async def scenario(pushed: Pushed) -> tuple[int, dict[str, Any], bool]:
        status, reply = await post(pushed, body=body)
        return status, reply, await pushed.no_frame()

    status, reply, none = run_push(scenario)
    assert status == 413
    assert (reply["error"]["field"], reply["error"]["reason"]) == ("records", "oversized")
    assert none


def test_push_rejects_a_malformed_content_length_with_400() -> None:
    announced = ["abc", "-1", "1.5", "0x10"]

    async def scenario(pushed: Pushed) -> list[tuple[int, dict[str, Any]]]:
        return [await post(pushed, headers={"Content-Length": a}) for a in announced]

    for a, (status, reply) in zip(announced, run_push(scenario), strict=True):
        assert status == 400, a
        assert (reply["error"]["field"], reply["error"]["reason"]) == (
            "Content-Length",
            "malformed",
        ), a
        assert a in reply["error"]["detail"], a


def test_push_unknown_path_is_404_and_names_the_endpoint() -> None:
    async def scenario(pushed: Pushed) -> tuple[int, dict[str, Any], bool]:
        status, reply = await post(pushed, path="/v1/pull", headers={"Content-Length": "0"})
        return status, reply, await pushed.no_frame()

    status, reply, none = run_push(scenario)
    assert status == 404
    assert "/v1/pull" in reply["error"]
    assert "/v1/push" in reply["error"]
    assert none


def test_push_source_url_is_the_bound_loopback_port() -> None:
    async def scenario(pushed: Pushed) -> str:
        return pushed.source.url

    url = run_push(scenario)
    parts = urlsplit(url)
    assert parts.scheme == "http"
    assert parts.hostname == "127.0.0.1"
    assert parts.port is not None and parts.port > 0  # port 0 asked the OS for a free port


def test_csv_rows_rejected_at_the_boundary_are_counted_in_the_node_status(
    tmp_path: Path,
) -> None:
    """End to end through ``run_node``: bad CSV rows show up in the node's counters."""
    from edgeloop.node.config import parse_node_config
    from edgeloop.node.main import run_node
    from edgeloop.node.plan import make_plan

    csv = tmp_path / "replay.csv"
    csv.write_text(
        "sensor,ts,value\n"
        "m1.temp,1000,20.5\n"
        "m1.temp,abc,20.6\n"
        "m9.nope,3000,1.0\n"
        "m1.temp,4000,nan\n"
        "m1.temp,5000,20.9\n"
    )
    cfg = parse_node_config(
        {
            "node_id": "edge1",
            "tier": "device",
            "sensors": [{"name": "m1.temp", "machine": "m1", "kind": "temperature"}],
            "sources": [{"type": "csv", "path": str(csv)}],
        }
    )
    stats = asyncio.run(run_node(make_plan(cfg), 1.0, drain_timeout_s=1.0))
    assert stats["samples_accepted"] == 2
    rejected = stats["samples_rejected"]
    assert rejected.get("wrong_type") == 1
    assert rejected.get("unknown_sensor") == 1
    assert rejected.get("non_finite") == 1

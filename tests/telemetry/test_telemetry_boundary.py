"""The API boundary: JSON records and CSV rows become frames; bad records are named."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from _telemetry_helpers import NAMES, T0, catalog, rows_of
from hypothesis import given
from hypothesis import strategies as st

from edgeloop.errors import RejectReason, TelemetryError
from edgeloop.telemetry.boundary import frame_from_csv, frame_from_records
from edgeloop.telemetry.validate import FrameValidator, count_rejects

CAT = catalog()
GOOD = [
    {"sensor": NAMES[0], "ts": T0, "value": 1.5},
    {"sensor": NAMES[2], "ts": T0 + 7, "value": -3},
]
GOOD_ROWS = [(0, T0, 1.5), (2, T0 + 7, -3.0)]


def with_bad(bad: object) -> list[Any]:
    """A good record, the bad one (index 1), another good record."""
    return [GOOD[0], bad, GOOD[1]]


@pytest.mark.parametrize(
    ("bad", "reason", "field", "hint"),
    [
        (
            {"sensor": NAMES[0], "ts": T0, "value": "abc"},
            RejectReason.WRONG_TYPE,
            "value",
            "got str 'abc'",
        ),
        (
            {"sensor": NAMES[0], "ts": T0, "value": None},
            RejectReason.WRONG_TYPE,
            "value",
            "got null",
        ),
        (
            {"sensor": NAMES[0], "ts": T0, "value": True},
            RejectReason.WRONG_TYPE,
            "value",
            "got bool",
        ),
        (
            {"sensor": NAMES[0], "ts": "1.7e18", "value": 1.0},
            RejectReason.WRONG_TYPE,
            "ts",
            "got str '1.7e18'",
        ),
        (
            {"sensor": NAMES[0], "ts": 1.7e18, "value": 1.0},
            RejectReason.WRONG_TYPE,
            "ts",
            "got float",
        ),
        (
            {"sensor": NAMES[0], "ts": 2**63, "value": 1.0},
            RejectReason.WRONG_TYPE,
            "ts",
            "does not fit int64",
        ),
        ({"sensor": 3, "ts": T0, "value": 1.0}, RejectReason.WRONG_TYPE, "sensor", "got int 3"),
        ({"sensor": NAMES[0], "value": 1.0}, RejectReason.MALFORMED, "ts", "missing key"),
        ({"ts": T0, "value": 1.0}, RejectReason.MALFORMED, "sensor", "missing key"),
        (
            {"sensor": "m99.nope", "ts": T0, "value": 1.0},
            RejectReason.UNKNOWN_SENSOR,
            "sensor",
            "'m99.nope'",
        ),
    ],
    ids=[
        "value-str",
        "value-null",
        "value-bool",
        "ts-float-string",
        "ts-float",
        "ts-overflow",
        "sensor-int",
        "missing-ts",
        "missing-sensor",
        "unknown-sensor",
    ],
)
def test_bad_record_is_named_and_neighbours_kept(
    bad: dict[str, Any], reason: RejectReason, field: str, hint: str
) -> None:
    f, rejects = frame_from_records(with_bad(bad), CAT)
    assert rows_of(f) == GOOD_ROWS
    (rec,) = rejects
    assert (rec.reason, rec.field) == (reason, f"records[1].{field}")
    assert str(rec).startswith(f"records[1].{field}: {reason.value} (")
    assert hint in rec.detail
    assert count_rejects(rejects) == {reason: 1}


def test_record_that_is_not_an_object() -> None:
    f, rejects = frame_from_records(with_bad(["m01.vib.x", T0, 1.0]), CAT)
    assert rows_of(f) == GOOD_ROWS
    assert [str(r) for r in rejects] == [
        "records[1]: malformed (expected an object, got list ['m01.vib.x', 1700000000000000000, 1.0])"
    ]


def test_first_problem_wins_in_field_order() -> None:
    f, rejects = frame_from_records(with_bad({"sensor": "ghost", "ts": "x", "value": "y"}), CAT)
    assert rows_of(f) == GOOD_ROWS
    assert [(r.reason, r.field) for r in rejects] == [(RejectReason.WRONG_TYPE, "records[1].ts")]


def test_integer_string_timestamp_is_accepted_exactly() -> None:
    ts = T0 + 123_456_789_123  # beyond 2**53: a JSON double would round it
    f, rejects = frame_from_records([{"sensor": NAMES[1], "ts": str(ts), "value": 2}], CAT)
    assert rejects == [] and rows_of(f) == [(1, ts, 2.0)]


def test_nan_and_huge_values_pass_the_boundary_and_are_counted_by_the_validator() -> None:
    records = [
        *GOOD,
        {"sensor": NAMES[0], "ts": T0 + 1, "value": math.nan},
        {"sensor": NAMES[0], "ts": T0 + 2, "value": 1e300},
    ]
    f, rejects = frame_from_records(records, CAT)
    assert rejects == [] and len(f) == 4
    v = FrameValidator(CAT)
    out = v.process(f, T0)
    assert rows_of(out) == GOOD_ROWS
    assert v.rejects == {RejectReason.NON_FINITE: 2}


def test_too_many_records_raise_oversized() -> None:
    with pytest.raises(TelemetryError, match=r"^records: oversized \(3 rows > limit 2\)$"):
        frame_from_records(GOOD + GOOD[:1], CAT, max_records=2)


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "sensor": st.sampled_from([*NAMES, "ghost"]) | st.integers(),
                "ts": st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=4),
                "value": st.floats() | st.integers() | st.text(max_size=3) | st.none(),
            }
        )
        | st.integers()
        | st.dictionaries(st.sampled_from(["sensor", "ts", "value"]), st.integers()),
        max_size=20,
    )
)
def test_every_record_is_kept_or_rejected_once(records: list[Any]) -> None:
    f, rejects = frame_from_records(records, CAT)
    assert len(f) + len(rejects) == len(records)
    bad = {int(r.field.split("]")[0].split("[")[1]) for r in rejects}
    assert len(bad) == len(rejects)
    good = [r for i, r in enumerate(records) if i not in bad]
    assert f.sensor.tolist() == [NAMES.index(r["sensor"]) for r in good]
    assert f.ts.tolist() == [int(r["ts"]) for r in good]


# -- CSV ----------------------------------------------------------------------------

CSV_GOOD = f"sensor,ts,value\n{NAMES[0]},{T0},1.5\n{NAMES[2]},{T0 + 7},-3\n"


def csv_with_bad(line: str) -> str:
    head, first, second = CSV_GOOD.splitlines()
    return f"{head}\n{first}\n{line}\n{second}\n"


@pytest.mark.parametrize(
    ("line", "reason", "field", "hint"),
    [
        (f"{NAMES[0]},{T0},abc", RejectReason.WRONG_TYPE, "rows[1].value", "got 'abc'"),
        (f"{NAMES[0]},{T0},", RejectReason.WRONG_TYPE, "rows[1].value", "got ''"),
        (f"{NAMES[0]},1.7e18,1.0", RejectReason.WRONG_TYPE, "rows[1].ts", "got str '1.7e18'"),
        (f"{NAMES[0]},1_000,1.0", RejectReason.WRONG_TYPE, "rows[1].ts", "got str '1_000'"),
        (f"{NAMES[0]},{2**63},1.0", RejectReason.WRONG_TYPE, "rows[1].ts", "does not fit int64"),
        (f"{NAMES[0]},{T0}", RejectReason.MALFORMED, "rows[1]", "expected 3 fields, got 2"),
        (f"m99.nope,{T0},1.0", RejectReason.UNKNOWN_SENSOR, "rows[1].sensor", "'m99.nope'"),
    ],
    ids=[
        "value-str",
        "value-empty",
        "ts-float",
        "ts-underscore",
        "ts-overflow",
        "short-row",
        "unknown-sensor",
    ],
)
def test_bad_csv_row_is_named_and_neighbours_kept(
    line: str, reason: RejectReason, field: str, hint: str
) -> None:
    f, rejects = frame_from_csv(csv_with_bad(line), CAT)
    assert rows_of(f) == GOOD_ROWS
    (rec,) = rejects
    assert (rec.reason, rec.field) == (reason, field)
    assert str(rec).startswith(f"{field}: {reason.value} (line 3: ")
    assert hint in rec.detail
    assert count_rejects(rejects) == {reason: 1}


def test_csv_from_a_file_with_reordered_columns_extra_column_and_blank_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "replay.csv"
    path.write_text(f"value, ts ,sensor,note\n1.5,{T0},{NAMES[0]},x\n\n-3,{T0 + 7},{NAMES[2]},\n")
    f, rejects = frame_from_csv(path, CAT)
    assert rejects == [] and rows_of(f) == GOOD_ROWS
    f2, _ = frame_from_csv(str(path), CAT)  # a str without a newline is a path
    assert rows_of(f2) == GOOD_ROWS


def test_csv_many_bad_rows_are_reported_in_file_order() -> None:
    text = (
        "sensor,ts,value\n"
        + "".join(f"{NAMES[i % 3]},{T0 + i},{'nope' if i % 4 == 1 else i}\n" for i in range(12))
        + f"ghost,{T0},1\n"
    )
    f, rejects = frame_from_csv(text, CAT)
    assert [r.field for r in rejects] == [
        "rows[1].value",
        "rows[5].value",
        "rows[9].value",
        "rows[12].sensor",
    ]
    assert f.ts.tolist() == [T0 + i for i in range(12) if i % 4 != 1]
    assert f.value.tolist() == [float(i) for i in range(12) if i % 4 != 1]


def test_csv_nan_values_pass_to_the_validator() -> None:
    f, rejects = frame_from_csv(csv_with_bad(f"{NAMES[1]},{T0},nan"), CAT)
    assert rejects == [] and len(f) == 3 and math.isnan(f.value[1])


@pytest.mark.parametrize("text", ["", "sensor,value\nx,1\n", "a,b,c\n"])
def test_csv_without_the_header_is_malformed(text: str) -> None:
    with pytest.raises(TelemetryError) as info:
        frame_from_csv(text + "\n", CAT)
    assert (info.value.field, info.value.reason) == ("header", RejectReason.MALFORMED)
    assert "expected a header with sensor,ts,value" in info.value.detail


def test_csv_too_many_rows_raise_oversized() -> None:
    with pytest.raises(TelemetryError, match=r"^rows: oversized"):
        frame_from_csv(CSV_GOOD, CAT, max_rows=1)

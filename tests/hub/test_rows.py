"""Records to rows: JSON values are written the same whichever path encodes them."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from edgeloop.hub.rows import event_rows, json_safe, json_text

from .conftest import event

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=4)
    | st.floats(width=32).map(np.float32)
    | st.integers(-(2**31), 2**31 - 1).map(np.int64)
    | st.binary(max_size=3)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=3) | st.integers(0, 3), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(values)
def test_json_text_is_json_dumps_of_json_safe(value: Any) -> None:
    assert json_text(value) == json.dumps(json_safe(value))


def test_event_rows_hold_json_text_and_say_so() -> None:
    ev = event(features={"rms": 2.5, "bad": float("nan"), "n": np.float32(0.5)})
    rows = event_rows("gw1", 1, [ev], lambda frame, names: b"")
    assert rows.native
    record = dict(zip(rows.keys, rows.values[0], strict=True))
    assert json.loads(record["features"]) == {"rms": 2.5, "bad": None, "n": 0.5}
    assert record["raw_sensors"] == "[]"

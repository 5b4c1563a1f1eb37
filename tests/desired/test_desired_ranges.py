"""Byte ranges for resumable downloads."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

import edgeloop.desired.ranges as ranges_mod
from edgeloop.desired import add_range, held_bytes, missing_ranges, normalise
from edgeloop.errors import ConfigError

spans = st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 800)), max_size=8).map(
    lambda xs: [(a, a + n) for a, n in xs]
)


def test_doctest() -> None:
    result = doctest.testmod(ranges_mod)
    assert result.attempted > 0 and result.failed == 0


@given(spans, st.integers(0, 6000), st.integers(1, 2000))
def test_missing_and_held_tile_the_file_exactly(
    held: list[tuple[int, int]], size: int, chunk: int
) -> None:
    held = [(min(a, size), min(b, size)) for a, b in held]
    have = normalise(held)
    missing = missing_ranges(size, have, chunk)
    covered = [0] * size
    for a, b in (*have, *missing):
        for i in range(a, b):
            covered[i] += 1
    assert all(c == 1 for c in covered)  # every byte exactly once: disjoint and complete
    assert all(0 < b - a <= chunk for a, b in missing)
    # Chunk-aligned: no piece crosses a multiple of the chunk size.
    assert all(a // chunk == (b - 1) // chunk for a, b in missing)
    assert held_bytes(have) + sum(b - a for a, b in missing) == size


@given(spans)
def test_normalise_is_idempotent_sorted_and_disjoint(held: list[tuple[int, int]]) -> None:
    n = normalise(held)
    assert normalise(n) == n
    assert all(a < b for a, b in n)
    assert all(n[i][1] < n[i + 1][0] for i in range(len(n) - 1))
    assert {i for a, b in held for i in range(a, b)} == {i for a, b in n for i in range(a, b)}


def test_resuming_asks_for_the_same_chunks() -> None:
    first = missing_ranges(10_000, (), 4096)
    assert first == ((0, 4096), (4096, 8192), (8192, 10_000))
    held = add_range((), 0, 4096)
    assert missing_ranges(10_000, held, 4096) == first[1:]
    assert missing_ranges(10_000, add_range(held, 4096, 10_000), 4096) == ()
    assert missing_ranges(0, (), 4096) == ()


def test_bad_ranges_are_named() -> None:
    with pytest.raises(ConfigError, match=r"range: \(5, 2\) is not a byte range"):
        normalise([(5, 2)])
    with pytest.raises(ConfigError, match="held bytes up to 20 exceed the size 10"):
        missing_ranges(10, [(0, 20)], 4)
    with pytest.raises(ConfigError, match="chunk 0 >= 1"):
        missing_ranges(10, (), 0)

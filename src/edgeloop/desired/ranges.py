"""Byte ranges of a partly downloaded artifact: what is held, what is missing.

Ranges are half-open ``(start, end)`` pairs of byte offsets. A held set is kept
normalised (sorted, disjoint, non-adjacent ranges merged) by :func:`add_range`;
:func:`missing_ranges` lists the gaps in chunks of at most ``chunk`` bytes, aligned to
multiples of ``chunk`` so that a resumed download asks for the same chunks as the first
attempt (which makes them cacheable and their requests idempotent).

>>> held = add_range((), 0, 1000)
>>> held = add_range(held, 2500, 3000)
>>> missing_ranges(4096, held, 1024)
((1000, 1024), (1024, 2048), (2048, 2500), (3000, 3072), (3072, 4096))
"""

from __future__ import annotations

from collections.abc import Iterable

from edgeloop.errors import ConfigError

Range = tuple[int, int]


def normalise(ranges: Iterable[Range]) -> tuple[Range, ...]:
    """Sorted, disjoint ranges; overlapping or touching ranges merged, empty ones dropped.

    Raises:
        ConfigError: a range has ``start < 0`` or ``end < start``.
    """
    items = []
    for start, end in ranges:
        if start < 0 or end < start:
            raise ConfigError(f"range: ({start}, {end}) is not a byte range")
        if end > start:
            items.append((start, end))
    items.sort()
    out: list[Range] = []
    for start, end in items:
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


def add_range(held: Iterable[Range], start: int, end: int) -> tuple[Range, ...]:
    """``held`` plus ``[start, end)``, normalised."""
    return normalise([*held, (start, end)])


def held_bytes(held: Iterable[Range]) -> int:
    """Bytes covered by ``held``."""
    return sum(end - start for start, end in normalise(held))


def missing_ranges(size: int, held: Iterable[Range], chunk: int) -> tuple[Range, ...]:
    """The bytes of ``[0, size)`` not in ``held``, as chunk-aligned pieces of <= ``chunk``.

    Raises:
        ConfigError: ``size < 0``, ``chunk < 1``, or a held range reaches past ``size``.
    """
    if size < 0 or chunk < 1:
        raise ConfigError(f"missing_ranges: size {size} must be >= 0 and chunk {chunk} >= 1")
    have = normalise(held)
    if have and have[-1][1] > size:
        raise ConfigError(f"range: held bytes up to {have[-1][1]} exceed the size {size}")
    gaps: list[Range] = []
    pos = 0
    for start, end in (*have, (size, size)):
        if start > pos:
            gaps.append((pos, start))
        pos = max(pos, end)
    out: list[Range] = []
    for start, end in gaps:
        cut = start
        while cut < end:
            nxt = min(end, (cut // chunk + 1) * chunk)
            out.append((cut, nxt))
            cut = nxt
    return tuple(out)

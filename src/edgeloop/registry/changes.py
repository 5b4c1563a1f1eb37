"""Differences between two manifests, field by field (``edgeloop models diff``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgeloop.registry.manifest import Manifest


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two manifests.

    Attributes:
        path: dotted field path (``"metrics.f1"``, ``"input_schema.preset"``).
        before, after: the values (``None`` when the field is absent on that side).
    """

    path: str
    before: Any
    after: Any


def diff(a: Manifest, b: Manifest) -> tuple[Change, ...]:
    """Field-by-field differences from ``a`` to ``b``, sorted by path.

    Nested objects are compared field by field; lists and scalars as values. The drift
    reference is compared by its layout (names and edges) and row count.
    """
    fa, fb = _flatten(_diffable(a)), _flatten(_diffable(b))
    out = [
        Change(path, fa.get(path), fb.get(path))
        for path in sorted(set(fa) | set(fb))
        if fa.get(path) != fb.get(path)
    ]
    return tuple(out)


def _diffable(m: Manifest) -> dict[str, Any]:
    d = m.to_dict()
    ref = m.drift_reference
    d["drift_reference"] = (
        None if ref is None else {"layout": ref.layout_id(), "rows": int(ref.total.sum())}
    )
    return d


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out

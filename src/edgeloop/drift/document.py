"""The ``sketch`` document: one node's drift sketches of one period, compact JSON.

A gateway sends, per period, the sketch of its acting model's input features on the
edges of that model's reference sketch (the manifest's ``drift_reference``), and a
sketch of the scores it acted on (fixed edges over ``[0, 1]``). The edges are not sent:
the model version names them and ``layout`` (:meth:`Sketch.layout_id`) proves which
ones were used, so the hub refuses a sketch built on other edges. Counts travel as int
lists, sums as floats (JSON round-trips both exactly)::

    {"schema": "edgeloop.drift-sketch/1", "node": "gw1", "version": "v3",
     "group": "vibration", "period_start_ns": ..., "period_end_ns": ...,
     "layout": "<sha256 of names and edges>", "names": ["mean", "std", ...],
     "counts": [[...b + 2 ints...], ...], "sums": [[...], ...],
     "sumsq": [...], "nonfinite": [...],
     "scores": {"counts": [...], "sums": [...], "sumsq": x, "nonfinite": n} | null}

:func:`sketch_document` builds it, :func:`parse_sketch_document` checks every field
(naming the one that is wrong) and :meth:`SketchDocument.features` rebuilds the
:class:`Sketch` on a reference's edges. Pure; numpy and the standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeloop.drift.sketch import Sketch, SketchError

SKETCH_SCHEMA = "edgeloop.drift-sketch/1"
KIND_SKETCH = "sketch"

SCORE_NAMES = ("score",)
SCORE_EDGES = np.linspace(0.0, 1.0, 21)[None, :]
"""Edges of the score sketch: 20 bins over ``[0, 1]`` (scores are calibrated there)."""


def score_sketch() -> Sketch:
    """An empty sketch of scores on :data:`SCORE_EDGES`."""
    return Sketch.empty(SCORE_NAMES, SCORE_EDGES)


@dataclass(frozen=True, slots=True, eq=False)
class SketchDocument:
    """A parsed ``sketch`` document (see the module docstring).

    Attributes:
        node, version, group: who sent it, the acting model, its window group.
        period_start_ns, period_end_ns: the period the sketches cover.
        layout: :meth:`Sketch.layout_id` of the features' names and edges.
        names: feature names (the reference's, in its order).
        counts, sums, sumsq, nonfinite: the feature sketch's arrays.
        scores: the score sketch (on :data:`SCORE_EDGES`), if sent.
    """

    node: str
    version: str
    group: str
    period_start_ns: int
    period_end_ns: int
    layout: str
    names: tuple[str, ...]
    counts: np.ndarray
    sums: np.ndarray
    sumsq: np.ndarray
    nonfinite: np.ndarray
    scores: Sketch | None

    def features(self, reference: Sketch) -> Sketch:
        """The feature sketch on ``reference``'s edges.

        Raises:
            SketchError: the names, the bin count or the layout differ from the
                reference's (``sketch.names``, ``sketch.counts``, ``sketch.layout``).
        """
        if self.names != reference.names:
            raise SketchError(
                f"sketch.names: {list(self.names)} differ from the reference's "
                f"{list(reference.names)} of model {self.version}"
            )
        if self.counts.shape != reference.counts.shape:
            raise SketchError(
                f"sketch.counts: shape {self.counts.shape}, the reference of model "
                f"{self.version} has {reference.counts.shape}"
            )
        if self.layout != reference.layout_id():
            raise SketchError(
                f"sketch.layout: built on other edges than the reference of model {self.version}"
            )
        return Sketch(
            reference.names, reference.edges, self.counts, self.sums, self.sumsq, self.nonfinite
        )


def sketch_document(
    node: str,
    version: str,
    group: str,
    period_start_ns: int,
    period_end_ns: int,
    features: Sketch,
    scores: Sketch | None = None,
) -> dict[str, Any]:
    """The JSON-able document of one period's sketches."""
    return {
        "schema": SKETCH_SCHEMA,
        "node": node,
        "version": version,
        "group": group,
        "period_start_ns": int(period_start_ns),
        "period_end_ns": int(period_end_ns),
        "layout": features.layout_id(),
        "names": list(features.names),
        "counts": features.counts.tolist(),
        "sums": features.sums.tolist(),
        "sumsq": features.sumsq.tolist(),
        "nonfinite": features.nonfinite.tolist(),
        "scores": None
        if scores is None
        else {
            "counts": scores.counts[0].tolist(),
            "sums": scores.sums[0].tolist(),
            "sumsq": float(scores.sumsq[0]),
            "nonfinite": int(scores.nonfinite[0]),
        },
    }


def encode_sketch_document(doc: Mapping[str, Any]) -> bytes:
    """Compact JSON bytes of a document (sorted keys, no spaces)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _str(doc: Mapping[str, Any], name: str) -> str:
    v = doc.get(name)
    if not isinstance(v, str) or not v or len(v) > 256:
        raise SketchError(f"sketch.{name}: expected a non-empty string, got {v!r:.80}")
    return v


def _ns(doc: Mapping[str, Any], name: str) -> int:
    v = doc.get(name)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**63:
        raise SketchError(f"sketch.{name}: not an int64 ns time: {v!r:.80}")
    return v


def _ints(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    if not _all_ints(value):
        raise SketchError(f"sketch.{name}: expected lists of non-negative integers")
    try:
        arr = np.asarray(value, dtype=np.int64)
    except ValueError:  # ragged rows
        raise SketchError(f"sketch.{name}: expected shape {shape}, rows differ in length") from None
    if arr.shape != shape:
        raise SketchError(f"sketch.{name}: expected shape {shape}, got {arr.shape}")
    return arr


def _all_ints(value: Any) -> bool:
    if isinstance(value, list):
        return all(_all_ints(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62


def _floats(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise SketchError(f"sketch.{name}: expected numbers") from None
    if arr.shape != shape:
        raise SketchError(f"sketch.{name}: expected shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise SketchError(f"sketch.{name}: must be finite")
    return arr


def parse_sketch_document(doc: Mapping[str, Any]) -> SketchDocument:
    """Check a ``sketch`` document's fields; raise :class:`SketchError` naming the one
    that is wrong (``sketch.<field>``)."""
    if doc.get("schema") != SKETCH_SCHEMA:
        raise SketchError(f"sketch.schema: {doc.get('schema')!r:.80}, expected {SKETCH_SCHEMA!r}")
    node, version, group = _str(doc, "node"), _str(doc, "version"), _str(doc, "group")
    start, end = _ns(doc, "period_start_ns"), _ns(doc, "period_end_ns")
    if end < start:
        raise SketchError(f"sketch.period_end_ns: {end} before period_start_ns {start}")
    layout = _str(doc, "layout")
    names = doc.get("names")
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
    ):
        raise SketchError("sketch.names: expected distinct non-empty feature names")
    k = len(names)
    counts_raw = doc.get("counts")
    if not isinstance(counts_raw, list) or len(counts_raw) != k or not counts_raw:
        raise SketchError(f"sketch.counts: expected {k} rows, one per name")
    if not isinstance(counts_raw[0], list) or len(counts_raw[0]) < 3:
        raise SketchError("sketch.counts: a row needs at least 3 bins (b >= 1)")
    nb = len(counts_raw[0])
    counts = _ints(counts_raw, (k, nb), "counts")
    sums = _floats(doc.get("sums"), (k, nb), "sums")
    sumsq = _floats(doc.get("sumsq"), (k,), "sumsq")
    nonfinite = _ints(doc.get("nonfinite"), (k,), "nonfinite")
    scores = None
    raw = doc.get("scores")
    if raw is not None:
        if not isinstance(raw, dict):
            raise SketchError("sketch.scores: expected an object or null")
        nbs = SCORE_EDGES.shape[1] + 1
        scores = Sketch(
            SCORE_NAMES,
            SCORE_EDGES,
            _ints(raw.get("counts"), (nbs,), "scores.counts")[None],
            _floats(raw.get("sums"), (nbs,), "scores.sums")[None],
            _floats([raw.get("sumsq")], (1,), "scores.sumsq"),
            _ints([raw.get("nonfinite")], (1,), "scores.nonfinite"),
        )
    return SketchDocument(
        node,
        version,
        group,
        start,
        end,
        layout,
        tuple(names),
        counts,
        sums,
        sumsq,
        nonfinite,
        scores,
    )


def decode_sketch_document(payload: bytes) -> SketchDocument:
    """Parse the bytes of a ``sketch`` outbox entry.

    Raises:
        SketchError: not a JSON object, or a field is wrong (named).
    """
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SketchError(f"sketch.payload: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise SketchError("sketch.payload: not a JSON object")
    return parse_sketch_document(doc)


__all__ = [
    "KIND_SKETCH",
    "SCORE_EDGES",
    "SCORE_NAMES",
    "SKETCH_SCHEMA",
    "SketchDocument",
    "decode_sketch_document",
    "encode_sketch_document",
    "parse_sketch_document",
    "score_sketch",
    "sketch_document",
]

"""Drift sketches on the node: what the acting model sees, per period, for the hub.

:class:`SketchCollector` is fed every scored block (``NodeCore.score_sink``, through the
reconciler). For the acting model's window group it keeps the block's features in the
column order of the model's reference sketch (the manifest's ``drift_reference``, read
from the signed manifest the node verified) and the scores the node acted on.
:meth:`SketchCollector.take` closes the period: one :class:`~edgeloop.drift.Sketch` of
the features on the reference's edges, one of the scores on fixed edges over ``[0, 1]``,
sent as a ``sketch`` document entry of the summary class
(:mod:`edgeloop.drift.document`). A model without a reference (a spec's own model, an
old manifest) gives no sketches.

Rows are buffered as the blocks arrive and binned in bulk (every :data:`FLUSH_ROWS` rows
and at the end of the period), so the data path pays a list append per block. numpy and
the standard library only: this runs on gateways.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edgeloop.drift.document import (
    KIND_SKETCH,
    encode_sketch_document,
    score_sketch,
    sketch_document,
)
from edgeloop.drift.sketch import Sketch, SketchError
from edgeloop.outbox.base import NewEntry, Priority
from edgeloop.pipeline.types import Features, Scores

log = logging.getLogger("edgeloop.node.drift")

FLUSH_ROWS = 4096
"""Buffered rows binned into the period's sketches at once."""


def read_reference(manifest_path: Path) -> Sketch | None:
    """The ``drift_reference`` of a stored (verified) manifest; ``None`` if it has none
    or cannot be read (logged: the node then sends no sketches for that model)."""
    try:
        doc = json.loads(manifest_path.read_bytes())
        ref = doc.get("drift_reference") if isinstance(doc, dict) else None
        return None if ref is None else Sketch.from_dict(ref, "drift_reference")
    except (OSError, ValueError, SketchError) as exc:
        log.warning("no drift reference in %s: %s", manifest_path, exc)
        return None


class SketchCollector:
    """Per-period sketches of the acting model's features and scores (module docstring).

    Args:
        node: the node id written into each document.

    Attributes:
        version, group: the acting model and its window group (``None`` before one).
        periods: documents sent; rows_total: feature rows sketched over the node's life.
    """

    def __init__(self, node: str) -> None:
        self.node = node
        self.version: str | None = None
        self.group: str | None = None
        self.reference: Sketch | None = None
        self.periods = 0
        self.rows_total = 0
        self._start_ns = 0
        self._cols: dict[tuple[str, ...], npt.NDArray[np.intp] | None] = {}
        self._reset()

    def _reset(self) -> None:
        ref = self.reference
        self._features = None if ref is None else Sketch.empty(ref.names, ref.edges)
        self._scores = score_sketch()
        self._rows: list[npt.NDArray[np.float32]] = []
        self._score_rows: list[npt.NDArray[np.float32]] = []
        self._buffered = 0

    def begin(
        self, version: str, group: str, reference: Sketch | None, now_ns: int
    ) -> NewEntry | None:
        """A new acting model from ``now_ns`` on; returns the previous model's last period."""
        last = self.take(now_ns)
        self.version, self.group, self.reference = version, group, reference
        self._cols = {}
        self._reset()
        self._start_ns = now_ns
        return last

    # -- the score sink --------------------------------------------------------------------
    def __call__(self, features: Features, scores: Scores) -> None:
        if self.reference is None or features.group != self.group or not len(features):
            return
        if features.names in self._cols:
            cols = self._cols[features.names]
        else:
            cols = self._columns(features.names)
        if cols is None:
            return
        self._rows.append(features.values[:, cols])
        self._score_rows.append(scores.score)
        self._buffered += len(features)
        if self._buffered >= FLUSH_ROWS:
            self._flush()

    def _columns(self, names: tuple[str, ...]) -> npt.NDArray[np.intp] | None:
        assert self.reference is not None
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.reference.names if n not in index]
        cols = None
        if missing:
            log.error(
                "model %s: features %s not computed by group %s; no drift sketches",
                self.version,
                missing,
                self.group,
            )
        else:
            cols = np.array([index[n] for n in self.reference.names], dtype=np.intp)
        self._cols[names] = cols
        return cols

    def _flush(self) -> None:
        if not self._rows or self._features is None:
            return
        self._features = self._features.update(np.concatenate(self._rows))
        self._scores = self._scores.update(np.concatenate(self._score_rows)[:, None])
        self.rows_total += self._buffered
        self._rows, self._score_rows, self._buffered = [], [], 0

    # -- periods ---------------------------------------------------------------------------
    def take(self, now_ns: int) -> NewEntry | None:
        """Close the period at ``now_ns``: its ``sketch`` entry (``None`` when there is no
        acting model with a reference, or the period saw no window)."""
        self._flush()
        feats, start = self._features, self._start_ns
        self._start_ns = max(start, now_ns)
        if feats is None or self.version is None or self.group is None:
            return None
        if not int(feats.total.max(initial=0)) and not int(feats.nonfinite.max(initial=0)):
            return None
        doc = sketch_document(
            self.node,
            self.version,
            self.group,
            start,
            max(now_ns, start),
            feats,
            self._scores,
        )
        self._reset()
        self.periods += 1
        return NewEntry(Priority.SUMMARY, KIND_SKETCH, encode_sketch_document(doc), 0, now_ns)


__all__ = ["FLUSH_ROWS", "SketchCollector", "read_reference"]

"""A training set from the curated samples nodes sent (``sample`` documents).

:func:`recent_documents` reads the newest documents of a time range;
:func:`build_training_set` takes the stored documents of a time range, keeps those
whose window group and feature names are the champion's (columns put in the champion's
order; documents of other models' features are counted, not used), stacks their rows in
the order the store lists them (time, node, epoch, seq: the same documents give the same
matrix), keeps the newest ``max_rows``, and records where the rows came from: the time
range their periods cover and the source nodes, as the registry's training-data
fingerprint wants them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from edgeloop.errors import TelemetryError
from edgeloop.hub import schema as t
from edgeloop.hub.model_store import reading
from edgeloop.hub.records import StoredDocument
from edgeloop.hub.store import HubStore
from edgeloop.node.samples import sample_rows


@dataclass(frozen=True, slots=True, eq=False)
class TrainingSet:
    """Rows of normal windows for one model's features, and their provenance.

    Attributes:
        names: the feature names, in column order.
        rows: ``(n, len(names))`` float32.
        start_ns, end_ns: the earliest period start and latest period end used.
        source_nodes: the nodes whose documents were used (sorted).
        documents: documents used; skipped: documents left out, by why.
        truncated_rows: older rows left out beyond ``max_rows``.
    """

    names: tuple[str, ...]
    rows: npt.NDArray[np.float32]
    start_ns: int
    end_ns: int
    source_nodes: tuple[str, ...]
    documents: int
    skipped: dict[str, int] = field(default_factory=dict)
    truncated_rows: int = 0

    def describe(self) -> dict[str, Any]:
        """The provenance as JSON (rows left out)."""
        return {
            "rows": int(self.rows.shape[0]),
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "source_nodes": list(self.source_nodes),
            "documents": self.documents,
            "skipped": dict(self.skipped),
            "truncated_rows": self.truncated_rows,
        }


def recent_documents(
    store: HubStore, kind: str, since_ns: int, until_ns: int, limit: int
) -> list[StoredDocument]:
    """The newest ``limit`` documents of ``kind`` with ``since_ns <= t_ns < until_ns``,
    oldest first (``HubStore.documents`` would give the oldest ``limit``)."""
    c = t.node_documents.c
    q = (
        select(c.node, c.epoch, c.seq, c.kind, c.t_ns, c.body)
        .where(c.kind == kind, c.t_ns >= since_ns, c.t_ns < until_ns)
        .order_by(c.t_ns.desc(), c.node.desc(), c.epoch.desc(), c.seq.desc())
        .limit(limit)
    )
    with reading(store) as conn:
        rows = list(conn.execute(q))
    return [
        StoredDocument(r.node, r.epoch, r.seq, r.kind, r.t_ns, json.loads(r.body))
        for r in reversed(rows)
    ]


def build_training_set(
    docs: Sequence[StoredDocument],
    names: Sequence[str],
    group: str,
    *,
    max_rows: int = 200_000,
) -> TrainingSet:
    """Stack the rows of ``docs`` that describe ``group``'s features ``names``."""
    want = tuple(names)
    blocks: list[npt.NDArray[np.float32]] = []
    nodes: set[str] = set()
    skipped: dict[str, int] = {}
    start, end = 2**63 - 1, 0
    for d in docs:
        body = d.body
        why = None
        if body.get("node") != d.node:
            why = "other_node"
        elif body.get("group") != group:
            why = "other_group"
        elif sorted(body.get("feature_names") or []) != sorted(want):
            why = "other_features"
        if why is not None:
            skipped[why] = skipped.get(why, 0) + 1
            continue
        try:
            x = sample_rows(body)
        except TelemetryError:  # stored before a decoder checked it: not usable
            skipped["malformed"] = skipped.get("malformed", 0) + 1
            continue
        if x.shape[0] == 0:
            continue
        have = tuple(body["feature_names"])
        if have != want:
            x = x[:, [have.index(n) for n in want]]
        blocks.append(x)
        nodes.add(d.node)
        start = min(start, int(body["period_start_ns"]))
        end = max(end, int(body["period_end_ns"]))
    rows = np.concatenate(blocks) if blocks else np.zeros((0, len(want)), np.float32)
    truncated = max(0, rows.shape[0] - max_rows)
    if truncated:
        rows = rows[truncated:]
    return TrainingSet(
        names=want,
        rows=np.ascontiguousarray(rows, dtype=np.float32),
        start_ns=start if blocks else 0,
        end_ns=end,
        source_nodes=tuple(sorted(nodes)),
        documents=len(blocks),
        skipped=skipped,
        truncated_rows=truncated,
    )


__all__ = ["TrainingSet", "build_training_set", "recent_documents"]

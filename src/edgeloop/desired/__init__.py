"""Desired state: what each node should run, and how a node converges on it.

* :mod:`~edgeloop.desired.documents`: per-group states, per-node documents
  (:func:`resolve`), canonical bytes.
* :mod:`~edgeloop.desired.reconciler`: the node's pure reconcile step (download missing
  byte ranges, verify, swap atomically keeping the previous model, prune, report).
* :mod:`~edgeloop.desired.ranges`: byte-range bookkeeping for resumable downloads.

Pure logic, safe on a gateway; the download and swap I/O lives in node adapters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeloop._lazy import lazy_exports

if TYPE_CHECKING:
    from edgeloop.desired.documents import (
        DESIRED_SCHEMA,
        DesiredState,
        GroupState,
        ModelSlot,
        pipeline_digest,
        resolve,
    )
    from edgeloop.desired.ranges import add_range, held_bytes, missing_ranges, normalise
    from edgeloop.desired.reconciler import (
        Action,
        ActualState,
        Download,
        LocalArtifact,
        Prune,
        Report,
        Swap,
        Verify,
        reconcile,
        version_drift,
    )

_WHERE = {
    "DESIRED_SCHEMA": "documents",
    "DesiredState": "documents",
    "GroupState": "documents",
    "ModelSlot": "documents",
    "pipeline_digest": "documents",
    "resolve": "documents",
    "add_range": "ranges",
    "held_bytes": "ranges",
    "missing_ranges": "ranges",
    "normalise": "ranges",
    "Action": "reconciler",
    "ActualState": "reconciler",
    "Download": "reconciler",
    "LocalArtifact": "reconciler",
    "Prune": "reconciler",
    "Report": "reconciler",
    "Swap": "reconciler",
    "Verify": "reconciler",
    "reconcile": "reconciler",
    "version_drift": "reconciler",
}

__all__ = [
    "DESIRED_SCHEMA",
    "Action",
    "ActualState",
    "DesiredState",
    "Download",
    "GroupState",
    "LocalArtifact",
    "ModelSlot",
    "Prune",
    "Report",
    "Swap",
    "Verify",
    "add_range",
    "held_bytes",
    "missing_ranges",
    "normalise",
    "pipeline_digest",
    "reconcile",
    "resolve",
    "version_drift",
]

__getattr__, __dir__ = lazy_exports("edgeloop.desired", _WHERE, globals())

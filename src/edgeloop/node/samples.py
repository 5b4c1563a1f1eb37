"""Curated samples of normal windows, sent upstream for retraining (``sample`` documents).

:class:`SampleCollector` sees every scored block of the node (``NodeCore.score_sink``:
features and combined scores). It keeps, per period, a bounded reservoir of the feature
rows of the acting model's window group that are not clearly anomalous — combined score
below ``max_score_ratio × threshold`` (1.5 by default: the normal tail just above the
threshold stays in, or the next model's calibration would be truncated at this one's) —
on machines without an open incident that
another window group (or a dropout) raised or extended: the acting group's own alarms
are already left out row by row, and leaving out every row of a machine the drifted
model alarms on would sample only what it still accepts (in the drift scenario its
retrained model then alarmed 1,019 times an hour against the champion's 400 before the
change; 429 with this rule, one run each). The
reservoir is a seeded uniform sample of every such row of the period (Vitter's
algorithm R, vectorised per block), so a busy period is represented as fairly as a quiet
one, and its size is capped so that one period's document stays under ``max_bytes``.

:meth:`SampleCollector.take` closes the period: a JSON document of schema
``edgeloop.training-sample/1`` (node, acting model version, window group, feature
names, period, the rows as base64 of little-endian float32 with their shape, and how
many windows were seen and left out) as an outbox entry of the summary class, kind
``sample``. The hub decodes it with :func:`decode_sample` (``edgeloop.hub.documents``)
and builds training sets from the stored documents (``edgeloop.hub.retrain``).

numpy and the standard library only: this runs on gateways.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeloop.errors import RejectReason, TelemetryError
from edgeloop.outbox.base import NewEntry, Priority
from edgeloop.pipeline.types import Features, Scores

KIND_SAMPLE = "sample"
SAMPLE_SCHEMA = "edgeloop.training-sample/1"
DTYPE = "<f4"
_OVERHEAD = 1024
"""Bytes of a document besides its rows (names, versions, counts), kept out of the cap."""


class SampleCollector:
    """A seeded reservoir of clearly normal feature rows per period (module docstring).

    Args:
        node: the node id written into each document.
        open_machines: the machine codes with a tainting open incident now (rows of those
            machines are left out).
        machine_of: machine code of each sensor index (``SensorCatalog.machine_codes``).
        max_rows: reservoir size per period (the byte cap may lower it).
        max_bytes: cap of one document's size.
        max_score_ratio: a row is kept when its combined score is below this multiple of
            the threshold (``>= 1 / threshold``: every row).
        seed: seeds the reservoir (the same input gives the same sample).

    Attributes:
        version, group, names: the acting model, its window group and feature names
            (``None`` until :meth:`begin`: nothing is collected before a model acts).
        totals: counters over the node's life (``windows``, ``eligible``, ``sent_rows``,
            ``documents``, ``excluded_score``, ``excluded_incident``).
    """

    def __init__(
        self,
        node: str,
        open_machines: Callable[[], npt.NDArray[np.bool_]],
        machine_of: npt.NDArray[np.integer[Any]],
        *,
        max_rows: int = 256,
        max_bytes: int = 64 * 1024,
        max_score_ratio: float = 1.5,
        seed: int = 0,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"samples.max_rows: must be >= 1, got {max_rows}")
        if max_bytes <= _OVERHEAD:
            raise ValueError(f"samples.max_bytes: must be > {_OVERHEAD}, got {max_bytes}")
        if not max_score_ratio > 0:
            raise ValueError(f"samples.max_score_ratio: must be > 0, got {max_score_ratio}")
        self.node = node
        self.open_machines = open_machines
        self.machine_of = np.asarray(machine_of)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.max_score_ratio = max_score_ratio
        self.version: str | None = None
        self.group: str | None = None
        self.names: tuple[str, ...] = ()
        self.totals = dict.fromkeys(
            (
                "windows",
                "eligible",
                "excluded_score",
                "excluded_incident",
                "sent_rows",
                "documents",
            ),
            0,
        )
        self._rng = np.random.default_rng(seed)
        self._start_ns = 0
        self._cap = 0
        self._reset()

    def _reset(self) -> None:
        k = len(self.names)
        self._rows = np.zeros((self._cap, k), dtype=np.float32)
        self._filled = 0
        self._seen = 0
        self._windows = 0
        self._excluded_score = 0
        self._excluded_incident = 0

    def begin(self, version: str, group: str, names: tuple[str, ...], now_ns: int) -> None:
        """Collect for ``version`` acting on ``group`` from ``now_ns``; a period under
        the previous model is dropped (its rows were scored by another model)."""
        self.version, self.group, self.names = version, group, tuple(names)
        per_row = 4 * len(self.names) * 4 / 3  # base64 of float32
        self._cap = max(1, min(self.max_rows, int((self.max_bytes - _OVERHEAD) // per_row)))
        self._start_ns = now_ns
        self._reset()

    # -- the core's score sink ---------------------------------------------------------------
    def __call__(self, feats: Features, scores: Scores) -> None:
        if self.group is None or feats.group != self.group or len(feats) == 0:
            return
        n = len(feats)
        self._windows += n
        calm = scores.score < self.max_score_ratio * scores.threshold
        busy = self.open_machines()
        in_incident = busy[self.machine_of[feats.sensor]] if busy.size else np.zeros(n, bool)
        keep = calm & ~in_incident
        self._excluded_score += int(n - np.count_nonzero(calm))
        self._excluded_incident += int(np.count_nonzero(calm & in_incident))
        rows = feats.values[keep]
        if rows.shape[0] == 0:
            return
        if feats.names != self.names:  # the same features in another order
            order = [feats.names.index(name) for name in self.names]
            rows = rows[:, order]
        self._add(np.asarray(rows, dtype=np.float32))

    def _add(self, rows: npt.NDArray[np.float32]) -> None:
        """Algorithm R over the rows of one block, in order."""
        cap = self._cap
        free = cap - self._filled
        if free > 0:
            head = rows[:free]
            self._rows[self._filled : self._filled + head.shape[0]] = head
            self._filled += head.shape[0]
            self._seen += head.shape[0]
            rows = rows[head.shape[0] :]
        m = rows.shape[0]
        if m == 0:
            return
        # Row i (0-based in what is left) is the (seen + i + 1)-th eligible row: it takes
        # slot j ~ U{0, ..., seen + i} when j < cap. Fancy assignment applies the rows in
        # order, so a later row replacing the same slot wins, as in the sequential form.
        seen = self._seen + np.arange(1, m + 1, dtype=np.int64)
        j = np.floor(self._rng.random(m) * seen).astype(np.int64)
        take = j < cap
        self._rows[j[take]] = rows[take]
        self._seen += m

    # -- periods -----------------------------------------------------------------------------
    def take(self, now_ns: int) -> NewEntry | None:
        """Close the period at ``now_ns``: the ``sample`` document's outbox entry (``None``
        when no model acts or the period kept no row)."""
        if self.version is None or self.group is None or self._filled == 0:
            self._start_ns = max(self._start_ns, now_ns)
            self._count()
            self._reset()
            return None
        doc = encode_sample(
            node=self.node,
            version=self.version,
            group=self.group,
            names=self.names,
            period_start_ns=self._start_ns,
            period_end_ns=max(now_ns, self._start_ns),
            rows=self._rows[: self._filled],
            eligible=self._seen,
            windows=self._windows,
            excluded={"score": self._excluded_score, "incident": self._excluded_incident},
        )
        self._count()
        self.totals["sent_rows"] += self._filled
        self.totals["documents"] += 1
        self._start_ns = now_ns
        self._reset()
        return NewEntry(Priority.SUMMARY, KIND_SAMPLE, doc, 0, now_ns)

    def _count(self) -> None:
        t = self.totals
        t["windows"] += self._windows
        t["eligible"] += self._seen
        t["excluded_score"] += self._excluded_score
        t["excluded_incident"] += self._excluded_incident


def encode_sample(
    *,
    node: str,
    version: str,
    group: str,
    names: tuple[str, ...],
    period_start_ns: int,
    period_end_ns: int,
    rows: npt.ArrayLike,
    eligible: int | None = None,
    windows: int | None = None,
    excluded: Mapping[str, int] | None = None,
) -> bytes:
    """The JSON bytes of a ``sample`` document (schema :data:`SAMPLE_SCHEMA`)."""
    x = np.ascontiguousarray(rows, dtype=DTYPE)
    n = int(x.shape[0])
    doc = {
        "schema": SAMPLE_SCHEMA,
        "node": node,
        "version": version,
        "group": group,
        "feature_names": list(names),
        "period_start_ns": int(period_start_ns),
        "period_end_ns": int(period_end_ns),
        "dtype": DTYPE,
        "shape": [n, len(names)],
        "data": base64.b64encode(x.tobytes()).decode("ascii"),
        "eligible": n if eligible is None else int(eligible),
        "windows": n if windows is None else int(windows),
        "excluded": dict(excluded or {}),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _bad(field: str, detail: str) -> TelemetryError:
    return TelemetryError(f"{KIND_SAMPLE}.{field}", RejectReason.MALFORMED, detail)


def sample_rows(doc: Mapping[str, Any]) -> npt.NDArray[np.float32]:
    """The rows of a ``sample`` document, ``(n, k)`` float32, every field checked.

    Raises:
        TelemetryError: the field that is wrong is named (``sample.feature_names``,
            ``sample.shape``, ``sample.data``, ...); non-finite values are refused
            (``non_finite``).
    """
    names = doc.get("feature_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise _bad("feature_names", f"expected a non-empty list of names, got {names!r:.100}")
    if len(set(names)) != len(names):
        raise _bad("feature_names", "duplicate names")
    for field in ("node", "version", "group"):
        if not isinstance(doc.get(field), str) or not doc[field]:
            raise _bad(field, f"expected a non-empty string, got {doc.get(field)!r:.100}")
    if doc.get("dtype") != DTYPE:
        raise _bad("dtype", f"expected {DTYPE!r}, got {doc.get('dtype')!r:.50}")
    shape = doc.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in shape)
    ):
        raise _bad("shape", f"expected [rows, columns], got {shape!r:.100}")
    if shape[1] != len(names):
        raise _bad("shape", f"{shape[1]} columns but {len(names)} feature_names")
    data = doc.get("data")
    if not isinstance(data, str):
        raise _bad("data", "expected base64 text")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad("data", f"not base64: {exc}") from None
    if len(raw) != 4 * shape[0] * shape[1]:
        raise _bad("data", f"{len(raw)} bytes, shape {shape} needs {4 * shape[0] * shape[1]}")
    x = np.frombuffer(raw, dtype=DTYPE).reshape(shape[0], shape[1]).astype(np.float32)
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise TelemetryError(
            f"{KIND_SAMPLE}.data",
            RejectReason.NON_FINITE,
            f"row {bad[0]}, feature {names[bad[1]]!r} is not finite",
        )
    for field in ("period_start_ns", "period_end_ns"):
        v = doc.get(field)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**63:
            raise _bad(field, f"not an int64 ns time: {v!r:.100}")
    if doc["period_end_ns"] < doc["period_start_ns"]:
        raise _bad("period_end_ns", "before period_start_ns")
    return x


def open_machines_of(
    open_incidents: Callable[[], list[str]], machines: list[str]
) -> Callable[[], npt.NDArray[np.bool_]]:
    """``open_machines`` for :class:`SampleCollector` from the decider's
    ``open_incidents`` (machine names) and the catalog's machine order."""
    index = {m: i for i, m in enumerate(machines)}

    def busy() -> npt.NDArray[np.bool_]:
        out = np.zeros(len(machines), dtype=np.bool_)
        for m in open_incidents():
            if m in index:
                out[index[m]] = True
        return out

    return busy


__all__ = [
    "KIND_SAMPLE",
    "SAMPLE_SCHEMA",
    "SampleCollector",
    "encode_sample",
    "open_machines_of",
    "sample_rows",
]

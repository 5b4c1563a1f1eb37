"""The evaluation of a retrained model, beside the champion, and the bar it must pass.

Both models are scored as nodes run them: the exported ONNX bytes through
:class:`~edgeloop.detect.onnx_model.OnnxDetector` (the same threshold, the same
column matching). Metrics (floats, as manifests keep them):

* ``holdout_alert_rate`` (and ``champion_holdout_alert_rate``): share of the held-back
  normal rows that alert;
* ``true_alarm_recall`` / ``false_alarm_cleared`` (and the champion's): share of the
  events operators labelled true alarms that still alert, and of the false alarms that
  no longer do, over the labelled events whose features are the model's
  (``labelled_true``, ``labelled_false`` count them);
* ``train_rows``, ``holdout_rows``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeloop.hub.labels import LabelRecord
from edgeloop.hub.records import StoredEvent
from edgeloop.pipeline.types import Features

F32 = npt.NDArray[np.float32]


class Scorer:
    """Scores feature rows with an ONNX artifact as a node would."""

    def __init__(self, artifact: bytes, names: tuple[str, ...], group: str) -> None:
        from edgeloop.detect.onnx_model import OnnxDetector  # onnxruntime: on use

        self.det = OnnxDetector(artifact)
        self.names, self.group = names, group

    def alert_rate(self, x: F32) -> float:
        """Share of the rows of ``x`` (columns in ``names`` order) scoring >= threshold."""
        n = x.shape[0]
        if n == 0:
            return 0.0
        z = np.zeros(n, dtype=np.int64)
        feats = Features(self.group, self.names, z.astype(np.uint32), z, z, x)
        sc = self.det.score(feats)
        return float(np.count_nonzero(sc.score >= sc.threshold) / n)


def labelled_rows(
    labelled: Sequence[tuple[LabelRecord, StoredEvent]], names: tuple[str, ...]
) -> tuple[F32, F32]:
    """(true alarms, false alarms): feature rows of the labelled events carrying every
    one of ``names`` with a finite value (columns in ``names`` order)."""
    rows: dict[str, list[list[float]]] = {"true_alarm": [], "false_alarm": []}
    for lab, ev in labelled:
        f: dict[str, Any] = ev.features
        values = [f.get(n) for n in names]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            row = [float(v) for v in values]  # type: ignore[arg-type]
            if np.isfinite(row).all() and lab.label in rows:
                rows[lab.label].append(row)
    k = len(names)
    t = np.asarray(rows["true_alarm"], dtype=np.float32).reshape(-1, k)
    f_ = np.asarray(rows["false_alarm"], dtype=np.float32).reshape(-1, k)
    return t, f_


def evaluate(
    artifact: bytes,
    champion: bytes | None,
    names: tuple[str, ...],
    group: str,
    hold: F32,
    n_train: int,
    labelled: tuple[F32, F32],
) -> dict[str, float]:
    """The metrics of the module docstring."""
    new = Scorer(artifact, names, group)
    old = Scorer(champion, names, group) if champion is not None else None
    m: dict[str, float] = {
        "train_rows": float(n_train),
        "holdout_rows": float(hold.shape[0]),
        "holdout_alert_rate": new.alert_rate(hold),
    }
    if old is not None:
        m["champion_holdout_alert_rate"] = old.alert_rate(hold)
    true_x, false_x = labelled
    m["labelled_true"], m["labelled_false"] = float(len(true_x)), float(len(false_x))
    if len(true_x):
        m["true_alarm_recall"] = new.alert_rate(true_x)
        if old is not None:
            m["champion_true_alarm_recall"] = old.alert_rate(true_x)
    if len(false_x):
        m["false_alarm_cleared"] = 1.0 - new.alert_rate(false_x)
        if old is not None:
            m["champion_false_alarm_cleared"] = 1.0 - old.alert_rate(false_x)
    return m


def bar(
    m: dict[str, float],
    *,
    max_holdout_alert_rate: float,
    min_true_alarm_recall: float,
    min_false_alarm_cleared: float,
) -> list[str]:
    """Why the metrics fail the bar (empty: they pass). Label bars apply only when
    there are labelled events of that kind."""
    out = []
    if m["holdout_alert_rate"] > max_holdout_alert_rate:
        out.append(
            f"alert rate on {int(m['holdout_rows'])} held-back normal rows "
            f"{m['holdout_alert_rate']:.4f} > {max_holdout_alert_rate}"
        )
    if "true_alarm_recall" in m and m["true_alarm_recall"] < min_true_alarm_recall:
        out.append(
            f"flags {m['true_alarm_recall']:.3f} of {int(m['labelled_true'])} labelled "
            f"true alarms < {min_true_alarm_recall}"
        )
    if "false_alarm_cleared" in m and m["false_alarm_cleared"] < min_false_alarm_cleared:
        out.append(
            f"clears {m['false_alarm_cleared']:.3f} of {int(m['labelled_false'])} labelled "
            f"false alarms < {min_false_alarm_cleared}"
        )
    return out


__all__ = ["Scorer", "bar", "evaluate", "labelled_rows"]

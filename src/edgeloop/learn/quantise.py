"""int8 or fp32: quantise an exported model and measure both variants on the same windows.

The issue's rule: an edge artifact is int8 only where a measurement shows it smaller or
faster *with equal quality*; the manifest records the measurement either way
(:class:`~edgeloop.registry.manifest.QuantisationMeasurement`, decided by
:func:`~edgeloop.registry.from_training.choose_quantisation`).

* :func:`quantise_int8`: ONNX Runtime's dynamic quantisation (weights int8, activations
  quantised per batch at run time). It applies to the matrix products of the PCA model; a
  graph without any (the isolation forest's tree ensemble) has nothing to quantise and
  gives ``None``. The ``edgeloop.*`` metadata (features, calibration, threshold) is kept.
* :func:`measure_quantisation`: both variants run through the node's own detector
  (:class:`~edgeloop.detect.onnx_model.OnnxDetector`, one thread, as on a gateway) on
  the validation windows: size in bytes, median inference time per window over
  ``repeats`` runs of the whole block, and quality — F1 of the alerts against
  ``labels`` when there are labels, else the agreement of the int8 alerts with the fp32
  alerts (fp32 quality 1.0 by definition). With ``tolerance=0`` (the default) int8 must
  decide every validation window as fp32 does, or beat fp32's F1.

Hub side: imports onnx and onnxruntime's quantisation tools.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edgeloop.registry.from_training import choose_quantisation
from edgeloop.registry.manifest import QuantisationMeasurement


def quantise_int8(fp32: bytes) -> bytes | None:
    """The dynamically quantised (int8 weights) variant of an ONNX model, or ``None``
    when the graph has no operator the quantiser handles (nothing would change)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load_from_string(fp32)
    if not {n.op_type for n in model.graph.node} & {"MatMul", "Gemm"}:
        return None
    with tempfile.TemporaryDirectory(prefix="edgeloop-int8-") as tmp:
        src, dst = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(fp32)
        logging.disable(logging.WARNING)  # its advice to pre-process goes to the root logger
        try:
            quantize_dynamic(
                src,
                dst,
                op_types_to_quantize=["MatMul", "Gemm"],
                weight_type=QuantType.QInt8,
                extra_options={"MatMulConstBOnly": True},
            )
        finally:
            logging.disable(logging.NOTSET)
        out = onnx.load(str(dst))
    del out.metadata_props[:]  # keep exactly the model's own metadata
    out.metadata_props.extend(model.metadata_props)
    data: bytes = out.SerializeToString()
    return data


def _alerts_and_time(
    artifact: bytes,
    names: Sequence[str],
    group: str,
    x: npt.NDArray[np.float32],
    repeats: int,
) -> tuple[npt.NDArray[np.bool_], float]:
    from edgeloop.detect.onnx_model import OnnxDetector
    from edgeloop.pipeline.types import Features

    det = OnnxDetector(artifact)
    n = len(x)
    feats = Features(
        group=group,
        names=tuple(names),
        sensor=np.zeros(n, np.uint32),
        t0_ns=np.arange(n, dtype=np.int64),
        t1_ns=np.arange(n, dtype=np.int64) + 1,
        values=x,
    )
    scores = det.score(feats)
    took = []
    for _ in range(repeats):
        t = time.perf_counter_ns()
        det.score(feats)
        took.append((time.perf_counter_ns() - t) / 1e3 / max(n, 1))
    return scores.score >= det.threshold, statistics.median(took)


def _f1(pred: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_]) -> float:
    tp = int(np.sum(pred & truth))
    fp = int(np.sum(pred & ~truth))
    fn = int(np.sum(~pred & truth))
    return 2 * tp / (2 * tp + fp + fn) if tp else (1.0 if not (fp or fn) else 0.0)


def measure_quantisation(
    fp32: bytes,
    feature_names: Sequence[str],
    group: str,
    windows: npt.ArrayLike,
    labels: npt.ArrayLike | None = None,
    *,
    repeats: int = 7,
    tolerance: float = 0.0,
) -> tuple[QuantisationMeasurement, bytes]:
    """Measure fp32 against its int8 variant on ``windows``; return the measurement and
    the artifact it chose (the fp32 bytes when int8 does not pay or does not apply).

    Args:
        fp32: the exported model (``learn.to_onnx``).
        feature_names, group: the model's input columns and window group.
        windows: validation feature rows, shape ``(n, len(feature_names))``.
        labels: true anomaly flags per window (quality = F1); ``None``: agreement with
            fp32's alerts.
        repeats: timed runs of the whole block (the median is kept).
        tolerance: how much lower int8's quality may be and still count as equal.
    """
    x = np.ascontiguousarray(windows, dtype=np.float32)
    fp_alerts, fp_us = _alerts_and_time(fp32, feature_names, group, x, repeats)
    int8 = quantise_int8(fp32)
    if int8 is None:
        q_alerts, q_us, q_bytes = fp_alerts, fp_us, len(fp32)
    else:
        q_alerts, q_us = _alerts_and_time(int8, feature_names, group, x, repeats)
        q_bytes = len(int8)
    if labels is None:
        metric, fp_quality = "alert_agreement", 1.0
        q_quality = float(np.mean(q_alerts == fp_alerts)) if len(x) else 1.0
    else:
        truth = np.asarray(labels, dtype=bool)
        metric, fp_quality, q_quality = "f1", _f1(fp_alerts, truth), _f1(q_alerts, truth)
    m = choose_quantisation(
        fp32_bytes=len(fp32),
        int8_bytes=q_bytes,
        fp32_us=fp_us,
        int8_us=q_us,
        metric=metric,
        fp32_quality=fp_quality,
        int8_quality=q_quality,
        tolerance=tolerance,
    )
    if int8 is None:  # nothing to quantise: fp32 by construction (no gain to measure)
        return m, fp32
    return m, int8 if m.chosen == "int8" else fp32


__all__ = ["measure_quantisation", "quantise_int8"]

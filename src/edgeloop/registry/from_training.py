"""Hub side: write the manifest of a freshly trained model, and decide fp32 versus int8.

:func:`describe` builds a :class:`~edgeloop.registry.manifest.Manifest` from a
:class:`~edgeloop.learn.train.TrainedModel`, its exported bytes and the training matrix:
the input schema from the model, the training fingerprint (checked against the one the
model recorded, so a manifest cannot describe other data than the model was fitted on)
and the drift reference sketch (edges at the training data's quantiles).

:func:`choose_quantisation` is the rule the issue sets for int8: take it only where the
measurement shows it smaller or faster *and* of equal quality (within ``tolerance``);
the manifest records the measurement either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from edgeloop.drift.sketch import Sketch, quantile_edges
from edgeloop.registry.manifest import (
    DataFingerprint,
    InputSchema,
    Manifest,
    ManifestError,
    QuantisationMeasurement,
    artifact_id,
    data_hash,
)

if TYPE_CHECKING:  # the training stack is not imported for a type
    from edgeloop.learn.train import TrainedModel


def choose_quantisation(
    *,
    fp32_bytes: int,
    int8_bytes: int,
    fp32_us: float,
    int8_us: float,
    metric: str,
    fp32_quality: float,
    int8_quality: float,
    tolerance: float = 0.0,
) -> QuantisationMeasurement:
    """The measurement, with ``chosen="int8"`` only if it is smaller or faster and as good.

    Quality is "higher is better" (F1, recall, AUC); int8 is as good when
    ``int8_quality >= fp32_quality - tolerance``.
    """
    as_good = int8_quality >= fp32_quality - tolerance
    gains = int8_bytes < fp32_bytes or int8_us < fp32_us
    return QuantisationMeasurement(
        chosen="int8" if as_good and gains else "fp32",
        fp32_bytes=fp32_bytes,
        int8_bytes=int8_bytes,
        fp32_us=fp32_us,
        int8_us=int8_us,
        metric=metric,
        fp32_quality=fp32_quality,
        int8_quality=int8_quality,
    )


def describe(
    model: TrainedModel,
    artifact: bytes,
    features: npt.ArrayLike,
    *,
    version: str,
    preset: str,
    start_ns: int,
    end_ns: int,
    source_nodes: Sequence[str],
    creator: str,
    created_ns: int,
    metrics: Mapping[str, float] | None = None,
    parent: str | None = None,
    quantisation: QuantisationMeasurement | None = None,
    bins: int = 10,
) -> Manifest:
    """The manifest of ``model`` exported as ``artifact`` and trained on ``features``.

    Args:
        model: the fitted model.
        artifact: its ONNX bytes (from :func:`~edgeloop.learn.to_onnx`, or the int8
            variant when ``quantisation.chosen == "int8"``).
        features: the training matrix given to ``fit_model`` (rows with non-finite
            values are dropped here as they were there).
        version, preset, start_ns, end_ns, source_nodes, creator, created_ns, metrics,
            parent, quantisation: manifest fields.
        bins: drift reference bins per feature.

    Raises:
        ManifestError: ``features`` is not the matrix the model was trained on, or a field
            is invalid.
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != len(model.feature_names):
        raise ManifestError(
            f"features: expected shape (n, {len(model.feature_names)}), got {x.shape}"
        )
    used = np.ascontiguousarray(x[np.isfinite(x).all(axis=1)])
    if data_hash(used) != model.info.fingerprint:
        raise ManifestError(
            f"features: fingerprint {data_hash(used)[:12]}… is not the model's training "
            f"data ({model.info.fingerprint[:12]}…)"
        )
    return Manifest(
        version=version,
        artifact=artifact_id(artifact),
        size=len(artifact),
        kind=model.kind,
        input_schema=InputSchema(model.feature_names, preset, model.group),
        training_data=DataFingerprint(
            model.info.fingerprint, start_ns, end_ns, tuple(source_nodes), int(used.shape[0])
        ),
        metrics=dict(metrics or {}),
        parent=parent,
        creator=creator,
        created_ns=created_ns,
        quantisation=quantisation,
        drift_reference=Sketch.build(model.feature_names, quantile_edges(used, bins), used),
    )

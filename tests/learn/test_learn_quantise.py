"""int8 only where it pays: both variants measured through the node's ONNX detector on the
same windows, the rule applied to what was measured, the chosen bytes returned, the
model's metadata kept in the int8 variant."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from edgeloop.detect.onnx_model import OnnxDetector
from edgeloop.learn import fit_model, to_onnx
from edgeloop.learn.quantise import measure_quantisation, quantise_int8
from edgeloop.registry.manifest import QuantisationMeasurement


@functools.cache
def model(kind: str, k: int) -> tuple[bytes, tuple[str, ...], np.ndarray]:
    rng = np.random.default_rng(k)
    mix = rng.normal(size=(k, k)) / np.sqrt(k)  # correlated features, as real ones are
    x = (rng.normal(size=(3000, k)) @ mix).astype(np.float32)
    names = tuple(f"f{i}" for i in range(k))
    fitted = fit_model(x[:2000], names, kind=kind, group="g", quantile=0.99)  # type: ignore[arg-type]
    return to_onnx(fitted), names, x[2000:]


def rule_holds(m: QuantisationMeasurement) -> bool:
    as_good = m.int8_quality >= m.fp32_quality
    gains = m.int8_bytes < m.fp32_bytes or m.int8_us < m.fp32_us
    return m.chosen == ("int8" if as_good and gains else "fp32")


@pytest.mark.parametrize("k", [4, 38])
def test_pca_models_are_quantised_and_the_rule_follows_the_measurement(k: int) -> None:
    fp32, names, val = model("pca_t2q", k)
    m, chosen = measure_quantisation(fp32, names, "g", val, repeats=3)
    assert m.metric == "alert_agreement" and m.fp32_quality == 1.0
    assert m.int8_bytes != m.fp32_bytes  # a real int8 variant was built and measured
    assert rule_holds(m)
    assert (chosen == fp32) == (m.chosen == "fp32")
    det = OnnxDetector(chosen)  # what a node would load: metadata intact
    assert det.feature_names == names and det.meta.group == "g"


def test_int8_variant_keeps_metadata_and_scores_close_to_fp32() -> None:
    fp32, names, val = model("pca_t2q", 38)
    int8 = quantise_int8(fp32)
    assert int8 is not None and int8 != fp32
    a, b = OnnxDetector(fp32), OnnxDetector(int8)
    assert a.meta == b.meta
    from edgeloop.pipeline.types import Features

    n = len(val)
    feats = Features(
        "g", names, np.zeros(n, np.uint32), np.zeros(n, np.int64), np.ones(n, np.int64), val
    )
    diff = np.abs(a.score(feats).score - b.score(feats).score)
    assert float(np.median(diff)) < 0.05


def test_a_graph_without_matrix_products_stays_fp32() -> None:
    fp32, names, val = model("iforest", 6)
    assert quantise_int8(fp32) is None
    m, chosen = measure_quantisation(fp32, names, "g", val, repeats=2)
    assert m.chosen == "fp32" and chosen == fp32 and m.int8_bytes == m.fp32_bytes


def test_with_labels_quality_is_f1_against_them() -> None:
    fp32, names, val = model("pca_t2q", 38)
    labels = np.zeros(len(val), bool)
    shifted = val.copy()
    shifted[:50] += 8.0  # fifty windows far from normal: true anomalies
    labels[:50] = True
    m, _ = measure_quantisation(fp32, names, "g", shifted, labels, repeats=2)
    assert m.metric == "f1" and m.fp32_quality > 0.5
    assert rule_holds(m)

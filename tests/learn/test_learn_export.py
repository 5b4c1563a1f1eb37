"""to_onnx: the graph computes the Python model's score, carries its metadata, is stable."""

from __future__ import annotations

import functools
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeloop.detect.onnx_model import MODEL_SCHEMA, ModelMeta
from edgeloop.learn.export import IR_VERSION, ML_OPSET, OPSET, to_onnx
from edgeloop.learn.train import TrainedModel, fit_model

K = 14
NAMES = tuple(f"f{i:02d}" for i in range(K))


def normal_windows(n: int, seed: int) -> np.ndarray:
    """Correlated 'normal operation' features: 3 latent factors + noise, varied units."""
    structure = np.random.default_rng(2024)
    loadings = structure.normal(size=(3, K))
    offset = structure.uniform(-5, 50, size=K)
    scale = structure.uniform(0.1, 20, size=K)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) @ loadings + 0.3 * rng.normal(size=(n, K))
    return (offset + scale * x).astype(np.float32)


TRAIN = normal_windows(3000, seed=1)
SD = TRAIN.std(axis=0)
_BASE = normal_windows(3000, seed=2)
_BROKEN = _BASE[:500].copy()
_BROKEN[:, :4] = 2 * TRAIN.mean(axis=0)[:4] - _BROKEN[:, :4]
# Normal, mildly to grossly shifted, decorrelated: scores spread over all of [0, 1).
PROBE = np.concatenate(
    [_BASE, _BASE[:500] + SD, _BASE[:500] + 3 * SD, _BROKEN, _BASE[:100] * 10]
).astype(np.float32)

CASES = {
    "pca_t2q": {},
    "iforest": {"n_estimators": 30},
    # Each tree sees 7 of the 14 features: the graph must map tree features back.
    "iforest_subsampled": {"n_estimators": 30, "max_features": 0.5},
}


@functools.cache
def _trained(case: str) -> tuple[TrainedModel, bytes]:
    kind = "pca_t2q" if case == "pca_t2q" else "iforest"
    model = fit_model(TRAIN, NAMES, kind, seed=7, quantile=0.99, group="vibration", **CASES[case])
    return model, to_onnx(model)


@pytest.fixture(params=list(CASES))
def trained(request: pytest.FixtureRequest) -> tuple[TrainedModel, bytes]:
    return _trained(request.param)


def run(blob: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"features": x})
    return np.asarray(out)


def test_onnx_score_equals_the_python_model(trained: tuple[TrainedModel, bytes]) -> None:
    model, blob = trained
    expected = model.score(PROBE)
    got = run(blob, PROBE)
    assert got.dtype == np.float32 and got.shape == (len(PROBE),)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    # The probe must exercise the whole range, else parity would be vacuous.
    assert np.mean(expected == 0) < 0.6 and np.mean(expected > 0.5) > 0.1


@pytest.mark.parametrize("case", ["iforest", "iforest_subsampled"])
def test_iforest_graph_reproduces_sklearn_path_lengths(case: str) -> None:
    # Independent of our own calibration code: recover -score_samples from the score.
    model, blob = _trained(case)
    cal = model.calibration
    score = run(blob, PROBE).astype(np.float64)
    above = score > 0.01  # where the calibration is invertible (not clipped at zero)
    d = score[above] / (1 - score[above])
    raw = cal.zero + d * (cal.at_quantile - cal.zero)
    sklearn_raw = -model.estimator.forest.score_samples(PROBE[above])  # type: ignore[union-attr]
    np.testing.assert_allclose(raw, sklearn_raw, rtol=1e-4)


def test_graph_signature_and_opsets(trained: tuple[TrainedModel, bytes]) -> None:
    _, blob = trained
    proto = onnx.load_from_string(blob)
    onnx.checker.check_model(proto, full_check=True)
    graph = proto.graph
    assert [i.name for i in graph.input] == ["features"]
    assert [o.name for o in graph.output] == ["score"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [0, K] and not dims[0].dim_param.isdigit()
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert len(graph.output[0].type.tensor_type.shape.dim) == 1
    assert {o.domain: o.version for o in proto.opset_import} == {"": OPSET, "ai.onnx.ml": ML_OPSET}
    assert proto.ir_version == IR_VERSION


def test_metadata_props(trained: tuple[TrainedModel, bytes]) -> None:
    model, blob = trained
    props = {p.key: p.value for p in onnx.load_from_string(blob).metadata_props}
    assert json.loads(props["edgeloop.feature_names"]) == list(NAMES)
    assert props["edgeloop.group"] == "vibration"
    assert props["edgeloop.kind"] == model.kind
    assert props["edgeloop.fingerprint"] == model.info.fingerprint
    assert json.loads(props["edgeloop.threshold"]) == 0.5
    assert json.loads(props["edgeloop.schema"]) == MODEL_SCHEMA
    meta = ModelMeta.from_props(props)
    assert meta.quantile == 0.99
    assert meta.training["n_rows"] == len(TRAIN) and meta.training["seed"] == 7
    np.testing.assert_array_equal(meta.feature_mean, model.feature_mean)
    np.testing.assert_array_equal(meta.feature_scale, model.feature_scale)


def test_export_is_a_pure_function_of_the_model(trained: tuple[TrainedModel, bytes]) -> None:
    model, blob = trained
    assert to_onnx(model) == blob  # content-addressable: same model, same hash


def test_extreme_inputs_score_one_not_nan() -> None:
    model = fit_model(TRAIN, NAMES, quantile=0.99)
    huge = np.full((4, K), 1e30, dtype=np.float32)
    huge[1], huge[2], huge[3, :5] = -3e38, 3e38, 1e20  # ±3e38 overflow to inf - inf in Q
    np.testing.assert_array_equal(run(to_onnx(model), huge), [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(model.score(huge), [1.0, 1.0, 1.0, 1.0])

"""OnnxDetector: scores an exported model at the edge, refuses bad artifacts and inputs."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeloop.detect.base import Detector
from edgeloop.detect.onnx_model import OnnxDetector
from edgeloop.errors import ConfigError, ModelError
from edgeloop.learn import fit_model, to_onnx
from edgeloop.learn.train import TrainedModel
from edgeloop.pipeline.types import Features

K = 14
NAMES = tuple(f"f{i:02d}" for i in range(K))
GROUP = "vibration"


def normal_windows(n: int, seed: int) -> np.ndarray:
    """Correlated 'normal operation' features: 3 latent factors + noise, varied units."""
    structure = np.random.default_rng(2024)
    loadings = structure.normal(size=(3, K))
    offset = structure.uniform(-5, 50, size=K)
    scale = structure.uniform(0.1, 20, size=K)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) @ loadings + 0.3 * rng.normal(size=(n, K))
    return (offset + scale * x).astype(np.float32)


def block(values: np.ndarray, names: tuple[str, ...] = NAMES, group: str = GROUP) -> Features:
    n = values.shape[0]
    t0 = np.arange(n, dtype=np.int64) * 1_000_000_000
    return Features(group, names, np.zeros(n, np.uint32), t0, t0 + 999, values)


TRAIN = normal_windows(3000, seed=1)
SD = TRAIN.std(axis=0)
TEST = normal_windows(2000, seed=2)


@functools.cache
def trained() -> tuple[TrainedModel, bytes]:
    model = fit_model(TRAIN, NAMES, seed=0, quantile=0.99, group=GROUP)
    return model, to_onnx(model)


@pytest.fixture
def detector() -> OnnxDetector:
    return OnnxDetector(trained()[1])


def tampered(**props: str) -> bytes:
    """The trained artifact with some ``edgeloop.*`` metadata replaced (or removed: "")."""
    proto = onnx.load_from_string(trained()[1])
    current = {p.key: p.value for p in proto.metadata_props}
    current.update(props)
    helper.set_model_props(proto, {k: v for k, v in current.items() if v})
    return proto.SerializeToString()


def test_is_a_detector_with_the_model_threshold(detector: OnnxDetector) -> None:
    assert isinstance(detector, Detector)
    assert detector.name == "onnx"
    assert detector.threshold == 0.5
    assert detector.feature_names == NAMES
    assert detector.meta.kind == "pca_t2q" and detector.meta.group == GROUP
    assert detector.meta.fingerprint == trained()[0].info.fingerprint
    assert OnnxDetector(trained()[1], threshold=0.8, name="pca").threshold == 0.8


def test_scores_match_the_hub_model_and_separate_normal_from_shifted(
    detector: OnnxDetector,
) -> None:
    shifted = TEST[:500] + 2 * SD
    s = detector.score(block(np.concatenate([TEST, shifted])))
    assert s.score.dtype == np.float32 and s.score.shape == (2500,)
    assert s.detector == "onnx" and s.threshold == 0.5
    np.testing.assert_array_equal(s.confidence, np.ones(2500, np.float32))
    np.testing.assert_allclose(
        s.score, trained()[0].score(np.concatenate([TEST, shifted])), atol=1e-4
    )
    assert np.mean(s.anomalous[:2000]) < 0.03  # calibrated at 1 %
    assert np.mean(s.anomalous[2000:]) > 0.95


def test_top_feature_names_the_most_deviant_feature(detector: OnnxDetector) -> None:
    x = TEST[:50].copy()
    x[:, 5] += 10 * SD[5]
    s = detector.score(block(x))
    assert s.top_feature.dtype == np.int32
    np.testing.assert_array_equal(s.top_feature, np.full(50, 5))
    assert np.all(s.anomalous)


def test_columns_are_matched_by_name(detector: OnnxDetector) -> None:
    x = TEST[:200].copy()
    x[:, 5] += 10 * SD[5]
    order = np.random.default_rng(0).permutation(K)
    shuffled = detector.score(block(x[:, order], tuple(NAMES[i] for i in order)))
    straight = detector.score(block(x))
    np.testing.assert_array_equal(shuffled.score, straight.score)
    # top_feature indexes the caller's names: the column that now holds f05.
    assert np.all(shuffled.top_feature == int(np.flatnonzero(order == 5)[0]))


def test_wrong_names_are_reported_as_missing_and_extra(detector: OnnxDetector) -> None:
    names = (*NAMES[:-1], "rms")
    with pytest.raises(ModelError, match=r"missing \['f13'\], extra \['rms'\]") as err:
        detector.score(block(TEST[:10], names))
    assert "model expects ['f00'" in str(err.value)
    with pytest.raises(ModelError, match=r"missing \['f13'\], extra \[\]"):
        detector.score(block(TEST[:10, :13], NAMES[:13]))


def test_values_whose_width_differs_from_the_names_are_refused(detector: OnnxDetector) -> None:
    with pytest.raises(ModelError, match=r"features.values: shape \(10, 13\)"):
        detector.score(block(TEST[:10, :13], NAMES))


def test_another_window_group_is_refused(detector: OnnxDetector) -> None:
    with pytest.raises(ModelError, match="is for group 'vibration', got 'temperature'"):
        detector.score(block(TEST[:10], group="temperature"))


def test_non_finite_windows_score_one_and_are_counted(detector: OnnxDetector) -> None:
    x = TEST[:20].copy()
    x[3, 2] = np.nan
    x[7, [0, 9]] = np.inf
    s = detector.score(block(x))
    ok = np.ones(20, bool)
    ok[[3, 7]] = False
    assert s.score[3] == s.score[7] == 1.0
    assert s.top_feature[3] == 2 and s.top_feature[7] == 0
    np.testing.assert_array_equal(s.confidence, np.ones(20, np.float32))
    np.testing.assert_array_equal(s.score[ok], detector.score(block(TEST[:20][ok])).score)
    assert detector.rejected == {"non_finite": 2}
    # In the caller's column order, too.
    order = np.arange(K)[::-1]
    r = detector.score(block(x[:, order], tuple(NAMES[i] for i in order)))
    assert r.top_feature[3] == K - 1 - 2 and r.score[3] == 1.0


def test_overflowing_windows_score_one(detector: OnnxDetector) -> None:
    x = np.full((2, K), 3e38, dtype=np.float32)
    x[1] = -3e38
    np.testing.assert_array_equal(detector.score(block(x)).score, [1.0, 1.0])


def test_empty_block_and_learn_is_a_no_op(detector: OnnxDetector) -> None:
    empty = detector.score(block(np.empty((0, K), np.float32)))
    assert empty.score.shape == empty.top_feature.shape == (0,)
    shifted = block(TEST[:100] + 3 * SD)
    before = detector.score(shifted)
    detector.learn(shifted, before)
    np.testing.assert_array_equal(detector.score(shifted).score, before.score)


def test_loads_from_a_path_or_a_string(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(trained()[1])
    for source in (path, str(path)):
        det = OnnxDetector(source)
        assert det.source == str(path)
        assert det.score(block(TEST[:5])).score.shape == (5,)


def test_corrupt_bytes_are_a_model_error() -> None:
    with pytest.raises(ModelError, match=r"<14 bytes>: corrupt or not an ONNX model \(.+\)"):
        OnnxDetector(b"not a model!!!")


def test_truncated_file_is_a_model_error_naming_the_file(tmp_path: Path) -> None:
    blob = trained()[1]
    path = tmp_path / "cut.onnx"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelError, match=r"cut\.onnx: corrupt or not an ONNX model"):
        OnnxDetector(path)


def test_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nope.onnx: cannot read model file \(No such file"):
        OnnxDetector(tmp_path / "nope.onnx")


def test_model_whose_input_width_disagrees_with_its_names() -> None:
    names = json.dumps([*NAMES, "extra"])
    blob = tampered(
        **{
            "edgeloop.feature_names": names,
            "edgeloop.feature_mean": "",
            "edgeloop.feature_scale": "",
        }
    )
    with pytest.raises(ModelError, match=r"input 'features' is tensor\(float\) \[None, 14\]"):
        OnnxDetector(blob)


def test_model_without_feature_names_or_from_the_future() -> None:
    with pytest.raises(ModelError, match=r"edgeloop.feature_names is missing"):
        OnnxDetector(tampered(**{"edgeloop.feature_names": ""}))
    with pytest.raises(ModelError, match="is not JSON"):
        OnnxDetector(tampered(**{"edgeloop.feature_names": "f00,f01"}))
    with pytest.raises(ModelError, match=r"edgeloop.schema is 99; this edgeloop reads 1..1"):
        OnnxDetector(tampered(**{"edgeloop.schema": "99"}))
    with pytest.raises(ModelError, match=r"edgeloop.threshold must be in \[0, 1\], got 2"):
        OnnxDetector(tampered(**{"edgeloop.threshold": "2"}))


def test_threshold_argument_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"threshold: must be in \[0, 1\], got 1.5"):
        OnnxDetector(trained()[1], threshold=1.5)


def test_model_with_another_signature_is_refused() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, K])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, K])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(
        proto, {"edgeloop.schema": "1", "edgeloop.feature_names": json.dumps(NAMES)}
    )
    with pytest.raises(ModelError, match=r"expected one input 'features' and one output 'score'"):
        OnnxDetector(proto.SerializeToString())


def test_edge_import_loads_neither_sklearn_nor_onnx() -> None:
    code = (
        "import sys\n"
        "import edgeloop.detect.onnx_model\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'sklearn', 'skl2onnx', 'onnx', 'scipy'})\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

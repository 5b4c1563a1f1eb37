"""Export a :class:`~edgeloop.learn.train.TrainedModel` to a self-contained ONNX graph.

The graph maps ``features`` float32 ``[None, k]`` straight to the calibrated ``score``
float32 ``[None]`` in [0, 1], so the edge needs nothing but onnxruntime. The
``edgeloop.*`` ``metadata_props`` follow :class:`edgeloop.detect.onnx_model.ModelMeta`.

* ``pca_t2q``: skl2onnx converts the ``StandardScaler`` and the ``PCA``; ``onnx.helper``
  appends T², Q, their normalised maximum and the calibration.
* ``iforest``: the forest is written as a single ``TreeEnsembleRegressor`` (see
  :func:`_iforest_graph` for why not skl2onnx's converter), then the calibration.

Opsets are pinned (default domain 17, ``ai.onnx.ml`` 3, IR version 8) rather than the
newest the hub knows, so that gateways on older onnxruntime releases load the artifact.
The bytes are a pure function of the trained model: exporting twice gives the same
artifact (and hash)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

from edgeloop import __version__
from edgeloop.detect.onnx_model import INPUT_NAME, MODEL_SCHEMA, OUTPUT_NAME, ModelMeta
from edgeloop.errors import ModelError
from edgeloop.learn.train import Calibration, IForestModel, PcaT2Q, TrainedModel

OPSET = 17
ML_OPSET = 3
IR_VERSION = 8
_OPSETS = {"": OPSET, "ai.onnx.ml": ML_OPSET}
# Names of the nodes and tensors this module appends; skl2onnx never uses the prefix.
_P = "edgeloop_"


def to_onnx(model: TrainedModel) -> bytes:
    """Serialise ``model`` as ONNX bytes whose single output is the calibrated score.

    Args:
        model: a model from :func:`~edgeloop.learn.train.fit_model`.

    Returns:
        The serialised ``ModelProto`` (validated by ``onnx.checker`` with shape
        inference).

    Raises:
        ModelError: the model kind cannot be exported.
    """
    k = len(model.feature_names)
    est = model.estimator
    if isinstance(est, PcaT2Q):
        graph_model, raw = _pca_t2q_graph(est, k)
    elif isinstance(est, IForestModel):
        graph_model, raw = _iforest_graph(est, k)
    else:  # pragma: no cover - TrainedModel only holds the kinds above
        raise ModelError(f"kind: cannot export {model.kind!r}")
    graph = graph_model.graph
    _extend(graph, *_calibration(raw, model.calibration))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None]))
    graph.name = f"edgeloop_{model.kind}"

    out = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in _OPSETS.items()],
        ir_version=IR_VERSION,
        producer_name="edgeloop",
        producer_version=__version__,
        doc_string=f"edgeloop {model.kind} anomaly score for group {model.group!r}",
    )
    helper.set_model_props(out, _meta(model).to_props())
    onnx.checker.check_model(out, full_check=True)
    data: bytes = out.SerializeToString()
    return data


def _meta(model: TrainedModel) -> ModelMeta:
    info = model.info
    return ModelMeta(
        feature_names=model.feature_names,
        kind=model.kind,
        group=model.group,
        threshold=model.threshold,
        quantile=model.calibration.quantile,
        fingerprint=info.fingerprint,
        feature_mean=tuple(float(v) for v in model.feature_mean),
        feature_scale=tuple(float(v) for v in model.feature_scale),
        training={
            "n_rows": info.n_rows,
            "seed": info.seed,
            "rejected": dict(info.rejected),
            "params": dict(info.params),
            "calibration": {
                "zero": model.calibration.zero,
                "at_quantile": model.calibration.at_quantile,
            },
        },
        schema=MODEL_SCHEMA,
    )


def _pca_t2q_graph(est: PcaT2Q, k: int) -> tuple[onnx.ModelProto, str]:
    """Scaler and PCA from skl2onnx, then T², Q and their normalised maximum."""
    a = int(est.pca.n_components_)
    scaler = _convert(est.scaler, INPUT_NAME, k, "z", k)
    pca = compose.add_prefix(_convert(est.pca, "z", k, "proj", a), prefix="pca_")
    # The scaler's output "z" feeds the PCA and stays addressable for the residual.
    merged = compose.merge_models(scaler, pca, io_map=[("z", "pca_z")])
    merged.graph.doc_string = ""  # merge_models writes random ids here; keep bytes stable

    inv_lam = (1.0 / est.eigenvalues).astype(np.float32)
    components = np.asarray(est.pca.components_, dtype=np.float32)  # (a, k)
    centre = np.asarray(est.pca.mean_, dtype=np.float32)  # (k,)
    consts: dict[str, np.ndarray] = {
        "inv_lam": inv_lam,
        "components": components,
        "centre": centre,
        "axis1": np.array([1], dtype=np.int64),
        "inv_t2_ref": np.array(1.0 / est.t2_ref, dtype=np.float32),
        "inv_q_ref": np.array(1.0 / est.q_ref, dtype=np.float32),
    }
    proj = "pca_proj"
    nodes = [
        # T² = sum_j proj_j² / lambda_j
        _node("Mul", [proj, proj], "proj2"),
        _node("Mul", [_P + "proj2", _P + "inv_lam"], "proj2_w"),
        _node("ReduceSum", [_P + "proj2_w", _P + "axis1"], "t2", keepdims=0),
        # Q = |z - (proj @ components + centre)|²
        _node("MatMul", [proj, _P + "components"], "recon0"),
        _node("Add", [_P + "recon0", _P + "centre"], "recon"),
        _node("Sub", ["z", _P + "recon"], "resid"),
        _node("Mul", [_P + "resid", _P + "resid"], "resid2"),
        _node("ReduceSum", [_P + "resid2", _P + "axis1"], "q", keepdims=0),
        # raw = max(T² / t2_ref, Q / q_ref)
        _node("Mul", [_P + "t2", _P + "inv_t2_ref"], "t2n"),
        _node("Mul", [_P + "q", _P + "inv_q_ref"], "qn"),
        _node("Max", [_P + "t2n", _P + "qn"], "raw"),
    ]
    _extend(merged.graph, consts, nodes)
    return merged, _P + "raw"


def _iforest_graph(est: IForestModel, k: int) -> tuple[onnx.ModelProto, str]:
    """The forest as one ``TreeEnsembleRegressor`` summing per-leaf path lengths.

    skl2onnx's converter emits about 33 nodes per tree (100 trees: ~3300 nodes, 17 s
    to convert, ~25k windows/s at the edge). An isolation forest's score is a sum over
    trees of a per-leaf constant, so one tree-ensemble node computes it exactly:
    ``-score_samples = 2 ** -sum_t w_t(leaf)`` with
    ``w = (depth(leaf) + c(n_samples(leaf))) / (n_trees * c(max_samples))`` and ``c`` the
    average path length of an unsuccessful BST search (Liu et al.; sklearn's formula).
    """
    forest = est.forest
    trees = forest.estimators_
    denominator = len(trees) * _avg_path_length(np.array([forest.max_samples_]))[0]
    attrs: dict[str, Any] = {}
    cols: dict[str, list[np.ndarray]] = {
        "nodes_treeids": [],
        "nodes_nodeids": [],
        "nodes_featureids": [],
        "nodes_values": [],
        "nodes_truenodeids": [],
        "nodes_falsenodeids": [],
        "target_treeids": [],
        "target_nodeids": [],
        "target_weights": [],
    }
    modes: list[str] = []
    for t, (tree, features) in enumerate(zip(trees, forest.estimators_features_, strict=True)):
        tr = tree.tree_
        left = np.asarray(tr.children_left, dtype=np.int64)
        right = np.asarray(tr.children_right, dtype=np.int64)
        n = left.shape[0]
        leaf = left == -1
        # Trees are trained on X[:, features] only when features are subsampled.
        feats = np.asarray(tr.feature, dtype=np.int64)
        if len(features) != k:
            feats = np.where(leaf, 0, np.asarray(features, dtype=np.int64)[np.maximum(feats, 0)])
        ids = np.arange(n, dtype=np.int64)
        cols["nodes_treeids"].append(np.full(n, t, dtype=np.int64))
        cols["nodes_nodeids"].append(ids)
        cols["nodes_featureids"].append(np.where(leaf, 0, feats))
        cols["nodes_values"].append(np.where(leaf, 0.0, _floor_f32(tr.threshold)))
        cols["nodes_truenodeids"].append(np.where(leaf, 0, left))
        cols["nodes_falsenodeids"].append(np.where(leaf, 0, right))
        modes.extend(np.where(leaf, "LEAF", "BRANCH_LEQ").tolist())
        depth = _node_depths(left, right)
        weight = (depth[leaf] + _avg_path_length(tr.n_node_samples[leaf])) / denominator
        cols["target_treeids"].append(np.full(int(leaf.sum()), t, dtype=np.int64))
        cols["target_nodeids"].append(ids[leaf])
        cols["target_weights"].append(weight)
    for name, parts in cols.items():
        attrs[name] = np.concatenate(parts).tolist()
    attrs["nodes_modes"] = modes
    attrs["target_ids"] = [0] * len(attrs["target_nodeids"])
    ensemble = helper.make_node(
        "TreeEnsembleRegressor",
        [INPUT_NAME],
        [_P + "path_sum"],
        name=_P + "path_sum",
        domain="ai.onnx.ml",
        n_targets=1,
        aggregate_function="SUM",
        post_transform="NONE",
        **attrs,
    )
    consts: dict[str, np.ndarray] = {
        "neg_ln2": np.array(-np.log(2.0), dtype=np.float32),
        "flat": np.array([-1], dtype=np.int64),
    }
    nodes = [
        ensemble,
        _node("Mul", [_P + "path_sum", _P + "neg_ln2"], "log_raw"),
        _node("Exp", [_P + "log_raw"], "raw2d"),
        _node("Reshape", [_P + "raw2d", _P + "flat"], "raw"),
    ]
    graph = helper.make_graph(
        [],
        "iforest",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, k])],
        [],
    )
    _extend(graph, consts, nodes)
    return helper.make_model(graph), _P + "raw"


def _floor_f32(threshold: np.ndarray) -> np.ndarray:
    """Largest float32 <= each float64 threshold.

    sklearn compares float32 inputs against float64 thresholds; with thresholds rounded
    down, ``x <= t32`` holds exactly when ``x <= t64`` for every float32 ``x``.
    """
    t64 = np.asarray(threshold, dtype=np.float64)
    t32 = t64.astype(np.float32)
    over = t32.astype(np.float64) > t64
    t32[over] = np.nextafter(t32[over], np.float32(-np.inf))
    return t32


def _node_depths(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Depth of every node (root 0); sklearn numbers a parent before its children."""
    depth = np.zeros(left.shape[0], dtype=np.float64)
    for i in range(left.shape[0]):
        if left[i] != -1:
            depth[left[i]] = depth[right[i]] = depth[i] + 1.0
    return depth


def _avg_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): 0 for n <= 1, 1 for n == 2, else 2 (ln(n - 1) + gamma) - 2 (n - 1) / n."""
    n = np.asarray(n, dtype=np.float64)
    big = np.maximum(n, 3.0)
    c = 2.0 * (np.log(big - 1.0) + np.euler_gamma) - 2.0 * (big - 1.0) / big
    return np.where(n <= 1.0, 0.0, np.where(n == 2.0, 1.0, c))


def _calibration(raw: str, cal: Calibration) -> tuple[dict[str, np.ndarray], list[onnx.NodeProto]]:
    """``score = 1 - 1 / (1 + max(raw - zero, 0) / (at_quantile - zero))``, nan → 1.

    The same value as ``d / (1 + d)``, written so that an overflowing ``d = inf`` gives
    1 instead of ``inf / inf = nan``. (A nan *input* also scores 1 here; the edge
    detector never feeds one: it sets such windows aside.)
    """
    consts: dict[str, np.ndarray] = {
        "cal_zero": np.array(cal.zero, dtype=np.float32),
        "cal_inv_span": np.array(1.0 / (cal.at_quantile - cal.zero), dtype=np.float32),
        "one": np.array(1.0, dtype=np.float32),
    }
    nodes = [
        _node("Sub", [raw, _P + "cal_zero"], "excess"),
        _node("Relu", [_P + "excess"], "excess_pos"),
        _node("Mul", [_P + "excess_pos", _P + "cal_inv_span"], "d"),
        _node("Add", [_P + "d", _P + "one"], "d1"),
        _node("Reciprocal", [_P + "d1"], "inv_d1"),
        _node("Sub", [_P + "one", _P + "inv_d1"], "score0"),
        # Finite inputs near the float32 limit can still make inf - inf (nan) inside Q:
        # such a window is as anomalous as it gets.
        _node("IsNaN", [_P + "score0"], "overflow"),
        helper.make_node(
            "Where", [_P + "overflow", _P + "one", _P + "score0"], [OUTPUT_NAME], name=_P + "score"
        ),
    ]
    return consts, nodes


def _convert(
    estimator: object, in_name: str, k_in: int, out_name: str, k_out: int
) -> onnx.ModelProto:
    m: onnx.ModelProto = convert_sklearn(
        estimator,
        initial_types=[(in_name, FloatTensorType([None, k_in]))],
        final_types=[(out_name, FloatTensorType([None, k_out]))],
        target_opset=_OPSETS,
    )
    # skl2onnx declares the lowest opsets its nodes need; pin both parts to ours so they
    # can be merged (the checker in to_onnx validates every node against these opsets).
    del m.opset_import[:]
    m.opset_import.extend(helper.make_opsetid(d, v) for d, v in _OPSETS.items())
    return m


def _node(op: str, inputs: list[str], out: str, keepdims: int | None = None) -> onnx.NodeProto:
    node = helper.make_node(op, inputs, [_P + out], name=_P + out)
    if keepdims is not None:
        node.attribute.append(helper.make_attribute("keepdims", keepdims))
    return node


def _extend(
    graph: onnx.GraphProto, consts: dict[str, np.ndarray], nodes: list[onnx.NodeProto]
) -> None:
    """Add ``consts`` as initializers (named with the prefix) and append ``nodes``."""
    for name, value in consts.items():
        graph.initializer.append(numpy_helper.from_array(value, name=_P + name))
    graph.node.extend(nodes)

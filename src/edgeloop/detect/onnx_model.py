"""Score feature windows with a multivariate ONNX model at the edge.

The model is trained and exported in the hub (``edgeloop.learn``); this module is the
edge half and imports only numpy and onnxruntime: scikit-learn, skl2onnx and onnx
never load on a gateway (they cost memory the gateway does not have).

The artifact contract, shared with ``edgeloop.learn.export``:

* one input ``features``: float32 ``[None, k]``; one output ``score``: float32 ``[None]``,
  already calibrated to [0, 1] (see ``edgeloop.learn.train``);
* ``metadata_props`` described by :class:`ModelMeta` (keys ``edgeloop.*``): the schema
  version, the ``k`` feature names in column order (JSON), window group, threshold,
  model kind, training fingerprint, and the per-feature training mean and scale.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from edgeloop.errors import ConfigError, ModelError, RejectReason
from edgeloop.pipeline.types import Features, Scores

MODEL_SCHEMA = 1
"""Version of the artifact contract above; a detector refuses newer versions."""

INPUT_NAME = "features"
OUTPUT_NAME = "score"
_PREFIX = "edgeloop."


@dataclass(frozen=True, slots=True)
class ModelMeta:
    """The ``edgeloop.*`` metadata of a model artifact.

    Attributes:
        feature_names: input column names, in order.
        kind: model kind (e.g. ``"pca_t2q"``).
        group: window group the model is for; ``""`` accepts any group.
        threshold: score at or above which a window is anomalous.
        quantile: normal-data quantile the threshold corresponds to.
        fingerprint: sha256 of the training matrix.
        feature_mean, feature_scale: per-feature training mean and standard deviation.
        training: other provenance (rows, seed, parameters), free-form JSON.
        schema: artifact contract version.
    """

    feature_names: tuple[str, ...]
    kind: str = ""
    group: str = ""
    threshold: float = 0.5
    quantile: float = 0.0
    fingerprint: str = ""
    feature_mean: tuple[float, ...] = ()
    feature_scale: tuple[float, ...] = ()
    training: Mapping[str, Any] = field(default_factory=dict)
    schema: int = MODEL_SCHEMA

    def to_props(self) -> dict[str, str]:
        """The metadata as ONNX ``metadata_props`` (string → string)."""
        values: dict[str, Any] = {
            "schema": self.schema,
            "feature_names": list(self.feature_names),
            "kind": self.kind,
            "group": self.group,
            "threshold": self.threshold,
            "quantile": self.quantile,
            "fingerprint": self.fingerprint,
            "feature_mean": list(self.feature_mean),
            "feature_scale": list(self.feature_scale),
            "training": dict(self.training),
        }
        # Plain strings stay plain; everything else is JSON (floats round-trip exactly).
        return {
            _PREFIX + k: v if isinstance(v, str) else json.dumps(v, sort_keys=True)
            for k, v in values.items()
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> ModelMeta:
        """Parse and validate ``metadata_props``; raise :class:`ModelError` naming the key."""

        def get(key: str, default: Any = None, *, raw: bool = False) -> Any:
            text = props.get(_PREFIX + key)
            if text is None:
                if default is None:
                    raise ModelError(f"{source}: metadata {_PREFIX}{key} is missing")
                return default
            if raw:
                return text
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ModelError(f"{source}: metadata {_PREFIX}{key} is not JSON ({exc})") from exc

        schema = get("schema")
        if not isinstance(schema, int) or not 1 <= schema <= MODEL_SCHEMA:
            raise ModelError(
                f"{source}: metadata {_PREFIX}schema is {schema!r}; this edgeloop reads "
                f"1..{MODEL_SCHEMA}"
            )
        names = get("feature_names")
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and n for n in names)
            or len(set(names)) != len(names)
        ):
            raise ModelError(
                f"{source}: metadata {_PREFIX}feature_names must be a JSON list of distinct "
                f"non-empty names, got {names!r}"
            )
        k = len(names)
        mean = _floats(get("feature_mean", [0.0] * k), k, f"{source}: {_PREFIX}feature_mean")
        scale = _floats(get("feature_scale", [1.0] * k), k, f"{source}: {_PREFIX}feature_scale")
        if min(scale) <= 0.0:
            raise ModelError(f"{source}: metadata {_PREFIX}feature_scale must be positive")
        threshold, quantile = get("threshold", 0.5), get("quantile", 0.0)
        for key, v in (("threshold", threshold), ("quantile", quantile)):
            if isinstance(v, bool) or not isinstance(v, float | int) or not 0.0 <= v <= 1.0:
                raise ModelError(f"{source}: metadata {_PREFIX}{key} must be in [0, 1], got {v!r}")
        training = get("training", {})
        if not isinstance(training, dict):
            raise ModelError(f"{source}: metadata {_PREFIX}training must be a JSON object")
        return cls(
            feature_names=tuple(names),
            kind=get("kind", "", raw=True),
            group=get("group", "", raw=True),
            threshold=float(threshold),
            quantile=float(quantile),
            fingerprint=get("fingerprint", "", raw=True),
            feature_mean=mean,
            feature_scale=scale,
            training=training,
            schema=schema,
        )


class OnnxDetector:
    """A fixed multivariate model: ``score`` runs the ONNX graph, ``learn`` does nothing.

    The model was fitted on normal windows in the hub and does not adapt at the edge:
    a new version arrives as a new artifact (so behaviour is reproducible and the hub
    knows exactly what each node runs). The session uses one thread (a gateway has one
    core for everything).

    Scoring is stateless, hence trivially causal. For anomalous windows (score at or
    above the threshold) ``top_feature`` is the feature with the largest standardised
    deviation ``|x - mean| / scale`` from the training data; normal windows get -1.
    A window with a non-finite feature never reaches the model: it scores 1 with that
    feature as ``top_feature`` (as in :class:`~edgeloop.detect.robust.RobustDetector`, a
    broken feature is as deviant as it gets) and is counted in ``rejected``. A finite
    window that overflows the model's float32 arithmetic (values far outside anything
    seen in training) also scores 1.

    Args:
        model: the ONNX bytes or a path to the file.
        threshold: score at or above which a window is anomalous; default: the model's.
        name: detector name reported in :class:`Scores`.

    Raises:
        ModelError: the file is missing, the bytes are not a loadable ONNX model, the
            input/output signature is not ``features [None, k]`` → ``score [None]``, or
            the ``edgeloop.*`` metadata is missing or inconsistent.
        ConfigError: ``threshold`` is outside [0, 1].
    """

    def __init__(
        self, model: bytes | str | Path, threshold: float | None = None, name: str = "onnx"
    ) -> None:
        source, data = _read(model)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # errors only: warnings would go to stderr per session
        try:
            session = ort.InferenceSession(
                data, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's error types share no base but Exception
            cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{source}: corrupt or not an ONNX model ({cause})") from exc
        self.meta = ModelMeta.from_props(session.get_modelmeta().custom_metadata_map, source)
        _check_signature(session, len(self.meta.feature_names), source)
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold: must be in [0, 1], got {threshold}")
        self.name = name
        self.threshold = self.meta.threshold if threshold is None else float(threshold)
        self.source = source
        self.rejected: dict[str, int] = {}
        self._session = session
        self._mean = np.asarray(self.meta.feature_mean, dtype=np.float32)
        self._inv_scale = (1.0 / np.asarray(self.meta.feature_scale, dtype=np.float64)).astype(
            np.float32
        )
        # Column permutation for the last seen name order (None: same order as the model).
        self._cols_for: tuple[tuple[str, ...], npt.NDArray[np.intp] | None] = (
            self.meta.feature_names,
            None,
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's input feature names, in column order."""
        return self.meta.feature_names

    def score(self, features: Features) -> Scores:
        """Score every window of ``features``.

        Columns are matched by name, so a block whose names are the model's in another
        order is reordered; ``top_feature`` indexes ``features.names``.

        Raises:
            ModelError: names missing from or extra to the model's (both lists named),
                a different window group, or values whose width is not ``len(names)``.
        """
        if self.meta.group and features.group != self.meta.group:
            raise ModelError(
                f"features.group: model {self.source} is for group {self.meta.group!r}, "
                f"got {features.group!r}"
            )
        cols = self._columns(tuple(features.names))
        x = np.asarray(features.values, dtype=np.float32)
        n = len(features)
        if x.ndim != 2 or x.shape != (n, len(features.names)):
            raise ModelError(
                f"features.values: shape {x.shape}, expected ({n}, {len(features.names)}) "
                f"for {n} windows x {len(features.names)} names"
            )
        if cols is not None:
            x = x[:, cols]
        if cols is None and n and np.isfinite(x).all():  # the common case, few numpy calls
            out = self._run(np.ascontiguousarray(x))
            score = np.clip(out, 0.0, 1.0)
            score[np.isnan(out)] = 1.0
            top = np.full(n, -1, dtype=np.int32)
            hot = np.flatnonzero(score >= self.threshold)
            if hot.size:
                with np.errstate(over="ignore", invalid="ignore"):  # inf still ranks
                    dev = np.abs((x[hot] - self._mean) * self._inv_scale)
                top[hot] = np.argmax(dev, axis=1)
            return Scores(score, self.threshold, np.ones(n, dtype=np.float32), top, self.name)
        score = np.ones(n, dtype=np.float32)
        finite_cells = np.isfinite(x)
        finite = finite_cells.all(axis=1)
        n_ok = int(np.count_nonzero(finite))
        # Rows with a non-finite feature keep score 1 and name their first such feature.
        top = np.argmin(finite_cells, axis=1).astype(np.int32)
        if cols is not None:
            top = cols[top].astype(np.int32)
        if n_ok:
            ok = x if n_ok == n else x[finite]
            out = self._run(np.ascontiguousarray(ok))
            score[finite] = np.where(np.isnan(out), np.float32(1.0), np.clip(out, 0.0, 1.0))
            # Explaining a window (its most deviant feature) is only needed where it is
            # anomalous; skip the work for the normal majority.
            ok_rows = np.flatnonzero(finite)
            hot = np.flatnonzero(score[ok_rows] >= self.threshold)
            top[ok_rows] = -1
            if hot.size:
                with np.errstate(over="ignore", invalid="ignore"):  # inf still ranks
                    dev = np.abs((ok[hot] - self._mean) * self._inv_scale)
                best = np.argmax(dev, axis=1)
                top[ok_rows[hot]] = best if cols is None else cols[best]
        if n_ok < n:
            key = RejectReason.NON_FINITE.value
            self.rejected[key] = self.rejected.get(key, 0) + (n - n_ok)
        return Scores(
            score=score,
            threshold=self.threshold,
            confidence=np.ones(n, dtype=np.float32),
            top_feature=top,
            detector=self.name,
        )

    def learn(self, features: Features, scores: Scores) -> None:
        """Do nothing: the model is fixed at the edge and replaced as a whole artifact."""

    def _run(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        (out,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: x})
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def _columns(self, names: tuple[str, ...]) -> npt.NDArray[np.intp] | None:
        cached, cols = self._cols_for
        if names == cached:
            return cols
        model = self.meta.feature_names
        if set(names) != set(model) or len(names) != len(model):
            missing = [n for n in model if n not in names]
            extra = [n for n in names if n not in model]
            raise ModelError(
                f"features.names: do not match model {self.source}: missing {missing}, "
                f"extra {extra} (model expects {list(model)}, got {list(names)})"
            )
        index = {n: i for i, n in enumerate(names)}
        cols = np.array([index[n] for n in model], dtype=np.intp)
        self._cols_for = (names, cols)
        return cols

    def __repr__(self) -> str:
        return (
            f"OnnxDetector(name={self.name!r}, kind={self.meta.kind!r}, "
            f"group={self.meta.group!r}, k={len(self.meta.feature_names)}, "
            f"threshold={self.threshold})"
        )


def _read(model: bytes | bytearray | str | Path) -> tuple[str, bytes]:
    if isinstance(model, bytes | bytearray | memoryview):
        return f"<{len(model)} bytes>", bytes(model)
    path = Path(model)
    try:
        return str(path), path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file ({exc.strerror or exc})") from exc


def _check_signature(session: ort.InferenceSession, k: int, source: str) -> None:
    ins, outs = session.get_inputs(), session.get_outputs()
    if [i.name for i in ins] != [INPUT_NAME] or [o.name for o in outs] != [OUTPUT_NAME]:
        raise ModelError(
            f"{source}: expected one input {INPUT_NAME!r} and one output {OUTPUT_NAME!r}, "
            f"got inputs {[i.name for i in ins]} and outputs {[o.name for o in outs]}"
        )
    shape = list(ins[0].shape)
    if ins[0].type != "tensor(float)" or len(shape) != 2 or shape[1] != k:
        raise ModelError(
            f"{source}: input {INPUT_NAME!r} is {ins[0].type} {shape}, expected "
            f"tensor(float) [None, {k}] for the {k} feature names in its metadata"
        )
    if outs[0].type != "tensor(float)" or len(outs[0].shape) != 1:
        raise ModelError(
            f"{source}: output {OUTPUT_NAME!r} is {outs[0].type} {list(outs[0].shape)}, "
            "expected tensor(float) [None]"
        )


def _floats(value: Any, k: int, what: str) -> tuple[float, ...]:
    if (
        not isinstance(value, list)
        or len(value) != k
        or not all(isinstance(v, float | int) and np.isfinite(v) for v in value)
    ):
        raise ModelError(f"{what}: expected {k} finite numbers")
    return tuple(float(v) for v in value)

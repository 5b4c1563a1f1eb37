"""Model manifests: what a model version is, in canonical bytes that can be signed.

An artifact (the ONNX file) is identified by its content: ``sha256:<hex>`` of its bytes
(:func:`artifact_id`). A :class:`Manifest` says what the artifact is for and where it came
from: its version name, input schema (feature names, pipeline preset, window group), the
fingerprint of its training data (hash of the data set, its time range, source nodes),
validation metrics, parent version, creator and creation time, an optional quantisation
measurement, and the training data's drift reference sketch (:mod:`edgeloop.drift`).

:meth:`Manifest.canonical_bytes` is deterministic JSON (sorted keys, no spaces, UTF-8,
shortest round-trip floats, no NaN): the same manifest gives the same bytes on every
machine, and those bytes are what the hub signs (:mod:`edgeloop.security.signing`).
Aliases (``champion``, ``challenger``) are registry state, not part of a manifest.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edgeloop.drift.sketch import Sketch, SketchError
from edgeloop.errors import ModelError

MANIFEST_SCHEMA = "edgeloop.manifest/1"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_ARTIFACT = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ModelError):
    """A manifest is invalid or its bytes cannot be read; the message names the field."""


def artifact_id(data: bytes) -> str:
    """Content address of artifact bytes: ``"sha256:" + hex digest``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def data_hash(features: npt.ArrayLike) -> str:
    """sha256 (hex) of a matrix as C-ordered float32 bytes.

    The same definition as the training fingerprint in ``edgeloop.learn.train`` (which
    this module does not import: it pulls in scikit-learn).
    """
    x = np.ascontiguousarray(features, dtype=np.float32)
    return hashlib.sha256(x.tobytes()).hexdigest()


def check_name(name: object, what: str) -> str:
    """``name`` if it is a valid version or alias name, else :class:`ManifestError`."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ManifestError(
            f"{what}: {name!r} is not a valid name (1-128 of letters, digits, '.', '_', "
            "'+', '-', starting with a letter or digit)"
        )
    return name


@dataclass(frozen=True, slots=True)
class InputSchema:
    """What the model reads.

    Attributes:
        feature_names: input columns, in order.
        preset: the pipeline preset (or spec name) that computes them.
        group: the window group the model scores (``""``: any).
    """

    feature_names: tuple[str, ...]
    preset: str
    group: str = ""

    def __post_init__(self) -> None:
        names = tuple(self.feature_names)
        if (
            not names
            or len(set(names)) != len(names)
            or not all(isinstance(n, str) and n for n in names)
        ):
            raise ManifestError(
                f"input_schema.feature_names: expected distinct non-empty names, got {list(names)!r}"
            )
        object.__setattr__(self, "feature_names", names)
        if not isinstance(self.preset, str) or not self.preset:
            raise ManifestError("input_schema.preset: must be a non-empty string")


@dataclass(frozen=True, slots=True)
class DataFingerprint:
    """Identity of a training data set.

    Attributes:
        sha256: hash of the training matrix (:func:`data_hash`).
        start_ns, end_ns: time range of the windows it was built from.
        source_nodes: the nodes the windows came from (sorted, distinct).
        n_rows: rows in the matrix.
    """

    sha256: str
    start_ns: int
    end_ns: int
    source_nodes: tuple[str, ...]
    n_rows: int

    def __post_init__(self) -> None:
        if not isinstance(self.sha256, str) or not _HEX64.match(self.sha256):
            raise ManifestError(
                f"training_data.sha256: expected 64 lowercase hex digits, got {self.sha256!r}"
            )
        for name in ("start_ns", "end_ns", "n_rows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ManifestError(f"training_data.{name}: expected an int >= 0, got {v!r}")
        if self.end_ns < self.start_ns:
            raise ManifestError(
                f"training_data: end_ns {self.end_ns} is before start_ns {self.start_ns}"
            )
        nodes = tuple(self.source_nodes)
        if not all(isinstance(n, str) and n for n in nodes):
            raise ManifestError(f"training_data.source_nodes: expected names, got {nodes!r}")
        object.__setattr__(self, "source_nodes", tuple(sorted(set(nodes))))

    @classmethod
    def of(
        cls, features: npt.ArrayLike, start_ns: int, end_ns: int, source_nodes: Sequence[str]
    ) -> DataFingerprint:
        """The fingerprint of a training matrix ``(n, k)``."""
        x = np.asarray(features, dtype=np.float32)
        return cls(data_hash(x), start_ns, end_ns, tuple(source_nodes), int(x.shape[0]))


@dataclass(frozen=True, slots=True)
class QuantisationMeasurement:
    """Why an artifact is (or is not) int8: both variants measured on the same windows.

    Attributes:
        chosen: ``"fp32"`` or ``"int8"``.
        fp32_bytes, int8_bytes: artifact sizes.
        fp32_us, int8_us: inference time per window (microseconds, median).
        metric: the quality measure compared (e.g. ``"f1"`` or ``"auc"``).
        fp32_quality, int8_quality: its value for each variant.
    """

    chosen: Literal["fp32", "int8"]
    fp32_bytes: int
    int8_bytes: int
    fp32_us: float
    int8_us: float
    metric: str
    fp32_quality: float
    int8_quality: float

    def __post_init__(self) -> None:
        if self.chosen not in ("fp32", "int8"):
            raise ManifestError(
                f"quantisation.chosen: expected 'fp32' or 'int8', got {self.chosen!r}"
            )
        for name in ("fp32_us", "int8_us", "fp32_quality", "int8_quality"):
            object.__setattr__(self, name, _finite(getattr(self, name), f"quantisation.{name}"))


@dataclass(frozen=True, slots=True)
class Manifest:
    """Everything the hub states about one model version (see the module docstring).

    Attributes:
        version: the version name, unique in a registry.
        artifact: content address of the ONNX bytes (:func:`artifact_id`).
        size: artifact length in bytes.
        kind: model kind (``"pca_t2q"``, ``"iforest"``, ...).
        input_schema: what the model reads.
        training_data: what it was trained on.
        metrics: validation metrics (name → finite number).
        parent: the version it was retrained from, if any.
        creator: who or what made it (a user, ``"retrain:drift"``, ...).
        created_ns: creation time, ns since the epoch.
        quantisation: the fp32/int8 measurement, if one was made.
        drift_reference: sketch of the training features (edges from their quantiles).
        schema: manifest format version.
    """

    version: str
    artifact: str
    size: int
    kind: str
    input_schema: InputSchema
    training_data: DataFingerprint
    metrics: Mapping[str, float] = field(default_factory=dict)
    parent: str | None = None
    creator: str = ""
    created_ns: int = 0
    quantisation: QuantisationMeasurement | None = None
    drift_reference: Sketch | None = None
    schema: str = MANIFEST_SCHEMA

    def __post_init__(self) -> None:
        check_name(self.version, "version")
        if self.parent is not None:
            check_name(self.parent, "parent")
            if self.parent == self.version:
                raise ManifestError(f"parent: version {self.version!r} cannot be its own parent")
        if not isinstance(self.artifact, str) or not _ARTIFACT.match(self.artifact):
            raise ManifestError(
                f"artifact: expected 'sha256:' and 64 lowercase hex digits, got {self.artifact!r}"
            )
        for name in ("size", "created_ns"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ManifestError(f"{name}: expected an int >= 0, got {v!r}")
        if not isinstance(self.kind, str) or not self.kind:
            raise ManifestError("kind: must be a non-empty string")
        if not isinstance(self.creator, str):
            raise ManifestError(f"creator: expected a string, got {self.creator!r}")
        metrics = {}
        for key in sorted(self.metrics):
            if not isinstance(key, str) or not key:
                raise ManifestError(f"metrics: keys must be non-empty strings, got {key!r}")
            metrics[key] = _finite(self.metrics[key], f"metrics.{key}")
        object.__setattr__(self, "metrics", MappingProxyType(metrics))
        ref = self.drift_reference
        if ref is not None and ref.names != self.input_schema.feature_names:
            raise ManifestError(
                f"drift_reference.names: {list(ref.names)} differ from "
                f"input_schema.feature_names {list(self.input_schema.feature_names)}"
            )
        if self.schema != MANIFEST_SCHEMA:
            raise ManifestError(
                f"schema: {self.schema!r} is not understood; this edgeloop reads {MANIFEST_SCHEMA!r}"
            )

    # -- plain values ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; :meth:`from_dict` inverts it."""
        q = self.quantisation
        return {
            "schema": self.schema,
            "version": self.version,
            "artifact": self.artifact,
            "size": self.size,
            "kind": self.kind,
            "input_schema": {
                "feature_names": list(self.input_schema.feature_names),
                "preset": self.input_schema.preset,
                "group": self.input_schema.group,
            },
            "training_data": {
                "sha256": self.training_data.sha256,
                "start_ns": self.training_data.start_ns,
                "end_ns": self.training_data.end_ns,
                "source_nodes": list(self.training_data.source_nodes),
                "n_rows": self.training_data.n_rows,
            },
            "metrics": dict(self.metrics),
            "parent": self.parent,
            "creator": self.creator,
            "created_ns": self.created_ns,
            "quantisation": None
            if q is None
            else {
                "chosen": q.chosen,
                "fp32_bytes": q.fp32_bytes,
                "int8_bytes": q.int8_bytes,
                "fp32_us": q.fp32_us,
                "int8_us": q.int8_us,
                "metric": q.metric,
                "fp32_quality": q.fp32_quality,
                "int8_quality": q.int8_quality,
            },
            "drift_reference": None
            if self.drift_reference is None
            else self.drift_reference.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "manifest") -> Manifest:
        """Parse and validate; raise :class:`ManifestError` naming ``source`` and the field."""
        try:
            if not isinstance(data, Mapping):
                raise ManifestError(f"expected a JSON object, got {type(data).__name__}")
            known = set(cls.__dataclass_fields__)
            unknown = sorted(set(data) - known)
            if unknown:
                raise ManifestError(f"unknown fields {unknown}")
            schema = data.get("schema")
            if schema != MANIFEST_SCHEMA:
                raise ManifestError(
                    f"schema: {schema!r} is not understood; this edgeloop reads {MANIFEST_SCHEMA!r}"
                )
            inp = _obj(data, "input_schema")
            td = _obj(data, "training_data")
            q = data.get("quantisation")
            ref = data.get("drift_reference")
            return cls(
                version=_req(data, "version"),
                artifact=_req(data, "artifact"),
                size=_req(data, "size"),
                kind=_req(data, "kind"),
                input_schema=InputSchema(
                    tuple(_req(inp, "feature_names", "input_schema")),
                    _req(inp, "preset", "input_schema"),
                    inp.get("group", ""),
                ),
                training_data=DataFingerprint(
                    _req(td, "sha256", "training_data"),
                    _req(td, "start_ns", "training_data"),
                    _req(td, "end_ns", "training_data"),
                    tuple(_req(td, "source_nodes", "training_data")),
                    _req(td, "n_rows", "training_data"),
                ),
                metrics=_obj(data, "metrics", required=False),
                parent=data.get("parent"),
                creator=data.get("creator", ""),
                created_ns=data.get("created_ns", 0),
                quantisation=None
                if q is None
                else QuantisationMeasurement(**_obj(data, "quantisation")),
                drift_reference=None
                if ref is None
                else Sketch.from_dict(_obj(data, "drift_reference"), "drift_reference"),
            )
        except (ManifestError, SketchError) as exc:
            raise ManifestError(f"{source}: {exc}") from exc
        except TypeError as exc:
            raise ManifestError(f"{source}: malformed ({exc})") from exc

    def canonical_bytes(self) -> bytes:
        """Deterministic JSON bytes of :meth:`to_dict` (what is signed)."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "manifest") -> Manifest:
        """Parse manifest bytes; they must be canonical (re-encoding gives them back).

        Raises:
            ManifestError: not UTF-8 JSON, invalid, or not in canonical form.
        """
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{source}: not UTF-8 JSON ({exc})") from exc
        manifest = cls.from_dict(obj, source)
        if manifest.canonical_bytes() != bytes(data):
            raise ManifestError(
                f"{source}: bytes are not canonical (sorted keys, no spaces, shortest floats); "
                "sign and send Manifest.canonical_bytes()"
            )
        return manifest


def canonical_json(value: Any) -> bytes:
    """Deterministic UTF-8 JSON: sorted keys, no whitespace, NaN and infinity refused."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except ValueError as exc:
        raise ManifestError(f"canonical JSON: {exc}") from exc


def _finite(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ManifestError(f"{what}: expected a finite number, got {value!r}")
    return float(value)


def _req(d: Mapping[str, Any], key: str, where: str = "") -> Any:
    if key not in d:
        raise ManifestError(f"{where + '.' if where else ''}{key}: missing")
    return d[key]


def _obj(d: Mapping[str, Any], key: str, *, required: bool = True) -> Mapping[str, Any]:
    value = d.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise ManifestError(f"{key}: expected an object, got {value!r}")
    return value

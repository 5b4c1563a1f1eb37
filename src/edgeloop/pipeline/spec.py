"""The declarative pipeline spec: pydantic models loaded from YAML.

A spec says which window groups to cut (sensors by kind and/or name glob, window size
and hop), which features to compute per group, which detectors score each group, which
filters run first, how often summaries are emitted, and what to anonymise upstream.
Unknown keys are errors. :func:`load_spec` reports *every* problem at once, each with
the path of the bad field::

    windows[1].hop: must be <= size (got 2048 > 1024)
    detectors[0].params.alpha: Input should be less than or equal to 1 (got 2.0)

>>> spec = load_spec('''
... windows:
...   - {group: vib, kinds: [vibration], size: 1024, features: [rms], spectrum: {bands: 8}}
... detectors:
...   - {group: vib, type: robust}
... ''')
>>> spec.windows[0].step, spec.detectors[0].params.z_threshold
(1024, 6.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from edgeloop.detect import registry
from edgeloop.errors import ConfigError
from edgeloop.pipeline.features import FEATURES
from edgeloop.pipeline.stages import ANON_FIELDS
from edgeloop.telemetry.frame import SensorKind

__all__ = [
    "AnonymiseSpec",
    "DetectorSpec",
    "FilterSpec",
    "OnnxDetectorSpec",
    "PipelineSpec",
    "RegisteredDetectorSpec",
    "RobustDetectorSpec",
    "RobustParams",
    "SpecError",
    "SpectrumSpec",
    "SummarySpec",
    "WindowSpec",
    "load_preset",
    "load_spec",
]

FeatureName = Literal["mean", "std", "min", "max", "rms", "p2p", "kurtosis", "crest", "skew"]
HashField = Literal["node", "machine", "sensor", "detector", "reason"]
DropField = Literal["node", "machine", "sensor", "detector", "reason", "features", "raw"]
assert set(FeatureName.__args__) == set(FEATURES)  # type: ignore[attr-defined]
assert set(DropField.__args__) == set(ANON_FIELDS)  # type: ignore[attr-defined]

_GROUP = r"^[A-Za-z_][A-Za-z0-9_.-]*$"


class SpecError(ConfigError):
    """An invalid pipeline spec; ``problems`` lists every ``path: message``."""

    def __init__(self, problems: list[str], source: str = "pipeline spec") -> None:
        self.problems = problems
        n = len(problems)
        head = f"invalid {source} ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n  ".join([head, *problems]))


def _problem(kind: str, msg: str, **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, msg, ctx)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpectrumSpec(_Model):
    """Spectral band energies: ``bands`` equal-width bands of the rfft power, DC excluded."""

    bands: int = Field(ge=1)
    log: bool = True


class WindowSpec(_Model):
    """One window group: which sensors, how to cut windows, which features.

    A sensor belongs to the group when its kind is in ``kinds`` (any kind if empty) and
    its name matches one of the ``sensors`` globs (any name if empty); at least one of
    the two must be given.

    ``join: machine`` makes the group multivariate: the windows of one machine's sensors
    that end at the same time become one feature row, columns ``<channel>.<feature>``
    (see :mod:`edgeloop.pipeline.join`), for detectors that score a machine as a whole.
    """

    group: str = Field(pattern=_GROUP)
    kinds: tuple[SensorKind, ...] = ()
    sensors: tuple[str, ...] = ()
    size: int = Field(ge=1, le=1 << 20)
    hop: int | None = Field(default=None, ge=1)
    features: tuple[FeatureName, ...] = ()
    spectrum: SpectrumSpec | None = None
    join: Literal["machine"] | None = None

    @field_validator("hop")
    @classmethod
    def _hop_le_size(cls, hop: int | None, info: ValidationInfo) -> int | None:
        size = info.data.get("size")
        if hop is not None and size is not None and hop > size:
            raise _problem(
                "hop_gt_size", "must be <= size (got {hop} > {size})", hop=hop, size=size
            )
        return hop

    @field_validator("features")
    @classmethod
    def _unique(cls, features: tuple[str, ...]) -> tuple[str, ...]:
        dup = sorted({f for f in features if features.count(f) > 1})
        if dup:
            raise _problem("duplicate", "listed more than once: {dup}", dup=", ".join(dup))
        return features

    @field_validator("spectrum")
    @classmethod
    def _bands_fit(cls, spectrum: SpectrumSpec | None, info: ValidationInfo) -> SpectrumSpec | None:
        size = info.data.get("size")
        if spectrum is not None and size is not None and spectrum.bands > size // 2:
            raise _problem(
                "too_many_bands",
                "bands must be <= size // 2 = {max} (got {bands})",
                max=size // 2,
                bands=spectrum.bands,
            )
        return spectrum

    @model_validator(mode="after")
    def _complete(self) -> WindowSpec:
        if not self.kinds and not self.sensors:
            raise _problem("no_selection", "give kinds and/or sensors to select the group")
        if not self.features and self.spectrum is None:
            raise _problem("no_features", "give features and/or spectrum")
        return self

    @property
    def step(self) -> int:
        """The hop, ``size`` when not given (tumbling windows)."""
        return self.size if self.hop is None else self.hop


class FilterSpec(_Model):
    """A filter stage; see :class:`edgeloop.pipeline.stages.FilterStage`."""

    mode: Literal["keep", "drop", "range"] = "keep"
    kinds: tuple[SensorKind, ...] = ()
    sensors: tuple[str, ...] = ()
    range: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _range(self) -> FilterSpec:
        if self.mode == "range" and self.range is None:
            raise _problem("range_missing", "mode 'range' needs range: [lo, hi]")
        if self.mode != "range" and self.range is not None:
            raise _problem("range_unused", "range is only used with mode 'range'")
        if self.range is not None and self.range[0] > self.range[1]:
            raise _problem("range_order", "range lo must be <= hi (got {r})", r=list(self.range))
        return self


class SummarySpec(_Model):
    """Per-sensor summaries every ``period_s``; late samples accepted for ``lateness_s``."""

    period_s: float = Field(default=1.0, gt=0)
    lateness_s: float | None = Field(default=None, ge=0)


class AnonymiseSpec(_Model):
    """Fields of upstream records to hash (keyed, key read from ``key_env``) or drop."""

    hash: tuple[HashField, ...] = ()
    drop: tuple[DropField, ...] = ()
    key_env: str = "EDGELOOP_ANON_KEY"

    @model_validator(mode="after")
    def _disjoint(self) -> AnonymiseSpec:
        both = sorted(set(self.hash) & set(self.drop))
        if both:
            raise _problem("both", "fields both hashed and dropped: {f}", f=", ".join(both))
        return self


class RobustParams(_Model):
    """Parameters of :class:`edgeloop.detect.robust.RobustDetector`."""

    alpha: float = Field(default=0.02, gt=0, le=1)
    z_threshold: float = Field(default=6.0, gt=0)
    warmup: int = Field(default=20, ge=1)
    clip: float = Field(default=3.0, gt=0)
    anomalous_rate: float = Field(default=0.05, ge=0, le=1)
    min_scale: float = Field(default=1e-6, ge=0)
    rel_scale: float = Field(default=1e-3, ge=0)
    log_features: tuple[str, ...] = ("std", "p2p")
    # Consecutive flagged windows after which a sensor is at a new operating point; 0: never.
    settle: int = Field(default=0, ge=0)


class RobustDetectorSpec(_Model):
    """The streaming robust z-score detector on one group's features."""

    type: Literal["robust"]
    group: str
    name: str | None = None
    params: RobustParams = RobustParams()


class OnnxDetectorSpec(_Model):
    """An ONNX model on one group's features; built by an injected factory."""

    type: Literal["onnx"]
    group: str
    name: str | None = None
    model: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class RegisteredDetectorSpec(_Model):
    """A detector class from :mod:`edgeloop.detect.registry`; ``params`` go to its constructor.

    Parameter names are checked here against the constructor; values when the pipeline
    is built (the constructor owns their defaults and limits).
    """

    type: str
    group: str
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> RegisteredDetectorSpec:
        if self.type not in registry.known_types() or self.type in _DETECTOR_TYPES:
            raise _problem(
                "unknown_type",
                "{t}",
                t=f"must be one of {', '.join(_all_types())} (got {self.type!r})",
            )
        problems = registry.check_params(self.type, self.params)
        if problems:
            raise _problem("bad_params", "{p}", p="; ".join(problems))
        return self


_DETECTOR_TYPES = ("robust", "onnx")


def _all_types() -> list[str]:
    return [*_DETECTOR_TYPES, *(t for t in registry.known_types() if t not in _DETECTOR_TYPES)]


def _detector_tag(v: Any) -> str:
    t = v.get("type") if isinstance(v, Mapping) else getattr(v, "type", None)
    return t if t in _DETECTOR_TYPES else "registered"


DetectorSpec = Annotated[
    Annotated[RobustDetectorSpec, Tag("robust")]
    | Annotated[OnnxDetectorSpec, Tag("onnx")]
    | Annotated[RegisteredDetectorSpec, Tag("registered")],
    Discriminator(_detector_tag),
]


class PipelineSpec(_Model):
    """A whole edge pipeline: filters -> windows -> features -> detectors, and summaries."""

    version: Literal[1] = 1
    name: str = "pipeline"
    windows: tuple[WindowSpec, ...] = ()
    filters: tuple[FilterSpec, ...] = ()
    summaries: SummarySpec | None = SummarySpec()
    anonymise: AnonymiseSpec = AnonymiseSpec()
    detectors: tuple[DetectorSpec, ...] = ()

    @model_validator(mode="after")
    def _references(self) -> PipelineSpec:
        problems: list[str] = []
        groups: dict[str, int] = {}
        for i, w in enumerate(self.windows):
            if w.group in groups:
                problems.append(
                    f"windows[{i}].group: {w.group!r} already used by windows[{groups[w.group]}]"
                )
            groups.setdefault(w.group, i)
        names: set[tuple[str, str]] = set()
        for i, d in enumerate(self.detectors):
            if d.group not in groups:
                known = ", ".join(groups) or "none"
                problems.append(f"detectors[{i}].group: unknown group {d.group!r} (known: {known})")
            key = (d.group, d.name or d.type)
            if key in names:
                problems.append(
                    f"detectors[{i}].name: two detectors named {key[1]!r} on group "
                    f"{d.group!r}; give each a distinct name"
                )
            names.add(key)
        if problems:
            raise _problem("references", "{p}", p="\n  ".join(problems))
        return self

    def window(self, group: str) -> WindowSpec:
        """The window spec of ``group`` (``KeyError`` if absent)."""
        for w in self.windows:
            if w.group == group:
                return w
        raise KeyError(group)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        # The discriminated union puts the detector type into the location: skip it.
        in_detector = i >= 2 and loc[i - 2] == "detectors" and isinstance(loc[i - 1], int)
        if in_detector and part in (*_DETECTOR_TYPES, "registered"):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _format(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors(include_url=False):
        path, kind, msg = _path(tuple(e["loc"])), e["type"], e["msg"]
        if kind == "references":  # already "path: message" lines
            problems.extend(msg.split("\n  "))
            continue
        if kind == "extra_forbidden":
            msg = "unknown field"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            path = f"{path}.type" if path else "type"
            msg = f"must be one of {', '.join(_all_types())}"
            if kind == "union_tag_invalid":
                msg += f" (got {e['ctx'].get('tag')!r})"
        elif kind in ("unknown_type", "bad_params"):
            path += ".type" if kind == "unknown_type" else ".params"
        elif kind not in _CUSTOM and _scalar(e.get("input")):
            msg += f" (got {e['input']!r})"
        problems.append(f"{path}: {msg}" if path else msg)
    return problems


_CUSTOM = {"hop_gt_size", "duplicate", "too_many_bands", "no_selection", "no_features"}
_CUSTOM |= {"range_missing", "range_unused", "range_order", "both"}
_CUSTOM |= {"unknown_type", "bad_params"}


def _scalar(x: object) -> bool:
    return isinstance(x, str | int | float | bool) and len(repr(x)) <= 80


def load_spec(source: str | Path | Mapping[str, Any], *, origin: str = "") -> PipelineSpec:
    """Parse and validate a pipeline spec.

    Args:
        source: a mapping, a :class:`~pathlib.Path`, or a string that is either YAML
            text or (when it is a single line ending in ``.yaml``/``.yml``) a file path.
        origin: name of the source for messages (default: the path, or "pipeline spec").

    Raises:
        SpecError: (a :class:`ConfigError`) listing every problem with its field path.
    """
    data: Any = source
    if isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml")):
        source = Path(source)
    if isinstance(source, Path):
        origin = origin or str(source)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as e:
            raise SpecError([f"cannot read {source}: {e.strerror or e}"], origin) from e
        data = _parse_yaml(text, origin)
    elif isinstance(source, str):
        data = _parse_yaml(source, origin or "pipeline spec")
    origin = origin or "pipeline spec"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise SpecError([f"the spec must be a mapping (got {type(data).__name__})"], origin)
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(_format(e), origin) from None


def _parse_yaml(text: str, origin: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError([f"YAML {where}{problem}"], origin) from None


def load_preset(name: str = "factory") -> PipelineSpec:
    """A spec shipped in ``edgeloop/presets/<name>.yaml`` (e.g. ``"factory"``)."""
    ref = resources.files("edgeloop").joinpath("presets", f"{name}.yaml")
    if not ref.is_file():
        raise ConfigError(f"preset {name!r}: no such preset")
    return load_spec(ref.read_text(encoding="utf-8"), origin=f"preset {name}")

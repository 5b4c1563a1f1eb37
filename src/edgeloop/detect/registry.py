"""Detector types a pipeline spec can name, resolved lazily by import path.

A spec entry ``{group: g, type: <name>, params: {...}}`` names a registered detector
class; the pipeline builds it as ``cls(n_sensors, feature_names, name=..., **params)``.
The class constructor is the one place that defines a detector's parameters and their
defaults: the spec checks parameter *names* against its signature when it is loaded
(so a typo is reported with its path before anything runs), and the constructor checks
the values when the pipeline is built (raising :class:`~edgeloop.errors.ConfigError`).

Classes are imported only when a spec uses them, so a gateway that runs only the robust
detector never imports the others. ``onnx`` is not in this table: an ONNX detector
needs a model file, and the node builds it through its detector factory.

>>> "robust" in known_types()
True
>>> check_params("robust", {"alpha": 0.1, "alfa": 2})
["unknown parameter 'alfa' (known: alpha, anomalous_rate, clip, log_features, min_scale, \
rel_scale, settle, warmup, z_threshold)"]
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from edgeloop.errors import ConfigError

if TYPE_CHECKING:
    from edgeloop.detect.base import Detector

__all__ = ["build_detector", "check_params", "detector_class", "known_types", "register"]

# Constructor arguments the pipeline supplies itself; a spec's params may not set them.
_RESERVED = ("n_sensors", "feature_names", "name")

_TYPES: dict[str, str] = {
    "robust": "edgeloop.detect.robust:RobustDetector",
    "multivariate": "edgeloop.detect.multivariate:MultivariateDetector",
    "novelty": "edgeloop.detect.novelty:NoveltyDetector",
}


def register(type_name: str, target: str) -> None:
    """Make ``type_name`` usable in specs; ``target`` is ``"package.module:Class"``."""
    if ":" not in target:
        raise ValueError(f"target must be 'module:Class' (got {target!r})")
    _TYPES[type_name] = target


def known_types() -> tuple[str, ...]:
    """Registered detector type names, sorted."""
    return tuple(sorted(_TYPES))


def detector_class(type_name: str) -> type[Any]:
    """The class registered as ``type_name`` (imported on first use)."""
    try:
        target = _TYPES[type_name]
    except KeyError:
        known = ", ".join(known_types())
        raise ConfigError(f"unknown detector type {type_name!r} (known: {known})") from None
    module, _, attr = target.partition(":")
    cls: type[Any] = getattr(importlib.import_module(module), attr)
    return cls


def _parameters(cls: type[Any]) -> tuple[dict[str, inspect.Parameter], bool]:
    params = dict(inspect.signature(cls).parameters)
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = {
        k: p
        for k, p in params.items()
        if k not in _RESERVED
        and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    return named, var_kw


def check_params(type_name: str, params: Mapping[str, Any]) -> list[str]:
    """Problems with the parameter *names* of a spec entry (values: at build time)."""
    named, var_kw = _parameters(detector_class(type_name))
    problems = [f"{k!r} is set by the pipeline, not by params" for k in params if k in _RESERVED]
    if not var_kw:
        known = ", ".join(sorted(named))
        problems += [
            f"unknown parameter {k!r} (known: {known})"
            for k in params
            if k not in named and k not in _RESERVED
        ]
    return problems


def build_detector(
    type_name: str,
    n_sensors: int,
    feature_names: Sequence[str],
    params: Mapping[str, Any],
    name: str | None = None,
) -> Detector:
    """Construct a registered detector; ``ConfigError`` names the type on bad params."""
    cls = detector_class(type_name)
    problems = check_params(type_name, params)
    if problems:
        raise ConfigError(f"detector {type_name!r}: " + "; ".join(problems))
    kwargs = dict(params)
    if "name" in inspect.signature(cls).parameters:
        kwargs["name"] = name or type_name
    try:
        det: Detector = cls(n_sensors, tuple(feature_names), **kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"detector {type_name!r}: {e}") from e
    if "name" not in kwargs:
        det.name = name or type_name
    return det

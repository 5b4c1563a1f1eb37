"""Learning in the hub: fit the multivariate anomaly model and export it to ONNX.

Attributes load lazily so that importing ``edgeloop.learn`` (or a light sibling module)
does not pull in scikit-learn, skl2onnx and onnx until they are used.

>>> import edgeloop.learn as learn
>>> sorted(learn.__all__)
['THRESHOLD', 'TrainedModel', 'fit_model', 'to_onnx']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeloop.learn.export import to_onnx
    from edgeloop.learn.train import THRESHOLD, TrainedModel, fit_model

__all__ = ["THRESHOLD", "TrainedModel", "fit_model", "to_onnx"]

_HOME = {
    "THRESHOLD": "edgeloop.learn.train",
    "TrainedModel": "edgeloop.learn.train",
    "fit_model": "edgeloop.learn.train",
    "to_onnx": "edgeloop.learn.export",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'edgeloop.learn' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

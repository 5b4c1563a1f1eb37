"""Learning in the hub: fit the multivariate anomaly model and export it to ONNX.

Attributes load lazily so that importing ``edgeloop.learn`` (or a light sibling module)
does not pull in scikit-learn, skl2onnx and onnx until they are used.

>>> import edgeloop.learn as learn
>>> sorted(learn.__all__)
['THRESHOLD', 'TrainedModel', 'fit_model', 'to_onnx']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeloop._lazy import lazy_exports

if TYPE_CHECKING:
    from edgeloop.learn.export import to_onnx
    from edgeloop.learn.train import THRESHOLD, TrainedModel, fit_model

__all__ = ["THRESHOLD", "TrainedModel", "fit_model", "to_onnx"]

__getattr__, __dir__ = lazy_exports(
    "edgeloop.learn",
    {"THRESHOLD": "train", "TrainedModel": "train", "fit_model": "train", "to_onnx": "export"},
    globals(),
)

"""The public surface of edgeloop.learn, and that importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import edgeloop.learn as learn
from edgeloop.learn import export, train


def test_all_is_sorted_and_resolves_to_the_implementations() -> None:
    assert learn.__all__ == sorted(learn.__all__)
    assert learn.fit_model is train.fit_model
    assert learn.TrainedModel is train.TrainedModel
    assert learn.THRESHOLD == train.THRESHOLD
    assert learn.to_onnx is export.to_onnx
    assert set(learn.__all__) <= set(dir(learn))


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = learn.nope


def test_importing_the_package_does_not_load_sklearn() -> None:
    code = (
        "import sys, edgeloop.learn\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'sklearn', 'skl2onnx', 'onnx', 'scipy'})\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

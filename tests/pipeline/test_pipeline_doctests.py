"""The runnable examples in the pipeline's docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "edgeloop.pipeline.windows",
    "edgeloop.pipeline.aggregate",
    "edgeloop.pipeline.stages",
    "edgeloop.pipeline.spec",
    "edgeloop.pipeline.join",
    "edgeloop.detect.registry",
    "edgeloop.detect.params",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

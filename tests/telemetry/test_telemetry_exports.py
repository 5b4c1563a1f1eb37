"""The telemetry package's public API is explicit, sorted and resolvable."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import edgeloop.telemetry as telemetry


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert telemetry.__all__ == sorted(telemetry.__all__)
    for name in telemetry.__all__:
        assert getattr(telemetry, name) is not None, name
    assert set(telemetry.__all__) <= set(dir(telemetry))


def test_exports_are_the_defining_objects() -> None:
    from edgeloop.telemetry import codec, validate

    assert telemetry.codec is codec
    assert telemetry.FrameValidator is validate.FrameValidator


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = telemetry.nope


def test_importing_frame_does_not_pull_in_the_codec() -> None:
    code = (
        "import sys, edgeloop.telemetry.frame, edgeloop.telemetry.validate;"
        "print('edgeloop.telemetry.codec' in sys.modules, 'zstandard' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_codec_module_imports_cleanly() -> None:
    assert importlib.import_module("edgeloop.telemetry.codec").SCHEMA_VERSION == 1


@pytest.mark.parametrize("name", ["codec", "validate", "boundary", "event_columns"])
def test_docstring_examples_run(name: str) -> None:
    import doctest

    module = importlib.import_module(f"edgeloop.telemetry.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

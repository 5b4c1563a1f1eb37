"""The public API: every ``__all__`` is sorted and every name in it resolves.

"Sorted" is the isort-style order that ruff's RUF022 enforces: SCREAMING_CASE names,
then CamelCase names, then everything else, each group in order.
"""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import edgeloop

LISTED = [
    "edgeloop.telemetry",
    "edgeloop.outbox",
    "edgeloop.pipeline",
    "edgeloop.sim",
    "edgeloop.hub",
    "edgeloop.learn",
]


def subpackages() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules(edgeloop.__path__, prefix="edgeloop.") if m.ispkg
    )


def with_all() -> list[str]:
    """``edgeloop`` and each subpackage that defines ``__all__``."""
    names = ["edgeloop"]
    for name in subpackages():
        if hasattr(importlib.import_module(name), "__all__"):
            names.append(name)
    return names


def sort_key(name: str) -> tuple[int, str]:
    if len(name) > 1 and name.upper() == name and name.lower() != name:
        group = 0  # SCREAMING_CASE
    elif name[:1].isupper():
        group = 1  # CamelCase
    else:
        group = 2
    return group, name


def test_sort_key_is_isort_style() -> None:
    assert sorted(
        ["fit_model", "TrainedModel", "THRESHOLD", "Anonymiser", "FEATURES"], key=sort_key
    ) == [
        "FEATURES",
        "THRESHOLD",
        "Anonymiser",
        "TrainedModel",
        "fit_model",
    ]


def test_the_listed_subpackages_define_all() -> None:
    found = set(with_all())
    missing = [name for name in LISTED if name not in found]
    assert not missing, f"no __all__ in {missing}"


@pytest.mark.parametrize("modname", with_all())
def test_all_is_sorted_unique_and_resolves(modname: str) -> None:
    mod = importlib.import_module(modname)
    names = list(mod.__all__)
    assert names, f"{modname}.__all__ is empty"
    assert all(isinstance(n, str) for n in names)
    assert len(set(names)) == len(names), f"duplicates in {modname}.__all__"
    assert names == sorted(names, key=sort_key), f"{modname}.__all__ is not sorted"
    unresolved = [n for n in names if not hasattr(mod, n)]
    assert not unresolved, f"{modname}.__all__ names that do not resolve: {unresolved}"
    for n in names:
        assert getattr(mod, n) is not None or n == "__version__"
    assert set(names) <= set(dir(mod)), f"dir({modname}) hides names of __all__"


@pytest.mark.parametrize("modname", with_all())
def test_star_import_gives_exactly_all(modname: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {modname} import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(importlib.import_module(modname).__all__)


def test_lazy_names_are_the_objects_of_their_home_module() -> None:
    from edgeloop import learn, pipeline, telemetry
    from edgeloop.learn.train import fit_model
    from edgeloop.pipeline.pipeline import Pipeline
    from edgeloop.telemetry.frame import Frame

    assert telemetry.Frame is Frame
    assert isinstance(telemetry.codec, types.ModuleType)
    assert telemetry.codec.__name__ == "edgeloop.telemetry.codec"
    assert pipeline.Pipeline is Pipeline
    assert learn.fit_model is fit_model


@pytest.mark.parametrize("modname", LISTED)
def test_unknown_name_raises_attribute_error(modname: str) -> None:
    mod = importlib.import_module(modname)
    with pytest.raises(AttributeError):
        _ = mod.no_such_name  # type: ignore[attr-defined]


def test_version_is_a_version_string() -> None:
    assert "__version__" in edgeloop.__all__
    parts = edgeloop.__version__.split(".")
    assert len(parts) >= 2 and all(p.isdigit() for p in parts[:2])

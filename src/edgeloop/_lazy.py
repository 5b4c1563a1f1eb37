"""Lazy package exports: names load from their submodule on first use.

Packages re-export a small ``__all__`` without importing every submodule (and its heavy
dependencies) when the package itself is imported — a gateway must not pull in
scikit-learn or FastAPI because it touched ``edgeloop.learn`` or ``edgeloop.hub``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, where: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``.

    Args:
        package: the package's dotted name.
        where: exported name -> submodule (relative to ``package``) that defines it; a
            name equal to its submodule exports the submodule itself.
        namespace: the package's ``globals()``; a loaded name is cached there, so later
            lookups do not come back through ``__getattr__``.
    """

    def __getattr__(name: str) -> Any:
        sub = where.get(name)
        if sub is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{sub}")
        value = module if sub == name else getattr(module, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__

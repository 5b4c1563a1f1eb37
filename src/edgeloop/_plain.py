"""Configuration as plain frozen dataclasses: validated by pydantic, built without it.

A config class is a stdlib dataclass whose fields carry their limits as metadata
(``Annotated[float, Gt(0)]``, with :func:`Gt` and friends from here) and whose
``__post_init__`` checks what spans several fields, raising :class:`FieldProblem`.
That one definition serves two kinds of process:

* a **launcher** (CLI, demo parent, hub) validates untrusted data with :func:`validate`,
  which imports pydantic on first use and reports every problem with its field path;
* a **running node** rebuilds the same classes from already validated data with
  :func:`from_plain` (standard library only), so a gateway never imports pydantic.

>>> from edgeloop.node.config import UplinkConfig
>>> up = from_plain(UplinkConfig, {"kind": "http", "url": "http://hub:8000", "timeout_s": 2})
>>> up.kind, up.url, up.timeout_s, up.max_batch_bytes
('http', 'http://hub:8000', 2.0, 1048576)
>>> validate(UplinkConfig, {"kind": "http", "timeout_s": 0}, "uplink")
Traceback (most recent call last):
...
edgeloop.errors.ConfigError: uplink: 1 problem(s)
  timeout_s: Input should be greater than 0 (got 0)
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from edgeloop.errors import ConfigError

__all__ = [
    "FORBID_EXTRA",
    "Discriminated",
    "FieldProblem",
    "Ge",
    "Gt",
    "Le",
    "Lt",
    "MinLen",
    "from_plain",
    "to_plain",
    "validate",
]

T = TypeVar("T")

FORBID_EXTRA = {"extra": "forbid"}
"""``__pydantic_config__`` of config classes (a plain dict: no pydantic import needed)."""


class FieldProblem(ValueError):
    """A ``__post_init__`` check failed; ``field`` extends the reported path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Discriminated:
    """Marks a union of config classes as told apart by the value of field ``key``.

    ``Annotated[A | B, Discriminated("type")]``: :func:`from_plain` picks the member
    whose ``Literal`` default for ``key`` matches; pydantic (in :func:`validate`) reads
    it as a discriminated union, so errors name the member, e.g. ``sources.0.csv.path``.
    """

    def __init__(self, key: str) -> None:
        self.key = key

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic import Discriminator  # only where validation runs: a launcher

        return handler(typing.Annotated[source, Discriminator(self.key)])


class Limit:
    """A field limit; pydantic enforces it as the :mod:`annotated_types` constraint
    ``kind`` (``Gt(0)`` is ``annotated_types.Gt(0)``: same checks, same messages).

    Our own small class rather than annotated_types' so that a running node, which
    only rebuilds validated data, imports neither annotated_types nor typing_extensions
    (~0.7 MB resident).
    """

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: float) -> None:
        self.kind = kind
        self.value = value

    def __repr__(self) -> str:
        return f"{self.kind}({self.value!r})"

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        import annotated_types  # only where validation runs: a launcher

        constraint = getattr(annotated_types, self.kind)(self.value)
        return handler(typing.Annotated[source, constraint])


def Gt(value: float) -> Limit:
    """Greater than ``value``."""
    return Limit("Gt", value)


def Ge(value: float) -> Limit:
    """Greater than or equal to ``value``."""
    return Limit("Ge", value)


def Lt(value: float) -> Limit:
    """Less than ``value``."""
    return Limit("Lt", value)


def Le(value: float) -> Limit:
    """Less than or equal to ``value``."""
    return Limit("Le", value)


def MinLen(value: int) -> Limit:
    """At least ``value`` items (or characters)."""
    return Limit("MinLen", value)


# --- building from validated data (standard library only) ----------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _strip(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    if typing.get_origin(hint) is typing.Annotated:
        return hint.__origin__, hint.__metadata__
    return hint, ()


def _tag(cls: type, key: str) -> Any:
    lit, _ = _strip(_hints(cls)[key])
    return typing.get_args(lit)[0]


def from_plain(hint: Any, data: Any) -> Any:
    """Rebuild a value of type ``hint`` (usually a config class) from plain data.

    ``data`` is what :func:`to_plain` (or JSON) gives: mappings, lists, numbers and
    strings. It must have been validated already: only the classes' ``__post_init__``
    checks run, the field limits are not re-checked.
    """
    hint, meta = _strip(hint)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        members = [a for a in args if a is not type(None)]
        disc = next((m for m in meta if isinstance(m, Discriminated)), None)
        if disc is not None:
            for m in members:
                if _tag(_strip(m)[0], disc.key) == data[disc.key]:
                    return from_plain(m, data)
            raise ValueError(f"no member of {hint} has {disc.key}={data[disc.key]!r}")
        if len(members) != 1:
            raise TypeError(f"cannot tell the members of {hint} apart: use Discriminated")
        return from_plain(members[0], data)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = _hints(hint)
        kwargs = {
            f.name: from_plain(hints[f.name], data[f.name])
            for f in dataclasses.fields(hint)
            if f.name in data
        }
        return hint(**kwargs)
    if origin in (list, tuple):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return tuple(from_plain(a, v) for a, v in zip(args, data, strict=True))
        return origin(from_plain(args[0], v) for v in data)
    if origin in (dict, Mapping):
        return {k: from_plain(args[1], v) for k, v in data.items()}
    if hint is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(data)
    return data


def to_plain(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) of a config object, for JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, enum.Enum):
        return obj.value
    return obj


# --- validation of untrusted data (imports pydantic) ---------------------------------------


@functools.cache
def _adapter(cls: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


def validate(cls: type[T], data: Any, where: str) -> T:
    """Validate ``data`` into ``cls`` or raise :class:`ConfigError` listing every problem.

    The message starts with ``where`` (a file, "desired state v7"), then one line per
    problem: ``path.of.field: reason``.
    """
    from pydantic import ValidationError

    try:
        adapter = _adapter(cls)  # type: ignore[arg-type]  # classes are hashable
        out: T = adapter.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(format_problems(exc.errors(include_url=False), where)) from None
    return out


def format_problems(errors: list[Any], where: str) -> str:
    """``where: N problem(s)`` and one ``path: reason`` line per pydantic error."""
    lines = [f"{where}: {len(errors)} problem(s)"]
    for err in errors:
        loc = [str(p) for p in err["loc"]]
        msg = err["msg"]
        problem = (err.get("ctx") or {}).get("error")
        if isinstance(problem, FieldProblem):
            loc.append(problem.field)
            msg = str(problem)
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif err["type"] == "unexpected_keyword_argument":
            msg = "Extra inputs are not permitted"
        elif _scalar(err.get("input")):
            msg += f" (got {err['input']!r})"
        lines.append(f"  {'.'.join(loc) or '(root)'}: {msg}")
    return "\n".join(lines)


def _scalar(x: object) -> bool:
    return isinstance(x, str | int | float | bool) and len(repr(x)) <= 80

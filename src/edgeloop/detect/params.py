"""Parameter checks of detector constructors: every problem named at once.

>>> require("robust", {"alpha": bound(0.0, "(0, 1]"), "warmup": bound(3, ">= 1")})
Traceback (most recent call last):
...
edgeloop.errors.ConfigError: robust detector: alpha: must be in (0, 1] (got 0.0)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from edgeloop.errors import ConfigError

Check = tuple[bool, str]
"""(passes, what it must be): one parameter's check."""

_INTERVAL = re.compile(r"^([(\[])\s*(\S+)\s*,\s*(\S+)\s*([)\]])$")
_COMPARE = re.compile(r"^(>=|>|<=|<)\s*(\S+)$")


def bound(value: float, rule: str) -> Check:
    """Check ``value`` against an interval (``"(0, 1]"``, ``"[0, 1)"``) or a comparison
    (``">= 1"``, ``"> 0"``); NaN never passes."""
    v = float(value)
    if m := _INTERVAL.match(rule):
        lo_open, lo, hi, hi_open = m[1] == "(", float(m[2]), float(m[3]), m[4] == ")"
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        return ok, f"must be in {rule} (got {value})"
    if m := _COMPARE.match(rule):
        op, x = m[1], float(m[2])
        ok = {">=": v >= x, ">": v > x, "<=": v <= x, "<": v < x}[op]
        return ok and not math.isnan(v), f"must be {rule} (got {value})"
    raise ValueError(f"not a bound: {rule!r}")


def require(detector: str, checks: Mapping[str, Check]) -> None:
    """Raise one :class:`ConfigError` naming every failed check of ``detector``'s
    parameters, in the order given.

    Raises:
        ConfigError: ``"<detector> detector: <param>: <what it must be>; ..."``.
    """
    problems = [f"{name}: {msg}" for name, (ok, msg) in checks.items() if not ok]
    if problems:
        raise ConfigError(f"{detector} detector: " + "; ".join(problems))


__all__ = ["Check", "bound", "require"]

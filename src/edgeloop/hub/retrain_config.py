"""How retraining runs build, judge and roll out a model: :class:`RetrainConfig`.

:func:`retrain_config` reads one from a JSON object (``hub serve --retrain-config``):
the fields of :class:`RetrainConfig`, with ``policy`` as ``POST /v1/rollouts`` takes
it; an unknown or invalid field is a :class:`~edgeloop.errors.ConfigError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from edgeloop.errors import ConfigError
from edgeloop.rollout import Evidence, Gates, RolloutPolicy


@dataclass(frozen=True, slots=True)
class RetrainConfig:
    """How runs build, judge and roll out a model (defaults are a starting point).

    Attributes:
        window_s: samples of this many seconds back (unless a run names ``since_ns``).
        min_rows: refuse below this many usable rows (the 0.999 quantile needs 1000).
        max_rows: keep the newest rows beyond this.
        max_documents: the newest sample documents read per run.
        holdout_fraction: share of rows held back for the evaluation.
        quantile: ``fit_model``'s calibration quantile.
        seed: the split and the fit.
        params: extra ``fit_model`` parameters (``variance``, ``n_estimators``, ...).
        max_holdout_alert_rate, min_true_alarm_recall, min_false_alarm_cleared: the bar.
        policy: the canary rollout started for a registered version.
        start_rollout: ``False`` registers without rolling out.
        stale_s: a run still marked running after this long is taken as dead.
        version_prefix: versions are named ``<prefix><run id>-<UTC time>``.
        quantise: measure the int8 variant against fp32 on the held-back rows and ship
            it where it is smaller or faster and decides every row alike (the manifest
            records the measurement either way).
    """

    window_s: float = 24 * 3600.0
    min_rows: int = 1000
    max_rows: int = 200_000
    max_documents: int = 100_000
    holdout_fraction: float = 0.2
    quantile: float = 0.999
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    max_holdout_alert_rate: float = 0.01
    min_true_alarm_recall: float = 1.0
    min_false_alarm_cleared: float = 0.5
    policy: RolloutPolicy = field(default_factory=RolloutPolicy)
    start_rollout: bool = True
    stale_s: float = 3600.0
    version_prefix: str = "rt"
    quantise: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.holdout_fraction < 1:
            raise ConfigError(
                f"retrain.holdout_fraction: must be in (0, 1), got {self.holdout_fraction}"
            )
        if self.window_s <= 0 or self.min_rows < 1 or self.max_rows < self.min_rows:
            raise ConfigError("retrain: window_s > 0 and 1 <= min_rows <= max_rows required")


def retrain_config(data: Mapping[str, Any]) -> RetrainConfig:
    """A :class:`RetrainConfig` from a JSON object (see the module docstring).

    Raises:
        ConfigError: an unknown field, a value of the wrong type, or out of range.
    """
    known = {f.name for f in fields(RetrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"retrain: unknown field(s) {unknown}; known: {sorted(known)}")
    defaults = RetrainConfig()
    for name, value in data.items():
        if name in ("policy", "params"):
            if not isinstance(value, Mapping):
                raise ConfigError(f"retrain.{name}: expected an object, got {value!r:.50}")
            continue
        want = type(getattr(defaults, name))
        ok = isinstance(value, want) and isinstance(value, bool) == (want is bool)
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ConfigError(f"retrain.{name}: expected {want.__name__}, got {value!r:.50}")
    args = dict(data)
    try:
        if "policy" in args:
            p = dict(args["policy"])
            p["evidence"] = Evidence(**p.get("evidence", {}))
            p["gates"] = Gates(**p.get("gates", {}))
            if "steps" in p:
                p["steps"] = tuple(p["steps"])
            args["policy"] = RolloutPolicy(**p)
        return RetrainConfig(**args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"retrain: {exc}") from None


__all__ = ["RetrainConfig", "retrain_config"]

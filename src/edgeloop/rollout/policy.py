"""Rollout policy, the evidence nodes report, and the gates that judge it.

A node running a challenger beside the champion (one acting, the other in shadow, on the
same windows) reports per period an :class:`EdgeMeasurement`: windows scored, alerts of
each model, windows where both decided alike, the shift between their score
distributions (KS distance, computed at the edge), the challenger's inference latency p99
and its errors. The rollout adds them up per stage in a :class:`Tally` (counts add; the
score shift is window-weighted; the latency is the worst node's p99, a conservative
summary of per-node quantiles) and :func:`evaluate` checks the :class:`Gates`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from edgeloop.errors import ConfigError

Mode = Literal["act", "shadow"]


@dataclass(frozen=True, slots=True)
class Gates:
    """Thresholds a stage's evidence must meet; ``None`` disables a gate.

    Attributes:
        max_alert_ratio: challenger alert rate / champion alert rate (the champion's
            rate floored at ``alert_rate_floor`` so that a quiet champion does not make
            every alert infinitely many times worse).
        alert_rate_floor: alerts per window below which rates count as this floor.
        min_agreement: share of windows where both models decided alike.
        max_score_shift: KS distance between the two models' score distributions.
        max_latency_p99_ms: the challenger's inference latency p99 (worst node).
        max_error_rate: challenger errors per window. With 0 (the default), any error
            fails the stage at once, before the evidence is complete.
    """

    max_alert_ratio: float | None = 2.0
    alert_rate_floor: float = 0.001
    min_agreement: float | None = 0.9
    max_score_shift: float | None = 0.5
    max_latency_p99_ms: float | None = 10.0
    max_error_rate: float | None = 0.0

    def __post_init__(self) -> None:
        for name in (
            "max_alert_ratio",
            "min_agreement",
            "max_score_shift",
            "max_latency_p99_ms",
            "max_error_rate",
        ):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"rollout.gates.{name}: must be a number >= 0 or null, got {v!r}")
        if not 0 < self.alert_rate_floor <= 1:
            raise ConfigError(
                f"rollout.gates.alert_rate_floor: must be in (0, 1], got {self.alert_rate_floor}"
            )


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a stage needs before its gates are judged.

    Attributes:
        min_windows: windows scored by both models, over the stage's nodes.
        min_nodes: distinct reporting nodes (capped at the cohort's size).
        min_duration_s: time since the stage began.
    """

    min_windows: int = 1000
    min_nodes: int = 1
    min_duration_s: float = 0.0

    def __post_init__(self) -> None:
        if self.min_windows < 1 or self.min_nodes < 1:
            raise ConfigError("rollout.evidence: min_windows and min_nodes must be >= 1")
        if not (math.isfinite(self.min_duration_s) and self.min_duration_s >= 0):
            raise ConfigError(
                f"rollout.evidence.min_duration_s: must be >= 0, got {self.min_duration_s}"
            )


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage: its name, the fleet fraction it may hold, and the challenger's mode."""

    name: str
    fraction: float
    mode: Mode


@dataclass(frozen=True, slots=True)
class RolloutPolicy:
    """How a challenger is rolled out.

    Attributes:
        canary_fraction: share of the fleet that first acts on the challenger.
        steps: larger shares, in increasing order, each a stage of its own; after the
            last stage passes, the challenger is promoted (every node acts on it).
        shadow_fraction: share of the fleet that first runs the challenger in shadow
            (decisions logged, not acted on); 0 skips the shadow stage.
        evidence: what each stage needs before its gates are judged.
        gates: the thresholds.
        stage_timeout_s: roll back when a stage has not gathered its evidence in this
            time (``None``: wait as long as it takes).
        seed: seeds the order in which nodes join (see :mod:`edgeloop.rollout.cohort`).
    """

    canary_fraction: float = 0.1
    steps: tuple[float, ...] = (0.5,)
    shadow_fraction: float = 1.0
    evidence: Evidence = field(default_factory=Evidence)
    gates: Gates = field(default_factory=Gates)
    stage_timeout_s: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.canary_fraction < 1:
            raise ConfigError(
                f"rollout.canary_fraction: must be in (0, 1), got {self.canary_fraction}"
            )
        steps = tuple(self.steps)
        prev = self.canary_fraction
        for i, s in enumerate(steps):
            if not prev < s < 1:
                raise ConfigError(
                    f"rollout.steps[{i}]: {s} must be above {prev} (the previous stage) and below 1"
                )
            prev = s
        object.__setattr__(self, "steps", steps)
        if not 0 <= self.shadow_fraction <= 1:
            raise ConfigError(
                f"rollout.shadow_fraction: must be in [0, 1], got {self.shadow_fraction}"
            )
        if self.stage_timeout_s is not None and not self.stage_timeout_s > 0:
            raise ConfigError(
                f"rollout.stage_timeout_s: must be > 0 or null, got {self.stage_timeout_s}"
            )

    def stages(self) -> tuple[Stage, ...]:
        """Shadow (if any), canary, then the steps."""
        out = [Stage("shadow", self.shadow_fraction, "shadow")] if self.shadow_fraction else []
        out.append(Stage("canary", self.canary_fraction, "act"))
        out += [Stage(f"step-{i}", s, "act") for i, s in enumerate(self.steps, start=1)]
        return tuple(out)


@dataclass(frozen=True, slots=True)
class EdgeMeasurement:
    """One node's comparison of challenger and champion over one period.

    Attributes:
        node: the reporting node.
        version: the challenger version measured (reports about others are ignored).
        period_start_ns, period_end_ns: the period covered.
        windows: windows both models scored.
        challenger_alerts, champion_alerts: windows each model flagged.
        agreements: windows where both decided alike (both alert or both quiet).
        score_shift: KS distance between the two models' scores over the period, [0, 1].
        latency_p99_ms: the challenger's inference latency p99 over the period.
        errors: challenger failures (load, inference) in the period.
    """

    node: str
    version: str
    period_start_ns: int
    period_end_ns: int
    windows: int
    challenger_alerts: int
    champion_alerts: int
    agreements: int
    score_shift: float = 0.0
    latency_p99_ms: float = 0.0
    errors: int = 0

    def __post_init__(self) -> None:
        where = f"measurement from {self.node!r}"
        if self.period_end_ns < self.period_start_ns:
            raise ConfigError(f"{where}: period_end_ns is before period_start_ns")
        for name in ("windows", "challenger_alerts", "champion_alerts", "agreements", "errors"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{where}: {name} must be an int >= 0, got {v!r}")
        for name in ("challenger_alerts", "champion_alerts", "agreements"):
            if getattr(self, name) > self.windows:
                raise ConfigError(
                    f"{where}: {name} {getattr(self, name)} exceeds windows {self.windows}"
                )
        if not 0 <= self.score_shift <= 1:
            raise ConfigError(f"{where}: score_shift must be in [0, 1], got {self.score_shift}")
        if not (math.isfinite(self.latency_p99_ms) and self.latency_p99_ms >= 0):
            raise ConfigError(f"{where}: latency_p99_ms must be >= 0, got {self.latency_p99_ms}")


@dataclass(frozen=True, slots=True)
class Tally:
    """Evidence gathered in a stage (see the module docstring)."""

    windows: int = 0
    challenger_alerts: int = 0
    champion_alerts: int = 0
    agreements: int = 0
    errors: int = 0
    shift_sum: float = 0.0
    latency_p99_ms: float = 0.0
    nodes: frozenset[str] = frozenset()

    def add(self, m: EdgeMeasurement) -> Tally:
        """This tally plus one measurement."""
        return replace(
            self,
            windows=self.windows + m.windows,
            challenger_alerts=self.challenger_alerts + m.challenger_alerts,
            champion_alerts=self.champion_alerts + m.champion_alerts,
            agreements=self.agreements + m.agreements,
            errors=self.errors + m.errors,
            shift_sum=self.shift_sum + m.score_shift * m.windows,
            latency_p99_ms=max(self.latency_p99_ms, m.latency_p99_ms),
            nodes=self.nodes | {m.node},
        )

    def rate(self, count: int) -> float:
        """``count`` per window (0 without windows)."""
        return count / self.windows if self.windows else 0.0

    @property
    def score_shift(self) -> float:
        """Window-weighted mean score shift."""
        return self.shift_sum / self.windows if self.windows else 0.0

    def summary(self) -> dict[str, float | int]:
        """Plain figures for decisions and reports."""
        return {
            "windows": self.windows,
            "nodes": len(self.nodes),
            "challenger_alert_rate": self.rate(self.challenger_alerts),
            "champion_alert_rate": self.rate(self.champion_alerts),
            "agreement": self.rate(self.agreements),
            "score_shift": self.score_shift,
            "latency_p99_ms": self.latency_p99_ms,
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class GateResult:
    """One gate's verdict: its value against its limit."""

    gate: str
    value: float
    limit: float
    passed: bool

    def __str__(self) -> str:
        op = ">=" if self.gate == "agreement" else "<="
        verdict = "ok" if self.passed else "FAILED"
        return f"{self.gate} {self.value:.4g} (limit {op} {self.limit:g}) {verdict}"


def evaluate(tally: Tally, gates: Gates) -> tuple[GateResult, ...]:
    """Every enabled gate's verdict on ``tally``."""
    out = []
    if gates.max_alert_ratio is not None:
        ch = tally.rate(tally.challenger_alerts)
        base = max(tally.rate(tally.champion_alerts), gates.alert_rate_floor)
        ratio = max(ch, gates.alert_rate_floor) / base
        out.append(
            GateResult("alert_ratio", ratio, gates.max_alert_ratio, ratio <= gates.max_alert_ratio)
        )
    if gates.min_agreement is not None:
        agree = tally.rate(tally.agreements)
        out.append(
            GateResult("agreement", agree, gates.min_agreement, agree >= gates.min_agreement)
        )
    if gates.max_score_shift is not None:
        s = tally.score_shift
        out.append(GateResult("score_shift", s, gates.max_score_shift, s <= gates.max_score_shift))
    if gates.max_latency_p99_ms is not None:
        lat = tally.latency_p99_ms
        out.append(
            GateResult(
                "latency_p99_ms", lat, gates.max_latency_p99_ms, lat <= gates.max_latency_p99_ms
            )
        )
    if gates.max_error_rate is not None:
        er = tally.rate(tally.errors) if tally.windows else float(tally.errors > 0)
        out.append(GateResult("error_rate", er, gates.max_error_rate, er <= gates.max_error_rate))
    return tuple(out)


def missing_evidence(
    tally: Tally, evidence: Evidence, cohort_size: int, elapsed_s: float
) -> list[str]:
    """What the stage still lacks before it can be judged (empty: enough)."""
    lacks = []
    if tally.windows < evidence.min_windows:
        lacks.append(f"windows {tally.windows} < {evidence.min_windows}")
    need_nodes = min(evidence.min_nodes, max(cohort_size, 1))
    if len(tally.nodes) < need_nodes:
        lacks.append(f"reporting nodes {len(tally.nodes)} < {need_nodes}")
    if elapsed_s < evidence.min_duration_s:
        lacks.append(f"duration {elapsed_s:g} s < {evidence.min_duration_s:g} s")
    return lacks

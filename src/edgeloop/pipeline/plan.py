"""A validated pipeline spec as plain frozen dataclasses: what a running node builds from.

:mod:`edgeloop.pipeline.spec` is the schema: pydantic models that validate YAML and
report every problem with its path. A launcher validates a spec there and hands the node
the result as plain data; the node rebuilds it here with :func:`plan_from_data`, using
the standard library only, so a gateway never imports pydantic or yaml.
:meth:`~edgeloop.pipeline.pipeline.Pipeline.from_spec` takes either form.

The classes mirror the spec's models field for field, with defaults already filled in
(every detector type shares :class:`DetectorPlan`); ``tests/pipeline`` and
``tests/node/test_node_plan.py`` check that the two stay in step.

>>> from edgeloop.pipeline.spec import load_preset
>>> plan = plan_of(load_preset("factory"))
>>> plan.window("vibration").step, plan.detectors[0].params["z_threshold"]
(1024, 6.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from edgeloop._plain import from_plain
from edgeloop.telemetry.frame import SensorKind

if TYPE_CHECKING:
    from edgeloop.pipeline.spec import PipelineSpec

__all__ = [
    "AnonymisePlan",
    "DetectorPlan",
    "FilterPlan",
    "PipelinePlan",
    "SpectrumPlan",
    "SummaryPlan",
    "WindowPlan",
    "plan_from_data",
    "plan_of",
]


@dataclass(frozen=True, kw_only=True)
class SpectrumPlan:
    bands: int
    log: bool = True


@dataclass(frozen=True, kw_only=True)
class WindowPlan:
    group: str
    kinds: tuple[SensorKind, ...] = ()
    sensors: tuple[str, ...] = ()
    size: int
    hop: int | None = None
    features: tuple[str, ...] = ()
    spectrum: SpectrumPlan | None = None
    join: str | None = None

    @property
    def step(self) -> int:
        """The hop, ``size`` when not given (tumbling windows)."""
        return self.size if self.hop is None else self.hop


@dataclass(frozen=True, kw_only=True)
class FilterPlan:
    mode: Literal["keep", "drop", "range"] = "keep"
    kinds: tuple[SensorKind, ...] = ()
    sensors: tuple[str, ...] = ()
    range: tuple[float, float] | None = None


@dataclass(frozen=True, kw_only=True)
class SummaryPlan:
    period_s: float = 1.0
    lateness_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class AnonymisePlan:
    hash: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    key_env: str = "EDGELOOP_ANON_KEY"


@dataclass(frozen=True, kw_only=True)
class DetectorPlan:
    """Any detector entry; ``params`` hold every parameter the spec resolved."""

    type: str
    group: str
    name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    model: str | None = None


@dataclass(frozen=True, kw_only=True)
class PipelinePlan:
    version: int = 1
    name: str = "pipeline"
    windows: tuple[WindowPlan, ...] = ()
    filters: tuple[FilterPlan, ...] = ()
    summaries: SummaryPlan | None = field(default_factory=SummaryPlan)
    anonymise: AnonymisePlan = field(default_factory=AnonymisePlan)
    detectors: tuple[DetectorPlan, ...] = ()

    def window(self, group: str) -> WindowPlan:
        """The window plan of ``group`` (``KeyError`` if absent)."""
        for w in self.windows:
            if w.group == group:
                return w
        raise KeyError(group)


def plan_from_data(data: Mapping[str, Any]) -> PipelinePlan:
    """Rebuild a plan from plain data (JSON) of an already validated spec."""
    plan: PipelinePlan = from_plain(PipelinePlan, data)
    return plan


def plan_of(spec: PipelineSpec) -> PipelinePlan:
    """The plan of a validated spec (what a launcher sends a node, as plain data)."""
    return plan_from_data(spec.model_dump(mode="json"))

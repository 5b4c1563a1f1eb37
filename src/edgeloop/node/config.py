"""Node configuration: one schema for every tier (device, gateway, regional edge).

A tier is configuration, not a different program. The schema is a set of frozen
dataclasses (see :mod:`edgeloop._plain`): a launcher loads YAML and validates it with
:func:`load_node_config` / :func:`parse_node_config` (pydantic, imported on first use),
and every problem is reported with the path of the field, e.g.
``uplink.url: required when uplink.kind is 'http'``. A running node receives the
validated config inside a :class:`~edgeloop.node.plan.NodePlan` and imports neither
pydantic nor yaml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from edgeloop._plain import (
    FORBID_EXTRA,
    Discriminated,
    FieldProblem,
    Ge,
    Gt,
    Le,
    Lt,
    MinLen,
    validate,
)
from edgeloop.errors import ConfigError

_NODE_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True, kw_only=True)
class OutboxConfig:
    __pydantic_config__ = FORBID_EXTRA
    url: str = "memory://"
    budget_bytes: Annotated[int, Gt(0)] | None = None


@dataclass(frozen=True, kw_only=True)
class UplinkConfig:
    """Where the node's outbox drains to.

    ``kind: http`` posts batches to the hub at ``url``; ``kind: mqtt`` publishes them to
    the broker at ``host:port`` on ``edgeloop/<tenant>/<node_id>/uplink`` (``tenant``
    defaults to the node's own ``tenant``).
    """

    __pydantic_config__ = FORBID_EXTRA
    kind: Literal["none", "inproc", "http", "mqtt"] = "none"
    url: str | None = None
    host: str | None = None
    port: Annotated[int, Ge(1), Le(65535)] = 1883
    tenant: str | None = None
    keepalive_s: Annotated[int, Gt(0)] = 15
    max_batch_bytes: Annotated[int, Gt(0)] = 1 << 20
    timeout_s: Annotated[float, Gt(0)] = 5.0
    retry_min_s: Annotated[float, Gt(0)] = 0.05
    retry_max_s: Annotated[float, Gt(0)] = 2.0

    def __post_init__(self) -> None:
        if self.kind == "http" and not self.url:
            raise FieldProblem("url", "required when uplink.kind is 'http'")
        if self.kind == "mqtt" and not self.host:
            raise FieldProblem("host", "required when uplink.kind is 'mqtt'")


@dataclass(frozen=True, kw_only=True)
class RuleConfig:
    __pydantic_config__ = FORBID_EXTRA
    name: str
    groups: list[str] = field(default_factory=list)
    min_score: Annotated[float, Ge(0.0), Le(1.0)] = 0.0
    severity: Literal["anomaly", "alarm"] = "anomaly"
    actions: list[str] = field(default_factory=list)
    forward: bool = True


def _default_rules() -> list[RuleConfig]:
    return [RuleConfig(name="anomaly")]


@dataclass(frozen=True, kw_only=True)
class DecideConfig:
    __pydantic_config__ = FORBID_EXTRA
    min_confidence: Annotated[float, Ge(0.0), Le(1.0)] = 0.99
    clear_after_s: Annotated[float, Ge(0.0)] = 2.0
    stale_after_s: Annotated[float, Gt(0.0)] = 1.0
    context_pre_s: Annotated[float, Ge(0.0)] = 0.5
    context_post_s: Annotated[float, Ge(0.0)] = 0.25
    rules: list[RuleConfig] = field(default_factory=_default_rules)


@dataclass(frozen=True, kw_only=True)
class SensorConfig:
    __pydantic_config__ = FORBID_EXTRA
    name: Annotated[str, MinLen(1)]
    machine: Annotated[str, MinLen(1)]
    kind: Literal["vibration", "temperature", "pressure", "current", "generic"] = "generic"
    rate_hz: Annotated[float, Gt(0.0)] = 1.0
    unit: str = ""


@dataclass(frozen=True, kw_only=True)
class SimSourceConfig:
    """The factory simulator as a source; ``factory`` and ``faults`` go to ``edgeloop.sim``.

    ``factory`` is ``{"generate": {...}}`` or a full floor (see
    :func:`edgeloop.sim.build.resolve_floor`); a launcher resolves and validates it into
    the node's plan.
    """

    __pydantic_config__ = FORBID_EXTRA
    type: Literal["sim"] = "sim"
    seed: int = 0
    tick_s: Annotated[float, Gt(0.0)] = 0.1
    phase_s: Annotated[float, Ge(0.0)] = 0.0
    factory: dict[str, Any] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class CsvSourceConfig:
    __pydantic_config__ = FORBID_EXTRA
    type: Literal["csv"] = "csv"
    path: str
    speed: Annotated[float, Ge(0.0)] = 0.0


@dataclass(frozen=True, kw_only=True)
class HttpSourceConfig:
    __pydantic_config__ = FORBID_EXTRA
    type: Literal["http"] = "http"
    host: str = "127.0.0.1"
    port: Annotated[int, Ge(0), Le(65535)] = 0


SourceConfig = Annotated[
    SimSourceConfig | CsvSourceConfig | HttpSourceConfig, Discriminated("type")
]


@dataclass(frozen=True, kw_only=True)
class ChaosConfig:
    """Faults injected into the uplink, in seconds from the start of the run."""

    __pydantic_config__ = FORBID_EXTRA
    partitions: list[tuple[float, float]] = field(default_factory=list)
    ack_loss: Annotated[float, Ge(0.0), Lt(1.0)] = 0.0
    corrupt_samples: Annotated[float, Ge(0.0), Lt(1.0)] = 0.0
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class ModelsConfig:
    """Model delivery: where models live and whom to trust (``edgeloop.node.reconcile``).

    ``dir`` holds downloads, verified models and the active pointer; ``trusted_keys`` are
    PEM public keys a model's signature must come from; ``hub_url`` serves desired
    state and artifacts (default: the HTTP uplink's url); ``fleet_group`` is the node group
    it names when it reports (a node the hub does not know yet joins that group). The
    acting model takes over the detector ``detector`` of its window group (default: the
    group's only ONNX detector); ``window_group`` is used for models whose metadata names
    none.
    """

    __pydantic_config__ = FORBID_EXTRA
    dir: Annotated[str, MinLen(1)]
    trusted_keys: Annotated[list[str], MinLen(1)]
    hub_url: str | None = None
    fleet_group: str | None = None
    detector: str | None = None
    window_group: str | None = None
    reconcile_every_s: Annotated[float, Gt(0.0)] = 10.0
    measure_every_s: Annotated[float, Gt(0.0)] = 60.0
    chunk_bytes: Annotated[int, Gt(0)] = 256 * 1024
    max_failures: Annotated[int, Ge(1)] = 3
    timeout_s: Annotated[float, Gt(0.0)] = 10.0
    retry_min_s: Annotated[float, Gt(0.0)] = 0.5
    retry_max_s: Annotated[float, Gt(0.0)] = 30.0


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    """Everything a node needs to run.

    Attributes:
        node_id: unique id of the node in its tenant.
        tier: where the node sits; changes defaults only, never code paths.
        pipeline: a pipeline spec: a path to YAML or the name of a bundled preset.
        summary_every_s: cadence of summary uplinks (summaries cover every sample).
    """

    __pydantic_config__ = FORBID_EXTRA
    node_id: Annotated[str, MinLen(1)]
    tier: Literal["device", "gateway", "regional"] = "gateway"
    tenant: str = "default"
    parent: str | None = None
    pipeline: str = "factory"
    summary_every_s: Annotated[float, Gt(0.0)] = 5.0
    decide: DecideConfig = field(default_factory=DecideConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    uplink: UplinkConfig = field(default_factory=UplinkConfig)
    sensors: list[SensorConfig] = field(default_factory=list)
    sources: list[SourceConfig] = field(default_factory=list)
    chaos: ChaosConfig | None = None
    status_file: str | None = None
    models: ModelsConfig | None = None

    def __post_init__(self) -> None:
        if not _NODE_ID.match(self.node_id):
            raise FieldProblem("node_id", f"String should match pattern '{_NODE_ID.pattern}'")
        if self.models is not None and not self.models.hub_url and self.uplink.kind != "http":
            raise FieldProblem("models.hub_url", "required unless uplink.kind is 'http'")
        if self.uplink.kind == "mqtt":
            from edgeloop.transport.topics import check_name

            where = "uplink.tenant" if self.uplink.tenant else "tenant"
            try:
                check_name(where, self.uplink.tenant or self.tenant)
            except ConfigError as exc:
                raise FieldProblem(where, str(exc).removeprefix(f"{where}: ")) from None
        if sum(1 for s in self.sources if s.type == "sim") > 1:
            raise FieldProblem(
                "sources", "at most one simulator source per node (each simulates a whole floor)"
            )


def parse_node_config(data: Any, where: str = "node config") -> NodeConfig:
    """Validate ``data`` (a mapping) into a :class:`NodeConfig` or raise ConfigError."""
    return validate(NodeConfig, data, where)


def load_node_config(path: str | Path) -> NodeConfig:
    """Load a node config from a YAML file; errors name the file and each bad field."""
    import yaml  # a launcher's dependency: a running node gets its config as a plan

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from None
    return parse_node_config(data, where=str(p))

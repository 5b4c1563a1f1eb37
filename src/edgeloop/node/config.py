"""Node configuration: one schema for every tier (device, gateway, regional edge).

A tier is configuration, not a different program. Loaded from YAML and validated with
pydantic; every problem is reported with the path of the field, e.g.
``uplink.url: required when uplink.kind is 'http'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from edgeloop.errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutboxConfig(_Model):
    url: str = "memory://"
    budget_bytes: int | None = Field(default=None, gt=0)


class UplinkConfig(_Model):
    kind: Literal["none", "inproc", "http"] = "none"
    # validate_default: the check below must run when url is left out, and as a field
    # validator it reports the path ``uplink.url`` (a model validator would say ``uplink``).
    url: str | None = Field(default=None, validate_default=True)
    max_batch_bytes: int = Field(default=1 << 20, gt=0)
    timeout_s: float = Field(default=5.0, gt=0)
    retry_min_s: float = Field(default=0.05, gt=0)
    retry_max_s: float = Field(default=2.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url_needed(cls, url: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("kind") == "http" and not url:
            raise ValueError("required when uplink.kind is 'http'")
        return url


class RuleConfig(_Model):
    name: str
    groups: list[str] = Field(default_factory=list)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)
    severity: Literal["anomaly", "alarm"] = "anomaly"
    actions: list[str] = Field(default_factory=list)
    forward: bool = True


class DecideConfig(_Model):
    min_confidence: float = Field(default=0.99, ge=0.0, le=1.0)
    clear_after_s: float = Field(default=2.0, ge=0.0)
    stale_after_s: float = Field(default=1.0, gt=0.0)
    context_pre_s: float = Field(default=0.5, ge=0.0)
    context_post_s: float = Field(default=0.25, ge=0.0)
    rules: list[RuleConfig] = Field(
        default_factory=lambda: [RuleConfig(name="anomaly")],
    )


class SensorConfig(_Model):
    name: str = Field(min_length=1)
    machine: str = Field(min_length=1)
    kind: Literal["vibration", "temperature", "pressure", "current", "generic"] = "generic"
    rate_hz: float = Field(default=1.0, gt=0.0)
    unit: str = ""


class SimSourceConfig(_Model):
    """The factory simulator as a source; ``factory`` and ``faults`` go to ``edgeloop.sim``."""

    type: Literal["sim"] = "sim"
    seed: int = 0
    tick_s: float = Field(default=0.1, gt=0.0)
    phase_s: float = Field(default=0.0, ge=0.0)
    factory: dict[str, Any] = Field(default_factory=dict)
    faults: list[dict[str, Any]] = Field(default_factory=list)


class CsvSourceConfig(_Model):
    type: Literal["csv"] = "csv"
    path: str
    speed: float = Field(default=0.0, ge=0.0)


class HttpSourceConfig(_Model):
    type: Literal["http"] = "http"
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)


SourceConfig = Annotated[
    SimSourceConfig | CsvSourceConfig | HttpSourceConfig, Field(discriminator="type")
]


class ChaosConfig(_Model):
    """Faults injected into the uplink, in seconds from the start of the run."""

    partitions: list[tuple[float, float]] = Field(default_factory=list)
    ack_loss: float = Field(default=0.0, ge=0.0, lt=1.0)
    corrupt_samples: float = Field(default=0.0, ge=0.0, lt=1.0)
    seed: int = 0


def _one_sim(sources: list[Any]) -> list[Any]:
    if sum(1 for s in sources if getattr(s, "type", None) == "sim") > 1:
        raise ValueError("at most one simulator source per node (each simulates a whole floor)")
    return sources


class NodeConfig(_Model):
    """Everything a node needs to run.

    Attributes:
        node_id: unique id of the node in its tenant.
        tier: where the node sits; changes defaults only, never code paths.
        pipeline: a pipeline spec: a path to YAML or the name of a bundled preset.
        summary_every_s: cadence of summary uplinks (summaries cover every sample).
    """

    node_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    tier: Literal["device", "gateway", "regional"] = "gateway"
    tenant: str = "default"
    parent: str | None = None
    pipeline: str = "factory"
    summary_every_s: float = Field(default=5.0, gt=0.0)
    decide: DecideConfig = Field(default_factory=DecideConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    uplink: UplinkConfig = Field(default_factory=UplinkConfig)
    sensors: list[SensorConfig] = Field(default_factory=list)
    sources: Annotated[list[SourceConfig], AfterValidator(_one_sim)] = Field(default_factory=list)
    chaos: ChaosConfig | None = None
    status_file: str | None = None


def format_validation_error(exc: ValidationError, where: str) -> str:
    lines = [f"{where}: {exc.error_count()} problem(s)"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"  {path}: {err['msg']}")
    return "\n".join(lines)


def parse_node_config(data: Any, where: str = "node config") -> NodeConfig:
    """Validate ``data`` (a mapping) into a :class:`NodeConfig` or raise ConfigError."""
    try:
        return NodeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None


def load_node_config(path: str | Path) -> NodeConfig:
    """Load a node config from a YAML file; errors name the file and each bad field."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from None
    return parse_node_config(data, where=str(p))

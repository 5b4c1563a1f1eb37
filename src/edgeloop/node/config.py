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


def _filter_problem(topic: str) -> str:
    """Why ``topic`` is not an MQTT subscription filter (empty if it is one)."""
    if not topic or "\x00" in topic:
        return "empty or contains NUL"
    if topic.startswith("$"):
        return "starts with '$' (broker-reserved; shared subscriptions are for hubs)"
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return ""


@dataclass(frozen=True, kw_only=True)
class MqttTlsConfig:
    """TLS to the broker: ``ca_file`` verifies the broker's certificate; ``cert_file`` and
    ``key_file`` (both or neither) are the node's own certificate for mutual TLS."""

    __pydantic_config__ = FORBID_EXTRA
    ca_file: Annotated[str, MinLen(1)]
    cert_file: str | None = None
    key_file: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise FieldProblem("cert_file", "cert_file and key_file go together")


@dataclass(frozen=True, kw_only=True)
class MqttSourceConfig:
    """Sensors publish to the node through an MQTT broker (``node/mqtt_source.py``).

    ``topic`` defaults to ``edgeloop/<tenant>/<node_id>/sensors/#`` and ``client_id`` to
    ``edgeloop-src-<tenant>-<node_id>``: a stable id, so the broker keeps the session
    (subscription and queued QoS 1 messages) for ``session_expiry_s`` while the node is
    down (0: a clean session every time). ``receive_maximum`` bounds the messages the
    broker sends before the node acknowledges them; payloads are JSON records or sensor
    blocks (``node/sensor_payload.py``); a payload without a sensor name takes the last
    ``sensor_levels`` topic levels, joined with ``.``. ``ack: covered`` PUBACKs a message
    once its samples are in committed summary rows (at most ``ack_hold_s`` later than its
    hand-over), ``ack: handover`` right after the hand-over (docs/sources.md).
    ``tls`` and ``username`` / ``password_file`` (the password is read from that file
    when the node starts, never written in the config) authenticate to the broker.
    """

    __pydantic_config__ = FORBID_EXTRA
    type: Literal["mqtt"] = "mqtt"
    host: Annotated[str, MinLen(1)] = "127.0.0.1"
    port: Annotated[int, Ge(1), Le(65535)] = 1883
    client_id: str | None = None
    topic: str | None = None
    qos: Literal[0, 1] = 1
    session_expiry_s: Annotated[int, Ge(0)] = 3600
    keepalive_s: Annotated[int, Gt(0)] = 15
    receive_maximum: Annotated[int, Ge(1), Le(65535)] = 1024
    sensor_levels: Annotated[int, Ge(0), Le(16)] = 1
    max_payload_bytes: Annotated[int, Gt(0)] = 8 * 1024 * 1024
    max_frame_rows: Annotated[int, Gt(0)] = 200_000
    reconnect_min_s: Annotated[float, Gt(0.0)] = 0.1
    reconnect_max_s: Annotated[float, Gt(0.0)] = 10.0
    ack: Literal["covered", "handover"] = "covered"
    ack_hold_s: Annotated[float, Gt(0.0)] = 10.0
    tls: MqttTlsConfig | None = None
    username: str | None = None
    password_file: str | None = None

    def __post_init__(self) -> None:
        if self.topic is not None:
            why = _filter_problem(self.topic)
            if why:
                raise FieldProblem("topic", f"{self.topic!r} is not a topic filter: {why}")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise FieldProblem("reconnect_max_s", "must be >= reconnect_min_s")
        if self.password_file is not None and self.username is None:
            raise FieldProblem("password_file", "needs a username")


SourceConfig = Annotated[
    SimSourceConfig | CsvSourceConfig | HttpSourceConfig | MqttSourceConfig,
    Discriminated("type"),
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
class SamplesConfig:
    """Curated normal windows sent for retraining (``edgeloop.node.samples``).

    Per shadow-measurement period (``measure_every_s``), a seeded reservoir of at most
    ``max_rows`` feature rows of the acting model's window group that scored below
    ``max_score_ratio`` x threshold on machines without an open incident another group
    raised, sent as one ``sample`` document of at most ``max_bytes``.

    The default 1.5 keeps the normal tail (a calibrated model scores 0.75 at three times
    its 99.9 % quantile distance) and leaves out clear anomalies: a cut at or below the
    threshold hands the next model a truncated sample whose own 99.9 % quantile is too
    low, so every retraining would alarm more (``>= 1 / threshold``: every row).
    """

    __pydantic_config__ = FORBID_EXTRA
    max_rows: Annotated[int, Ge(1)] = 256
    max_bytes: Annotated[int, Gt(1024), Le(4 * 1024 * 1024)] = 64 * 1024
    max_score_ratio: Annotated[float, Gt(0.0)] = 1.5
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
    samples: SamplesConfig | None = None  # curated normal windows for retraining


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
        ids = [mqtt_client_id(self, s) for s in self.sources if isinstance(s, MqttSourceConfig)]
        if len(ids) != len(set(ids)):
            raise FieldProblem(
                "sources", "two mqtt sources share a client id (give each its own client_id)"
            )
        if sum(1 for s in self.sources if s.type == "sim") > 1:
            raise FieldProblem(
                "sources", "at most one simulator source per node (each simulates a whole floor)"
            )


def mqtt_client_id(config: NodeConfig, source: MqttSourceConfig) -> str:
    """The MQTT client id of ``source`` (stable across restarts: the session resumes)."""
    return source.client_id or f"edgeloop-src-{config.tenant}-{config.node_id}"


def mqtt_topic(config: NodeConfig, source: MqttSourceConfig) -> str:
    """The topic filter ``source`` subscribes to."""
    return source.topic or f"edgeloop/{config.tenant}/{config.node_id}/sensors/#"


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

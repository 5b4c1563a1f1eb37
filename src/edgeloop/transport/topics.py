"""The MQTT topic layout of edgeloop, one place for building and parsing topics.

Every node has five topics under ``edgeloop/<tenant>/<node>/``:

========== =========== ==================================================================
channel    publisher   what
========== =========== ==================================================================
uplink     node        encoded batches (``codec.encode_batch``), QoS 1
ack        hub         application acks: the (node, epoch) watermark after commit
state      node        the node's reported (actual) state
desired    hub         desired state (config, model version, rollout cohort), retained
presence   node/broker ``online`` on connect; ``offline`` (retained) as the last will
========== =========== ==================================================================

Hub replicas share the uplink load through one shared subscription
``$share/<group>/edgeloop/+/+/uplink``.

>>> NodeTopics("acme", "gw1").uplink
'edgeloop/acme/gw1/uplink'
>>> parse_node_topic("edgeloop/acme/gw1/uplink")
('acme', 'gw1', 'uplink')
>>> shared_uplink_filter("hub")
'$share/hub/edgeloop/+/+/uplink'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgeloop.errors import ConfigError

ROOT = "edgeloop"
Channel = Literal["uplink", "ack", "state", "desired", "presence"]
CHANNELS: tuple[Channel, ...] = ("uplink", "ack", "state", "desired", "presence")
MAX_NAME = 128
"""Longest tenant, node or group name (a topic level)."""

_FORBIDDEN = frozenset("/+#\x00")


def check_name(what: str, name: str) -> str:
    """``name`` if it can be one topic level, else a :class:`ConfigError` naming ``what``.

    A level must be non-empty, at most :data:`MAX_NAME` characters, must not contain
    ``/``, ``+``, ``#`` or NUL and must not start with ``$`` (reserved by brokers).
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{what}: must be a non-empty string (got {name!r})")
    if len(name) > MAX_NAME:
        raise ConfigError(f"{what}: at most {MAX_NAME} characters (got {len(name)})")
    bad = sorted(set(name) & _FORBIDDEN)
    if bad:
        raise ConfigError(f"{what}: {name!r} contains {bad!r}, which MQTT topics reserve")
    if name.startswith("$"):
        raise ConfigError(f"{what}: {name!r} must not start with '$' (reserved by brokers)")
    return name


@dataclass(frozen=True, slots=True)
class NodeTopics:
    """The topics of one node of one tenant (names are checked on construction)."""

    tenant: str
    node: str

    def __post_init__(self) -> None:
        check_name("tenant", self.tenant)
        check_name("node", self.node)

    def topic(self, channel: Channel) -> str:
        if channel not in CHANNELS:
            raise ConfigError(f"channel: {channel!r} is not one of {list(CHANNELS)}")
        return f"{ROOT}/{self.tenant}/{self.node}/{channel}"

    @property
    def uplink(self) -> str:
        return self.topic("uplink")

    @property
    def ack(self) -> str:
        return self.topic("ack")

    @property
    def state(self) -> str:
        return self.topic("state")

    @property
    def desired(self) -> str:
        return self.topic("desired")

    @property
    def presence(self) -> str:
        return self.topic("presence")


def parse_node_topic(topic: str) -> tuple[str, str, Channel]:
    """``(tenant, node, channel)`` of a node topic.

    Raises:
        ValueError: ``topic`` is not ``edgeloop/<tenant>/<node>/<channel>`` (the message
            says which part is wrong).
    """
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != ROOT:
        raise ValueError(f"topic {topic!r}: expected {ROOT}/<tenant>/<node>/<channel>")
    _, tenant, node, channel = parts
    if not tenant or not node:
        raise ValueError(f"topic {topic!r}: empty tenant or node level")
    for c in CHANNELS:
        if channel == c:
            return tenant, node, c
    raise ValueError(f"topic {topic!r}: unknown channel {channel!r}; expected one of {CHANNELS}")


def shared_uplink_filter(group: str, tenant: str | None = None) -> str:
    """The shared subscription through which hub replicas split the uplinks of every
    node (of every tenant, or of ``tenant``)."""
    check_name("group", group)
    level = "+" if tenant is None else check_name("tenant", tenant)
    return f"$share/{group}/{ROOT}/{level}/+/uplink"


__all__ = [
    "CHANNELS",
    "MAX_NAME",
    "ROOT",
    "Channel",
    "NodeTopics",
    "check_name",
    "parse_node_topic",
    "shared_uplink_filter",
]

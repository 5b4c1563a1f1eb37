"""The MQTT topic layout: building, parsing and checking names."""

from __future__ import annotations

import pytest

from edgeloop.errors import ConfigError
from edgeloop.transport.topics import NodeTopics, parse_node_topic, shared_uplink_filter


def test_every_channel_of_a_node() -> None:
    t = NodeTopics("acme", "gw-7")
    assert [t.uplink, t.ack, t.state, t.desired, t.presence] == [
        f"edgeloop/acme/gw-7/{c}" for c in ("uplink", "ack", "state", "desired", "presence")
    ]
    for topic in (t.uplink, t.presence):
        assert parse_node_topic(topic)[:2] == ("acme", "gw-7")


@pytest.mark.parametrize(
    ("tenant", "node", "what"),
    [
        ("", "gw1", "tenant"),
        ("a/b", "gw1", "tenant"),
        ("t", "gw#", "node"),
        ("t", "g+1", "node"),
        ("$SYS", "gw1", "tenant"),
        ("t", "x" * 129, "node"),
    ],
)
def test_names_that_cannot_be_a_topic_level_are_refused(tenant: str, node: str, what: str) -> None:
    with pytest.raises(ConfigError, match=f"^{what}:"):
        NodeTopics(tenant, node)


@pytest.mark.parametrize(
    ("topic", "why"),
    [
        ("edgeloop/t/n", "expected"),
        ("other/t/n/uplink", "expected"),
        ("edgeloop/t//uplink", "empty"),
        ("edgeloop/t/n/telemetry", "unknown channel"),
    ],
)
def test_parse_says_what_is_wrong(topic: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_node_topic(topic)


def test_shared_subscription_of_every_tenant_or_one() -> None:
    assert shared_uplink_filter("hub") == "$share/hub/edgeloop/+/+/uplink"
    assert shared_uplink_filter("hub", "acme") == "$share/hub/edgeloop/acme/+/uplink"
    with pytest.raises(ConfigError, match="group"):
        shared_uplink_filter("a/b")

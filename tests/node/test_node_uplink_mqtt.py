"""A node config can name an MQTT uplink; the plan carries it; the node builds it."""

from __future__ import annotations

import pytest

from edgeloop.errors import ConfigError
from edgeloop.node.build import build_transport
from edgeloop.node.config import parse_node_config
from edgeloop.node.plan import make_plan, plan_from_json, plan_to_json


def _cfg(**uplink: object) -> dict[str, object]:
    return {"node_id": "gw1", "tenant": "acme", "uplink": {"kind": "mqtt", **uplink}}


def test_mqtt_uplink_is_parsed_with_its_defaults() -> None:
    cfg = parse_node_config(_cfg(host="broker.local"))
    up = cfg.uplink
    assert (up.kind, up.host, up.port, up.tenant, up.keepalive_s) == (
        "mqtt",
        "broker.local",
        1883,
        None,
        15,
    )


def test_mqtt_uplink_without_host_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"uplink\.host: required when uplink\.kind is 'mqtt'"):
        parse_node_config(_cfg())


@pytest.mark.parametrize("port", [0, 65536, "x"])
def test_mqtt_uplink_bad_port_names_the_field(port: object) -> None:
    with pytest.raises(ConfigError, match=r"uplink\.port"):
        parse_node_config(_cfg(host="h", port=port))


def test_tenant_that_cannot_be_a_topic_level_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"uplink\.tenant: .*'a/b' contains"):
        parse_node_config(_cfg(host="h", tenant="a/b"))
    bad = {"node_id": "gw1", "tenant": "$sys", "uplink": {"kind": "mqtt", "host": "h"}}
    with pytest.raises(ConfigError, match=r"tenant: .*must not start with '\$'"):
        parse_node_config(bad)


def test_build_transport_makes_an_mqtt_transport_on_the_node_topics() -> None:
    from edgeloop.transport.mqtt import MqttTransport

    cfg = parse_node_config(_cfg(host="127.0.0.1", port=1999, timeout_s=2.5))
    t = build_transport(cfg)
    assert isinstance(t, MqttTransport)
    assert (t.host, t.port, t.node) == ("127.0.0.1", 1999, "gw1")
    assert t.topics.uplink == "edgeloop/acme/gw1/uplink"  # the node's tenant by default
    cfg = parse_node_config(_cfg(host="h", tenant="other"))
    t2 = build_transport(cfg)
    assert isinstance(t2, MqttTransport)
    assert t2.topics.ack == "edgeloop/other/gw1/ack"


def test_the_plan_carries_the_mqtt_uplink() -> None:
    plan = make_plan(parse_node_config(_cfg(host="b", port=1884, tenant="t1")))
    back = plan_from_json(plan_to_json(plan))
    assert back.config.uplink == plan.config.uplink
    assert (back.config.uplink.host, back.config.uplink.port) == ("b", 1884)

"""The ``type: mqtt`` source in a node config: defaults, field errors, the plan."""

from __future__ import annotations

from typing import Any

import pytest

from edgeloop.errors import ConfigError
from edgeloop.node.config import (
    MqttSourceConfig,
    mqtt_client_id,
    mqtt_topic,
    parse_node_config,
)
from edgeloop.node.plan import make_plan, plan_from_json, plan_to_json


def cfg(*sources: dict[str, Any]) -> dict[str, Any]:
    return {"node_id": "gw1", "tenant": "acme", "sources": list(sources)}


def test_defaults_name_the_node_topics_and_a_stable_client_id() -> None:
    c = parse_node_config(cfg({"type": "mqtt"}))
    src = c.sources[0]
    assert isinstance(src, MqttSourceConfig)
    assert (src.host, src.port, src.qos, src.session_expiry_s) == ("127.0.0.1", 1883, 1, 3600)
    assert mqtt_topic(c, src) == "edgeloop/acme/gw1/sensors/#"
    assert mqtt_client_id(c, src) == "edgeloop-src-acme-gw1"
    custom = parse_node_config(cfg({"type": "mqtt", "topic": "plant/+/vib", "client_id": "x"}))
    src = custom.sources[0]
    assert isinstance(src, MqttSourceConfig)
    assert (mqtt_topic(custom, src), mqtt_client_id(custom, src)) == ("plant/+/vib", "x")


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ({"qos": 2}, r"sources\.0\.mqtt\.qos"),
        ({"port": 0}, r"sources\.0\.mqtt\.port"),
        ({"receive_maximum": 0}, r"sources\.0\.mqtt\.receive_maximum"),
        ({"topic": "a/#/b"}, r"topic: 'a/#/b' is not a topic filter: '#' must be"),
        ({"topic": "a/b+"}, r"topic: .*'\+' must be a whole level"),
        ({"topic": "$share/g/a"}, r"topic: .*starts with '\$'"),
        ({"reconnect_min_s": 5, "reconnect_max_s": 1}, r"reconnect_max_s: must be >="),
        ({"bogus": 1}, r"bogus"),
    ],
)
def test_bad_fields_are_named(source: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_node_config(cfg({"type": "mqtt", **source}))


def test_two_sources_on_one_client_id_are_refused() -> None:
    with pytest.raises(ConfigError, match="two mqtt sources share a client id"):
        parse_node_config(cfg({"type": "mqtt"}, {"type": "mqtt", "port": 1884}))
    ok = parse_node_config(cfg({"type": "mqtt"}, {"type": "mqtt", "client_id": "second"}))
    assert len(ok.sources) == 2


def test_the_plan_carries_the_source() -> None:
    plan = make_plan(parse_node_config(cfg({"type": "mqtt", "qos": 0, "sensor_levels": 2})))
    back = plan_from_json(plan_to_json(plan))
    assert back.config.sources == plan.config.sources
    src = back.config.sources[0]
    assert isinstance(src, MqttSourceConfig) and (src.qos, src.sensor_levels) == (0, 2)

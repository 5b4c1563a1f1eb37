"""Bad input on the wire: replayed, forged and broken uplink batches.

:class:`WireTap` is a plain MQTT client of the chaos suite (not a node, not a hub). It
subscribes to every uplink of a tenant (a normal subscription: the broker sends it a
copy of what the hubs' shared subscription receives) and keeps the batches it saw, so
it can later

* **replay** them: the same bytes, the same correlation data, on the same topic, as a
  broker or a node would after a lost acknowledgement — the hub must store each entry
  once (its ledger on (node, epoch, seq));
* **forge** batches: a real batch of one node published on another node's topic
  (a node speaking for another), a truncated batch, bytes that are no batch at all —
  the hub must dead-letter each with its reason, and keep running.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paho.mqtt.subscribeoptions import SubscribeOptions

from edgeloop.transport.mqtt_session import correlation_of, new_client, publish_properties
from edgeloop.transport.topics import NodeTopics, parse_node_topic

KEEP = 200


@dataclass(frozen=True, slots=True)
class Captured:
    topic: str
    payload: bytes
    correlation: bytes | None


class WireTap:
    """Copies of a tenant's uplinks, and a way to put bytes back on the wire."""

    def __init__(self, host: str, port: int, tenant: str, timeout_s: float = 10.0) -> None:
        self.tenant = tenant
        self.seen: list[Captured] = []
        self.published = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = new_client(f"chaos-tap-{uuid.uuid4().hex[:10]}")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.close()
            raise RuntimeError(f"wire tap: not subscribed on {host}:{port} in {timeout_s:g} s")

    def _on_connect(self, client: Any, *_: Any) -> None:
        # No-local: what the tap itself publishes (replays, forgeries) is not captured.
        options = SubscribeOptions(qos=1, noLocal=True)
        client.subscribe(f"edgeloop/{self.tenant}/+/uplink", options=options)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self._lock:
            if len(self.seen) < KEEP:
                self.seen.append(
                    Captured(msg.topic, bytes(msg.payload), correlation_of(msg.properties))
                )

    def captured(self) -> list[Captured]:
        with self._lock:
            return list(self.seen)

    def _publish(self, topic: str, payload: bytes, correlation: bytes | None) -> None:
        info = self.client.publish(
            topic, payload, qos=1, properties=publish_properties(correlation)
        )
        info.wait_for_publish(10.0)
        self.published += 1

    def replay(self, first: int = 5, last: int = 5) -> int:
        """Publish again the first and the last batches seen; returns how many."""
        seen = self.captured()
        chosen = seen[:first] + seen[max(first, len(seen) - last) :]
        for c in chosen:
            self._publish(c.topic, c.payload, c.correlation)
        return len(chosen)

    def forge(self, nodes: list[str]) -> dict[str, int]:
        """Publish forged and broken batches; returns how many of each kind.

        * ``other_node``: a real batch of ``nodes[0]`` on the topic of ``nodes[1]``;
        * ``truncated``: the first half of a real batch, on its own topic;
        * ``garbage``: bytes that are no batch, on a node's topic.
        """
        seen = self.captured()
        done: dict[str, int] = {}
        own = [c for c in seen if parse_node_topic(c.topic)[1] == nodes[0]]
        count: Callable[[str], None] = lambda k: done.__setitem__(k, done.get(k, 0) + 1)  # noqa: E731
        if own and len(nodes) > 1:
            victim = NodeTopics(self.tenant, nodes[1]).uplink
            self._publish(victim, own[-1].payload, None)
            count("other_node")
        if own:
            self._publish(own[0].topic, own[0].payload[: len(own[0].payload) // 2], None)
            count("truncated")
        self._publish(NodeTopics(self.tenant, nodes[0]).uplink, b"\x00not a batch\xff" * 8, None)
        count("garbage")
        return done

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


__all__ = ["Captured", "WireTap"]

"""Chaos for the uplink and the wire: network partitions, lost acks, corrupt payloads.

:class:`ChaosTransport` wraps any :class:`~edgeloop.transport.base.Transport` and makes
it fail the way real links fail, on a seeded, clock-driven schedule:

* during a partition ``send`` raises :class:`~edgeloop.errors.LinkDown` without touching
  the inner transport (nothing reaches the receiver);
* with ``ack_loss`` the batch *is* delivered and committed by the receiver, but the ack
  is lost on the way back: ``send`` raises ``LinkDown`` and the matching ack never comes
  out of ``receive``. The node sends the same entries again, which exercises the
  receiver's idempotence on (node, sequence).

:func:`corrupt` and its helpers damage encoded payloads for bad-input tests.

>>> sched = PartitionSchedule([(10.0, 20.0)], start_ns=0)
>>> sched.is_down(15 * 10**9), sched.is_down(20 * 10**9)
(True, False)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from enum import StrEnum

import msgpack
import numpy as np

from edgeloop.errors import ConfigError, LinkDown
from edgeloop.transport.base import Batch, Message, Transport

Clock = Callable[[], int]


class PartitionSchedule:
    """When the link is cut, as ``(start_s, end_s)`` windows relative to ``start_ns``.

    A window covers ``start <= t < end``. Windows may be given in any order and may
    overlap.

    Args:
        windows: ``(start_s, end_s)`` pairs, seconds from ``start_ns``.
        start_ns: the instant the windows are relative to (e.g. the run's start).

    Raises:
        ConfigError: a window is negative, empty or reversed (names its index).
    """

    def __init__(self, windows: Sequence[tuple[float, float]], start_ns: int = 0) -> None:
        spans = []
        for i, w in enumerate(windows):
            try:
                a, b = (float(x) for x in w)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"partitions[{i}]: expected (start_s, end_s), got {w!r}"
                ) from None
            if not 0 <= a < b:
                raise ConfigError(f"partitions[{i}]: need 0 <= start_s < end_s (got {a:g}, {b:g})")
            spans.append((start_ns + round(a * 1e9), start_ns + round(b * 1e9)))
        spans.sort()
        self.start_ns = start_ns
        self.windows_ns: tuple[tuple[int, int], ...] = tuple(spans)

    def is_down(self, now_ns: int) -> bool:
        """True while ``now_ns`` falls inside a partition window."""
        return any(a <= now_ns < b for a, b in self.windows_ns)

    def up_at(self, now_ns: int) -> int:
        """The first instant at or after ``now_ns`` when the link is up."""
        t = now_ns
        for a, b in self.windows_ns:  # sorted by start: one pass covers chained windows
            if a <= t < b:
                t = b
        return t

    def down_s(self) -> float:
        """Total partitioned time in seconds (overlaps counted once)."""
        total, reach = 0, None
        for a, b in self.windows_ns:
            if reach is not None and a < reach:
                a = reach
            if b > a:
                total += b - a
            reach = b if reach is None else max(reach, b)
        return total / 1e9


class ChaosTransport:
    """A :class:`Transport` that partitions and drops acks on schedule.

    Args:
        inner: the real transport.
        schedule: partition windows.
        clock: current time in ns (the simulator's or the wall clock).
        ack_loss: probability in [0, 1] that a delivered batch's ack is lost.
        seed: seeds the ack-loss draws, so a run is reproducible.

    Attributes:
        sends: ``send`` calls.
        blocked: sends refused by a partition (the inner transport was not called).
        delivered: sends the inner transport completed (the receiver committed them).
        acks_dropped: delivered sends whose ack was dropped.
    """

    def __init__(
        self,
        inner: Transport,
        schedule: PartitionSchedule,
        clock: Clock,
        ack_loss: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= ack_loss <= 1.0:
            raise ConfigError(f"ack_loss: must be in [0, 1] (got {ack_loss})")
        self.inner = inner
        self.schedule = schedule
        self.ack_loss = ack_loss
        self._clock = clock
        self._rng = np.random.default_rng([seed, 0xC4A05])
        # Acks still to swallow, per node. Counted before the inner send, so an ack that
        # the inner transport queues before ``send`` returns is caught too.
        self._swallow: Counter[str] = Counter()
        self.sends = 0
        self.blocked = 0
        self.delivered = 0
        self.acks_dropped = 0

    async def send(self, batch: Batch) -> None:
        """Send through the inner transport unless partitioned; maybe lose the ack.

        Raises:
            LinkDown: partitioned (nothing sent) or ack lost (sent and committed).
        """
        self.sends += 1
        now = self._clock()
        if self.schedule.is_down(now):
            self.blocked += 1
            up = (self.schedule.up_at(now) - now) / 1e9
            raise LinkDown(f"link partitioned (chaos), up again in {up:.3g} s")
        lose_ack = self.ack_loss > 0 and bool(self._rng.random() < self.ack_loss)
        if lose_ack:
            self._swallow[batch.node] += 1
        try:
            await self.inner.send(batch)
        except BaseException:
            if lose_ack:
                self._swallow[batch.node] -= 1
            raise
        self.delivered += 1
        if lose_ack:
            self.acks_dropped += 1
            last = batch.entries[-1].seq if batch.entries else batch.after_seq
            raise LinkDown(f"ack lost (chaos): batch up to seq {last} was delivered")

    async def receive(self) -> AsyncIterator[Message]:
        """The inner transport's messages, minus the acks this layer dropped."""
        async for msg in self.inner.receive():
            if self._swallow[msg.node] > 0:
                self._swallow[msg.node] -= 1
                continue
            yield msg

    async def close(self) -> None:
        await self.inner.close()

    def stats(self) -> dict[str, int]:
        """The counters as a dict (for status reports)."""
        return {
            "sends": self.sends,
            "blocked": self.blocked,
            "delivered": self.delivered,
            "acks_dropped": self.acks_dropped,
        }


# --- corrupt payloads ------------------------------------------------------------------


class Corruption(StrEnum):
    """Ways :func:`corrupt` damages a payload."""

    TRUNCATE = "truncate"
    FLIP = "flip"
    WRONG_VERSION = "wrong_version"


def truncate(payload: bytes, rng: np.random.Generator) -> bytes:
    """A strict prefix of ``payload`` (possibly empty), cut at a random point."""
    if not payload:
        raise ValueError("payload: cannot truncate an empty payload")
    return payload[: int(rng.integers(0, len(payload)))]


def flip_bytes(payload: bytes, rng: np.random.Generator, n: int | None = None) -> bytes:
    """``payload`` with ``n`` distinct bytes (default 1-8) XORed with non-zero masks."""
    if not payload:
        raise ValueError("payload: cannot flip bytes of an empty payload")
    k = min(len(payload), n if n is not None else int(rng.integers(1, 9)))
    out = np.frombuffer(payload, np.uint8).copy()
    pos = rng.choice(len(payload), size=k, replace=False)
    out[pos] ^= rng.integers(1, 256, size=k, dtype=np.uint8)
    return out.tobytes()


def wrong_version(payload: bytes, version: int = 999) -> bytes:
    """The same msgpack envelope with its schema version ``"v"`` set to ``version``
    (``version + 1`` if it already was ``version``).

    Raises:
        ValueError: ``payload`` is not a msgpack map with a ``"v"`` key.
    """
    try:
        env = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"payload: not a msgpack envelope ({exc})") from None
    if not isinstance(env, dict) or "v" not in env:
        raise ValueError("payload: not a msgpack map with a 'v' key")
    env["v"] = version if env["v"] != version else version + 1
    out: bytes = msgpack.packb(env, use_bin_type=True)
    return out


def corrupt(
    payload: bytes, rng: np.random.Generator, kind: Corruption | str | None = None
) -> bytes:
    """``payload`` damaged by ``kind`` (random when None); never equal to the input.

    ``wrong_version`` needs a msgpack envelope; a random choice falls back to the other
    kinds for payloads that are not one.
    """
    if kind is None:
        kinds = list(Corruption)
        try:
            wrong_version(payload)
        except ValueError:
            kinds.remove(Corruption.WRONG_VERSION)
        kind = kinds[int(rng.integers(len(kinds)))]
    kind = Corruption(kind)
    if kind == Corruption.TRUNCATE:
        return truncate(payload, rng)
    if kind == Corruption.FLIP:
        return flip_bytes(payload, rng)
    return wrong_version(payload)

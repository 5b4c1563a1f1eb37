"""The uplink's window: which batches are out, unacknowledged, and where to resend from.

Sans-I/O bookkeeping for :meth:`NodeRuntime._uplink_loop
<edgeloop.node.runtime.NodeRuntime>`, a go-back-N sender over the outbox:

* the next batch is claimed after the last *sent* seq (:attr:`UplinkWindow.sent`), not the
  last acknowledged one, while the window has room: at most ``max_batches`` batches and
  ``max_bytes`` payload bytes sent and not yet acknowledged;
* acks are cumulative watermarks: one releases every batch it covers;
* a failure (the link went down, or the oldest batch waited too long for its ack)
  rewinds to the last acknowledged seq: the batches after it go again, in order. The
  receiver's idempotence on (node, epoch, seq) makes resends harmless;
* an ack that answers a batch without covering it (``Ack.answers_seq > Ack.upto_seq``:
  the receiver refused to commit it ahead of an earlier batch it has not got) rewinds
  too, once per watermark, so a burst of such refusals costs one resend.

Until the receiver has answered once, one batch at a time: the first batch of an outbox
epoch tells the receiver where the epoch starts, and must not be overtaken.

>>> w = UplinkWindow(max_batches=2, max_bytes=1 << 20)
>>> w.has_room(), w.sent
(True, 0)
>>> w.on_sent(last_seq=10, nbytes=100, now=0.0); w.has_room()  # not confirmed yet
False
>>> w.on_ack(10), w.sent, w.has_room()
(1, 10, True)
>>> w.on_sent(20, 100, 1.0); w.on_sent(30, 100, 1.0); w.has_room()
False
>>> w.on_ack(20, answers_seq=30)  # batch 21..30 refused: go back to 20
1
>>> w.sent, w.in_flight, w.rewinds
(20, 0, 1)
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from edgeloop.errors import ConfigError


@dataclass(frozen=True, slots=True)
class InFlight:
    """A batch sent and not yet acknowledged."""

    last_seq: int
    nbytes: int
    sent_at: float


class UplinkWindow:
    """Go-back-N state of one node's uplink (see the module docstring).

    Args:
        max_batches: batches sent and unacknowledged, at most (>= 1).
        max_bytes: their payload bytes, at most (>= 1); one batch is always allowed,
            however large.
        acked_upto: the outbox's acknowledged seq to start from.

    Attributes:
        acked: the highest seq the receiver has acknowledged.
        sent: the highest seq sent in the current pass; the next claim starts after it.
        rewinds: how often the window went back to ``acked`` (failures and refusals).
        confirmed: the receiver has answered at least once (the window opens).
    """

    def __init__(self, max_batches: int, max_bytes: int, acked_upto: int = 0) -> None:
        if max_batches < 1:
            raise ConfigError(f"window_batches: must be >= 1 (got {max_batches})")
        if max_bytes < 1:
            raise ConfigError(f"window_bytes: must be >= 1 (got {max_bytes})")
        self.max_batches = max_batches
        self.max_bytes = max_bytes
        self.acked = self.sent = acked_upto
        self.rewinds = 0
        self.confirmed = False
        self._flight: collections.deque[InFlight] = collections.deque()
        self._bytes = 0
        self._refused_at = -1  # the watermark of the last refusal acted upon

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet acknowledged."""
        return len(self._flight)

    @property
    def bytes_in_flight(self) -> int:
        return self._bytes

    def has_room(self) -> bool:
        """May another batch go out now?"""
        if not self._flight:
            return True
        if not self.confirmed:
            return False
        return len(self._flight) < self.max_batches and self._bytes < self.max_bytes

    def on_sent(self, last_seq: int, nbytes: int, now: float) -> None:
        """Record a batch handed to the transport (its entries end at ``last_seq``)."""
        self._flight.append(InFlight(last_seq, nbytes, now))
        self._bytes += nbytes
        self.sent = max(self.sent, last_seq)

    def on_ack(self, upto_seq: int, answers_seq: int = 0) -> int:
        """Apply an ack; returns how many in-flight batches it released.

        Args:
            upto_seq: the receiver's watermark.
            answers_seq: the last seq of the batch this ack answers (0: unknown). Above
                ``upto_seq``, the receiver did not commit that batch: go back and resend.
        """
        self.confirmed = True
        released = 0
        if upto_seq > self.acked:
            self.acked = upto_seq
            self.sent = max(self.sent, upto_seq)
            while self._flight and self._flight[0].last_seq <= upto_seq:
                self._bytes -= self._flight.popleft().nbytes
                released += 1
        if answers_seq > max(upto_seq, self.acked) and upto_seq > self._refused_at:
            # Later refusals at the same watermark answer batches of the pass already
            # rewound: acting on each would resend the same entries again and again.
            self._refused_at = upto_seq
            self.rewind()
        return released

    def rewind(self) -> None:
        """Forget what is in flight; the next claim starts after ``acked`` again."""
        self._flight.clear()
        self._bytes = 0
        self.sent = self.acked
        self.rewinds += 1

    def overdue(self, now: float, timeout_s: float) -> bool:
        """Has the oldest batch in flight waited more than ``timeout_s`` for its ack?"""
        return bool(self._flight) and now - self._flight[0].sent_at > timeout_s

    def wait_s(self, now: float, timeout_s: float, idle_s: float) -> float:
        """How long the sender may sleep: until the oldest batch is overdue, or
        ``idle_s`` when nothing is in flight."""
        if not self._flight:
            return idle_s
        return max(0.0, self._flight[0].sent_at + timeout_s - now)


__all__ = ["InFlight", "UplinkWindow"]

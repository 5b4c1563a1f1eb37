"""In-process transport: the node hands encoded batches straight to a receiver function.

Used by the simulator, tests and single-process deployments. It still encodes and
decodes every batch, so byte counts and codec behaviour are the same as on a wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from edgeloop.errors import LinkDown
from edgeloop.telemetry import codec
from edgeloop.transport.base import Batch, Message

Handler = Callable[[bytes], bytes]
"""Receives an encoded batch, commits it, returns the encoded ack."""


class InProcTransport:
    """Calls ``handler`` (e.g. the hub's ingest) directly; the ack is queued for receive."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._acks: asyncio.Queue[Message] = asyncio.Queue()
        self.bytes_sent = 0
        self.batches_sent = 0
        self.connected = True

    async def send(self, batch: Batch) -> None:
        if not self.connected:
            raise LinkDown("in-process link is disconnected")
        data = codec.encode_batch(batch)
        self.bytes_sent += len(data)
        self.batches_sent += 1
        reply = self._handler(data)
        await self._acks.put(codec.decode_ack(reply))

    async def receive(self) -> AsyncIterator[Message]:
        while True:
            yield await self._acks.get()

    async def close(self) -> None:
        self.connected = False

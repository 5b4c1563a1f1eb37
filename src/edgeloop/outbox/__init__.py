"""Durable store-and-forward: append, claim, ack; priorities and a disk budget."""

from edgeloop.outbox.base import (
    Entry,
    EvictionStats,
    NewEntry,
    OutboxStats,
    OutboxStore,
    Priority,
)
from edgeloop.outbox.factory import open_outbox
from edgeloop.outbox.memory import MemoryOutbox
from edgeloop.outbox.sqlite import SqliteOutbox

__all__ = [
    "Entry",
    "EvictionStats",
    "MemoryOutbox",
    "NewEntry",
    "OutboxStats",
    "OutboxStore",
    "Priority",
    "SqliteOutbox",
    "open_outbox",
]

"""Durable store-and-forward: append, claim, ack; priorities and a disk budget."""

from edgeloop.outbox.base import (
    Entry,
    EvictionStats,
    NewEntry,
    OutboxStats,
    OutboxStore,
    Priority,
)

__all__ = ["Entry", "EvictionStats", "NewEntry", "OutboxStats", "OutboxStore", "Priority"]

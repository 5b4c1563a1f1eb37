"""Choose an outbox store from a URL (the ``outbox.url`` of a node config).

* ``memory://`` — :class:`~edgeloop.outbox.memory.MemoryOutbox` (not durable).
* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` —
  :class:`~edgeloop.outbox.sqlite.SqliteOutbox`; the path is everything after
  ``sqlite:///``, as in SQLAlchemy URLs. An optional ``?synchronous=FULL`` (or
  ``NORMAL``, ``EXTRA``) chooses the durability.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from edgeloop.errors import ConfigError
from edgeloop.outbox.base import OutboxStore
from edgeloop.outbox.memory import MemoryOutbox
from edgeloop.outbox.sqlite import SqliteOutbox

_SQLITE = "sqlite:///"


def open_outbox(url: str, budget_bytes: int | None = None) -> OutboxStore:
    """Open the outbox named by ``url``.

    Args:
        url: ``memory://`` or ``sqlite:///<path>[?synchronous=NORMAL|FULL|EXTRA]``.
        budget_bytes: the most payload bytes held at once (``None``: unbounded).

    Returns:
        The store; the caller closes it.

    Raises:
        ConfigError: the URL (naming it and what is wrong) or the budget is invalid.
        OutboxError: a SQLite file cannot be opened (naming the path and the cause).

    >>> box = open_outbox("memory://", budget_bytes=1 << 20)
    >>> type(box).__name__, box.stats().next_seq
    ('MemoryOutbox', 1)
    """
    if not isinstance(url, str):
        raise ConfigError(f"outbox.url: must be a string, got {url!r}")
    if url == "memory://":
        return MemoryOutbox(budget_bytes)
    if url.startswith(_SQLITE):
        rest = url[len(_SQLITE) :]
        path, _, query = rest.partition("?")
        if not path:
            raise ConfigError(f"outbox.url: {url!r} has no file path after {_SQLITE!r}")
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
        unknown = sorted(set(options) - {"synchronous"})
        if unknown:
            raise ConfigError(f"outbox.url: {url!r}: unknown option(s) {unknown}")
        return SqliteOutbox(
            path, budget_bytes=budget_bytes, synchronous=options.get("synchronous", "NORMAL")
        )
    raise ConfigError(
        f"outbox.url: {url!r} is not supported (use 'memory://' or 'sqlite:///<path>')"
    )

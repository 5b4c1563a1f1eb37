"""Persistence of the model registry and its artifacts (SQLite or PostgreSQL).

The registry is the pure, event-sourced :class:`~edgeloop.registry.ModelRegistry`; this
module only stores its events and rebuilds it from them:

* a command (:meth:`ModelStore.command`) runs inside one control-plane transaction
  (:func:`control`): read the events committed since the cached state, apply the pure
  command, append its events, commit. Only then does the cache move. Two hub processes
  cannot interleave: the transaction holds the control-plane lock (an advisory lock on
  PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), and ``model_events.seq`` is a primary key
  besides.
* a read (:meth:`ModelStore.registry`) applies the events committed since the cached
  state (none, usually: one indexed query), so a replica sees what another one wrote.
* after a restart the first read replays the whole log: the deployment history, aliases
  and champion history come back exactly (``ModelRegistry.replay``).

Artifacts are content-addressed (``sha256:<hex>``), stored once in chunks of
:data:`~edgeloop.hub.model_tables.CHUNK` bytes; :meth:`ModelStore.read_artifact` reads
only the chunks a byte range covers.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, insert, select, text

from edgeloop.hub.model_tables import CHUNK, artifact_chunks, artifacts, model_events
from edgeloop.registry import DeploymentEvent, ModelRegistry, RegistryError, artifact_id

if TYPE_CHECKING:
    from edgeloop.hub.store import HubStore

_CONTROL_LOCK = 0x6564_6765_6374_726C  # "edgectrl": control-plane writes, one at a time

Command = Callable[[ModelRegistry], tuple[ModelRegistry, tuple[DeploymentEvent, ...]]]
"""A pure registry command bound to its arguments: state in, (new state, events) out."""


@contextlib.contextmanager
def control(store: HubStore) -> Iterator[Connection]:
    """One control-plane write transaction (registry, fleet, rollouts), serialized
    across threads and hub processes; committed when the block exits cleanly."""
    # The control plane shares the store's connections and its write transactions
    # (BEGIN IMMEDIATE on SQLite; the one connection of an in-memory database).
    with store._write() as conn:
        if store.backend == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CONTROL_LOCK})
        yield conn


@contextlib.contextmanager
def reading(store: HubStore) -> Iterator[Connection]:
    """A read-only connection of the store."""
    with store._read() as conn:
        yield conn


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """A stored artifact: its id, size and chunk size."""

    id: str
    size: int
    chunk_size: int


class ModelStore:
    """The registry's events and the artifacts, in the hub store's database.

    Args:
        store: the hub store (its schema upgraded: ``HubStore.open``).
    """

    def __init__(self, store: HubStore) -> None:
        self.store = store
        self._cache = ModelRegistry()
        self._lock = threading.Lock()

    # -- registry ---------------------------------------------------------------------------
    def registry(self, conn: Connection | None = None) -> ModelRegistry:
        """The registry as committed now (cached; new events applied on each call), or
        as ``conn``'s transaction sees it."""
        if conn is None:
            with reading(self.store) as c:
                return self._load(c, remember=True)
        return self._load(conn, remember=False)

    def _load(self, conn: Connection, *, remember: bool) -> ModelRegistry:
        """The cached state plus the events ``conn`` sees after it. Only committed
        events may be remembered: inside a write transaction (``remember=False``) the
        events may be this transaction's own, not yet committed."""
        cached = self._cache
        rows = conn.execute(
            select(model_events)
            .where(model_events.c.seq > len(cached.events))
            .order_by(model_events.c.seq)
        ).mappings()
        new = [DeploymentEvent.from_dict(dict(r), f"model_events[{r['seq']}]") for r in rows]
        if not new:
            return cached
        state = cached.apply(new)
        if remember:
            self._remember(state)
        return state

    def _remember(self, state: ModelRegistry) -> None:
        with self._lock:
            if len(state.events) > len(self._cache.events):
                self._cache = state

    def command(
        self, cmd: Command, conn: Connection | None = None
    ) -> tuple[ModelRegistry, tuple[DeploymentEvent, ...]]:
        """Run a pure registry command and append its events, in one transaction.

        Args:
            cmd: e.g. ``lambda r: r.promote("v2", now, "alice")``.
            conn: a :func:`control` transaction to join (the caller commits); by default
                one of its own.

        Raises:
            RegistryError, ManifestError, VerificationError: the command refused (nothing
                was written).
        """
        if conn is None:
            with control(self.store) as c:
                state, events = self._command(cmd, c)
            self._remember(state)
            return state, events
        # Joined transaction: the caller commits; the cache moves on the next read.
        return self._command(cmd, conn)

    def _command(
        self, cmd: Command, conn: Connection
    ) -> tuple[ModelRegistry, tuple[DeploymentEvent, ...]]:
        state, events = cmd(self._load(conn, remember=False))
        if events:
            conn.execute(insert(model_events), [_event_row(e) for e in events])
        return state, events

    # -- artifacts --------------------------------------------------------------------------
    def put_artifact(self, data: bytes, now_ns: int, conn: Connection | None = None) -> str:
        """Store artifact bytes under their content address; return it. Idempotent: the
        same bytes again are not stored twice."""
        aid = artifact_id(data)
        if conn is None:
            with control(self.store) as c:
                self._put(c, aid, data, now_ns)
        else:
            self._put(conn, aid, data, now_ns)
        return aid

    def _put(self, conn: Connection, aid: str, data: bytes, now_ns: int) -> None:
        if conn.execute(select(artifacts.c.id).where(artifacts.c.id == aid)).first():
            return
        conn.execute(
            insert(artifacts),
            [{"id": aid, "size": len(data), "chunk_size": CHUNK, "created_ns": now_ns}],
        )
        chunks = [
            {"artifact": aid, "idx": i, "data": data[off : off + CHUNK]}
            for i, off in enumerate(range(0, len(data), CHUNK))
        ]
        if chunks:
            conn.execute(insert(artifact_chunks), chunks)

    def artifact(self, aid: str) -> ArtifactInfo | None:
        """The stored artifact ``aid``, or ``None``."""
        with reading(self.store) as conn:
            row = conn.execute(
                select(artifacts.c.id, artifacts.c.size, artifacts.c.chunk_size).where(
                    artifacts.c.id == aid
                )
            ).first()
        return None if row is None else ArtifactInfo(row.id, row.size, row.chunk_size)

    def artifact_count(self) -> int:
        """How many artifacts are stored."""
        with reading(self.store) as conn:
            return int(conn.execute(select(func.count()).select_from(artifacts)).scalar_one())

    def read_artifact(self, info: ArtifactInfo, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of an artifact (``0 <= start <= end <= size``), reading
        only the chunks they cover.

        Raises:
            RegistryError: the range is outside the artifact, or chunks are missing.
        """
        if not 0 <= start <= end <= info.size:
            raise RegistryError(
                f"range: [{start}, {end}) is outside artifact {info.id} of {info.size} bytes"
            )
        if start == end:
            return b""
        cs = info.chunk_size
        first, last = start // cs, (end - 1) // cs
        with reading(self.store) as conn:
            rows = conn.execute(
                select(artifact_chunks.c.idx, artifact_chunks.c.data)
                .where(
                    artifact_chunks.c.artifact == info.id,
                    artifact_chunks.c.idx.between(first, last),
                )
                .order_by(artifact_chunks.c.idx)
            ).all()
        if [r.idx for r in rows] != list(range(first, last + 1)):
            raise RegistryError(f"artifact {info.id}: chunks {first}..{last} are not all stored")
        blob = b"".join(bytes(r.data) for r in rows)
        return blob[start - first * cs : end - first * cs]


def _event_row(e: DeploymentEvent) -> dict[str, object]:
    row = e.to_dict()
    row["detail"] = dict(e.detail)
    return row


__all__ = ["ArtifactInfo", "Command", "ModelStore", "control", "reading"]

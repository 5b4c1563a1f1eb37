"""The model registry as pure, event-sourced state.

:class:`ModelRegistry` is an immutable value: versions (signed manifests), aliases
(``champion``, ``challenger`` and free-form names) and the champion history. Every
command (:meth:`~ModelRegistry.register`, :meth:`~ModelRegistry.set_alias`,
:meth:`~ModelRegistry.promote`, :meth:`~ModelRegistry.rollback`, ...) validates against
the current state and returns the new state together with the
:class:`DeploymentEvent` records that produced it. The state is nothing but the fold of
its events (:meth:`ModelRegistry.replay`), so a store that appends the events durably
(SQLite, PostgreSQL) rebuilds exactly the same registry after a restart, and the event
list *is* the deployment history (append-only, numbered from 1 without gaps).

Aliases:

* ``champion`` moves only by :meth:`~ModelRegistry.promote` and
  :meth:`~ModelRegistry.rollback`, which keep the champion history; rollback returns to
  the champion before the current one.
* promoting the version ``challenger`` points to clears that alias.
* alias names and version names share one namespace (either resolves), so they may not
  collide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, get_args

from edgeloop.errors import ModelError
from edgeloop.registry.changes import Change, diff
from edgeloop.registry.manifest import Manifest, check_name
from edgeloop.security.signing import PublicKey, Signature, verify_signature

CHAMPION = "champion"
CHALLENGER = "challenger"

EventKind = Literal[
    "registered", "alias_set", "alias_removed", "promoted", "rolled_back", "rollout"
]


class RegistryError(ModelError):
    """A registry command is not allowed in the current state, or an event log is broken."""


@dataclass(frozen=True, slots=True)
class DeploymentEvent:
    """One entry of the append-only deployment history.

    Attributes:
        seq: position in the history, from 1, without gaps.
        at_ns: when it happened (ns since the epoch, passed in).
        kind: ``registered``, ``alias_set``, ``alias_removed``, ``promoted``,
            ``rolled_back`` or ``rollout`` (a rollout decision, for the record).
        version: the version concerned (the new target for alias moves).
        actor: who or what did it (a user, ``"rollout"``, ``"retrain"``).
        reason: why, in words.
        alias: the alias moved (``alias_*``, ``promoted``, ``rolled_back``).
        previous: the version the alias pointed to before, if any.
        detail: kind-specific data: ``registered`` holds ``manifest`` (canonical JSON
            text) and ``signature``; ``rollout`` holds the decision.
    """

    seq: int
    at_ns: int
    kind: EventKind
    version: str
    actor: str
    reason: str = ""
    alias: str | None = None
    previous: str | None = None
    detail: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for a store's ``events`` table or the API)."""
        return {
            "seq": self.seq,
            "at_ns": self.at_ns,
            "kind": self.kind,
            "version": self.version,
            "actor": self.actor,
            "reason": self.reason,
            "alias": self.alias,
            "previous": self.previous,
            "detail": dict(self.detail),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "event") -> DeploymentEvent:
        """Inverse of :meth:`to_dict`; raise :class:`RegistryError` naming the field."""
        for key, typ in (("seq", int), ("at_ns", int), ("version", str), ("actor", str)):
            if not isinstance(data.get(key), typ) or isinstance(data.get(key), bool):
                raise RegistryError(
                    f"{source}.{key}: expected {typ.__name__}, got {data.get(key)!r}"
                )
        kind: EventKind = data.get("kind")  # type: ignore[assignment]  # checked next
        if kind not in get_args(EventKind):
            raise RegistryError(
                f"{source}.kind: unknown {kind!r}; expected one of {get_args(EventKind)}"
            )
        detail = data.get("detail") or {}
        if not isinstance(detail, Mapping):
            raise RegistryError(f"{source}.detail: expected an object")
        return cls(
            seq=data["seq"],
            at_ns=data["at_ns"],
            kind=kind,
            version=data["version"],
            actor=data["actor"],
            reason=str(data.get("reason", "")),
            alias=data.get("alias"),
            previous=data.get("previous"),
            detail=MappingProxyType(dict(detail)),
        )


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """A registered version: its manifest, the signed bytes and the signature."""

    manifest: Manifest
    manifest_bytes: bytes
    signature: Signature
    registered_ns: int

    @property
    def version(self) -> str:
        """The version name."""
        return self.manifest.version


Result = tuple["ModelRegistry", tuple[DeploymentEvent, ...]]


@dataclass(frozen=True, slots=True)
class ModelRegistry:
    """Immutable registry state (see the module docstring).

    Attributes:
        versions: version name → :class:`ModelVersion`, in registration order.
        aliases: alias → version name.
        champions: champion history, oldest first; the last is the current champion.
        events: the whole deployment history, oldest first.
    """

    versions: Mapping[str, ModelVersion] = field(default_factory=lambda: MappingProxyType({}))
    aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    champions: tuple[str, ...] = ()
    events: tuple[DeploymentEvent, ...] = ()

    # -- queries -----------------------------------------------------------------------------
    @property
    def champion(self) -> str | None:
        """The current champion's version name."""
        return self.aliases.get(CHAMPION)

    @property
    def challenger(self) -> str | None:
        """The version the ``challenger`` alias points to."""
        return self.aliases.get(CHALLENGER)

    def resolve(self, ref: str) -> ModelVersion:
        """The version named ``ref``, or the one the alias ``ref`` points to."""
        name = self.aliases.get(ref, ref)
        found = self.versions.get(name)
        if found is None:
            raise RegistryError(
                f"version: no version or alias {ref!r} (versions {list(self.versions)}, "
                f"aliases {dict(self.aliases)})"
            )
        return found

    def diff(self, a: str, b: str) -> tuple[Change, ...]:
        """Manifest differences from ``a`` to ``b`` (versions or aliases)."""
        return diff(self.resolve(a).manifest, self.resolve(b).manifest)

    def lineage(self, ref: str) -> tuple[str, ...]:
        """``ref``'s version, its parent, the parent's parent, ... (while registered)."""
        out = [self.resolve(ref).version]
        while (parent := self.versions[out[-1]].manifest.parent) in self.versions:
            assert parent is not None
            out.append(parent)
        return tuple(out)

    def history(self, ref: str | None = None) -> tuple[DeploymentEvent, ...]:
        """All events, or those about one version (alias moves from it included)."""
        if ref is None:
            return self.events
        name = self.resolve(ref).version
        return tuple(e for e in self.events if name in (e.version, e.previous))

    # -- commands ------------------------------------------------------------------------------
    def register(
        self,
        manifest_bytes: bytes,
        signature: Signature,
        at_ns: int,
        actor: str,
        *,
        trusted: Mapping[str, PublicKey] | None = None,
        reason: str = "",
    ) -> Result:
        """Add a signed version.

        Args:
            manifest_bytes: the canonical manifest bytes that were signed.
            signature: their signature (with the manifest's artifact id).
            at_ns: the time.
            actor: who registers it.
            trusted: when given, the signature must verify against these keys.
            reason: free text for the record.

        Raises:
            ManifestError: the bytes are not a canonical manifest.
            UnknownKeyError, BadSignatureError: with ``trusted``, the signature fails.
            RegistryError: the version exists, its name is an alias, or its parent is
                not registered.
        """
        manifest = Manifest.from_bytes(manifest_bytes)
        if trusted is not None:
            verify_signature(manifest_bytes, manifest.artifact, signature, trusted)
        v = manifest.version
        if v in self.versions:
            raise RegistryError(f"version: {v!r} is already registered")
        if v in self.aliases or v in (CHAMPION, CHALLENGER):
            raise RegistryError(f"version: {v!r} is an alias name")
        if manifest.parent is not None and manifest.parent not in self.versions:
            raise RegistryError(
                f"parent: {manifest.parent!r} of {v!r} is not registered "
                f"(versions {list(self.versions)})"
            )
        detail = {
            "manifest": manifest_bytes.decode("utf-8"),
            "signature": signature.to_dict(),
        }
        return self._emit(
            [{"kind": "registered", "version": v, "detail": detail}], at_ns, actor, reason
        )

    def set_alias(self, alias: str, ref: str, at_ns: int, actor: str, reason: str = "") -> Result:
        """Point ``alias`` at a version (not ``champion``: use :meth:`promote`)."""
        check_name(alias, "alias")
        if alias == CHAMPION:
            raise RegistryError(
                "alias: 'champion' moves only by promote and rollback (they keep its history)"
            )
        if alias in self.versions:
            raise RegistryError(f"alias: {alias!r} is a version name")
        target = self.resolve(ref).version
        if self.aliases.get(alias) == target:
            raise RegistryError(f"alias: {alias!r} already points to {target!r}")
        return self._emit(
            [
                {
                    "kind": "alias_set",
                    "version": target,
                    "alias": alias,
                    "previous": self.aliases.get(alias),
                }
            ],
            at_ns,
            actor,
            reason,
        )

    def remove_alias(self, alias: str, at_ns: int, actor: str, reason: str = "") -> Result:
        """Remove an alias (not ``champion``)."""
        if alias == CHAMPION:
            raise RegistryError("alias: 'champion' cannot be removed, only rolled back")
        if alias not in self.aliases:
            raise RegistryError(f"alias: {alias!r} is not set (aliases {sorted(self.aliases)})")
        target = self.aliases[alias]
        return self._emit(
            [{"kind": "alias_removed", "version": target, "alias": alias, "previous": target}],
            at_ns,
            actor,
            reason,
        )

    def promote(self, ref: str, at_ns: int, actor: str, reason: str = "") -> Result:
        """Make a version the champion (and clear ``challenger`` if it pointed there)."""
        target = self.resolve(ref).version
        if self.champion == target:
            raise RegistryError(f"promote: {target!r} is already the champion")
        return self._emit(
            [{"kind": "promoted", "version": target, "alias": CHAMPION, "previous": self.champion}],
            at_ns,
            actor,
            reason,
        )

    def rollback(self, at_ns: int, actor: str, reason: str = "") -> Result:
        """Return ``champion`` to the champion before the current one."""
        if len(self.champions) < 2:
            raise RegistryError(
                f"rollback: no previous champion (champion history {list(self.champions)})"
            )
        return self._emit(
            [
                {
                    "kind": "rolled_back",
                    "version": self.champions[-2],
                    "alias": CHAMPION,
                    "previous": self.champions[-1],
                }
            ],
            at_ns,
            actor,
            reason,
        )

    def record_rollout(
        self, ref: str, decision: Mapping[str, Any], at_ns: int, actor: str, reason: str = ""
    ) -> Result:
        """Record a rollout decision about a version (no alias moves)."""
        target = self.resolve(ref).version
        return self._emit(
            [{"kind": "rollout", "version": target, "detail": dict(decision)}], at_ns, actor, reason
        )

    # -- events ----------------------------------------------------------------------------
    def _emit(
        self, specs: Iterable[Mapping[str, Any]], at_ns: int, actor: str, reason: str
    ) -> Result:
        if isinstance(at_ns, bool) or not isinstance(at_ns, int):
            raise RegistryError(f"at_ns: expected int ns, got {at_ns!r}")
        if not isinstance(actor, str) or not actor:
            raise RegistryError("actor: must be a non-empty string")
        events = tuple(
            DeploymentEvent(
                seq=len(self.events) + i,
                at_ns=at_ns,
                actor=actor,
                reason=reason,
                kind=spec["kind"],
                version=spec["version"],
                alias=spec.get("alias"),
                previous=spec.get("previous"),
                detail=MappingProxyType(dict(spec.get("detail", {}))),
            )
            for i, spec in enumerate(specs, start=1)
        )
        return self.apply(events), events

    def apply(self, events: Iterable[DeploymentEvent]) -> ModelRegistry:
        """The state after ``events`` (the next ones in the history).

        Raises:
            RegistryError: an event's ``seq`` is not the next one, or the event does not
                fit the state (a log that was altered or is out of order).
        """
        versions = dict(self.versions)
        aliases = dict(self.aliases)
        champions = list(self.champions)
        log = list(self.events)
        for e in events:
            where = f"event {e.seq} ({e.kind} {e.version})"
            if e.seq != len(log) + 1:
                raise RegistryError(f"{where}: expected seq {len(log) + 1}")
            if e.kind == "registered":
                if e.version in versions:
                    raise RegistryError(f"{where}: version already registered")
                sig = Signature.from_dict(e.detail.get("signature", {}), f"{where} signature")
                data = str(e.detail.get("manifest", "")).encode("utf-8")
                manifest = Manifest.from_bytes(data, f"{where} manifest")
                if manifest.version != e.version:
                    raise RegistryError(f"{where}: manifest is for {manifest.version!r}")
                versions[e.version] = ModelVersion(manifest, data, sig, e.at_ns)
            elif e.version not in versions:
                raise RegistryError(f"{where}: unknown version")
            elif e.kind == "alias_set":
                aliases[_alias(e, where)] = e.version
            elif e.kind == "alias_removed":
                if aliases.pop(_alias(e, where), None) is None:
                    raise RegistryError(f"{where}: alias {e.alias!r} was not set")
            elif e.kind == "promoted":
                champions.append(e.version)
                aliases[CHAMPION] = e.version
                if aliases.get(CHALLENGER) == e.version:
                    del aliases[CHALLENGER]
            elif e.kind == "rolled_back":
                if len(champions) < 2 or champions[-2] != e.version:
                    raise RegistryError(f"{where}: does not match the champion history")
                champions.pop()
                aliases[CHAMPION] = e.version
            log.append(e)
        return ModelRegistry(
            MappingProxyType(versions), MappingProxyType(aliases), tuple(champions), tuple(log)
        )

    @classmethod
    def replay(cls, events: Iterable[DeploymentEvent]) -> ModelRegistry:
        """The registry whose history is ``events`` (e.g. read back from a store)."""
        return cls().apply(events)


def _alias(e: DeploymentEvent, where: str) -> str:
    if not e.alias:
        raise RegistryError(f"{where}: alias missing")
    return e.alias

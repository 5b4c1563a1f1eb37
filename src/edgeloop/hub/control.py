"""The hub's control plane: registry commands, desired and actual state, rollouts.

:class:`ControlPlane` is the service behind the model and fleet APIs (and usable without
HTTP, as the simulator and the demo use it). The logic is the pure packages'
(:mod:`edgeloop.registry`, :mod:`edgeloop.desired`, :mod:`edgeloop.rollout`); this class
only loads their state from the store, calls them with the hub's clock, and writes what
they return, one control-plane transaction per command:

* **register**: the hub checks the manifest against the uploaded artifact, signs the
  canonical bytes with its key, and appends the ``registered`` event.
* **promote / rollback / aliases**: registry commands; each is a deployment event.
* **desired state**: a group names its models by version *or alias*; a document is
  resolved when served (:func:`documents`), so groups on ``champion`` follow promotions
  and rollbacks. Precedence per node: a pin, then a running rollout, then the group.
* **rollouts**: ``start`` / ``observe`` / ``tick`` of :mod:`edgeloop.rollout`, the snapshot
  stored after every change, every decision recorded as a ``rollout`` deployment event;
  a promotion moves ``champion`` (actor ``rollout``), a rollback clears ``challenger``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from sqlalchemy import Connection

from edgeloop.desired import DesiredState, version_drift
from edgeloop.errors import ConfigError
from edgeloop.hub import fleet_store as fs
from edgeloop.hub.desired_docs import NotFound, documents, missing_group, version_of
from edgeloop.hub.documents import Document
from edgeloop.hub.model_store import ModelStore, control, reading
from edgeloop.hub.store import HubStore
from edgeloop.registry import (
    CHALLENGER,
    DeploymentEvent,
    Manifest,
    ManifestError,
    ModelRegistry,
    ModelVersion,
    RegistryError,
)
from edgeloop.registry.manifest import check_name
from edgeloop.rollout import (
    Decision,
    EdgeMeasurement,
    Fleet,
    NodeInfo,
    Rollout,
    RolloutError,
    RolloutPolicy,
    observe,
    start,
    tick,
)
from edgeloop.security import PrivateKey, check_artifact

log = logging.getLogger(__name__)

ONLINE_S = 120.0
"""A node counts as online (for rollout cohorts) when it reported within this time."""


class ControlPlane:
    """The control-plane service over a hub store (see the module docstring).

    Args:
        store: the hub store (schema upgraded).
        key: the hub's signing key (:func:`edgeloop.hub.keys.hub_key`).
        clock: hub clock in ns.
        online_s: see :data:`ONLINE_S`.
    """

    def __init__(
        self,
        store: HubStore,
        key: PrivateKey,
        *,
        clock: Callable[[], int] = time.time_ns,
        online_s: float = ONLINE_S,
    ) -> None:
        self.store = store
        self.models = ModelStore(store)
        self.key = key
        self.clock = clock
        self.online_s = online_s

    # -- registry ---------------------------------------------------------------------------
    def registry(self) -> ModelRegistry:
        """The registry as committed now."""
        return self.models.registry()

    def put_artifact(self, data: bytes) -> str:
        """Store artifact bytes (idempotent); return their id."""
        return self.models.put_artifact(data, self.clock())

    def register(self, manifest: Mapping[str, Any], actor: str, reason: str = "") -> ModelVersion:
        """Sign and register a version whose artifact was uploaded.

        Raises:
            ManifestError: the manifest is invalid, or the artifact's size or hash differ.
            NotFound: the artifact was not uploaded.
            RegistryError: the version exists, its name is an alias, or the parent is
                unknown.
        """
        m = Manifest.from_dict(manifest)
        info = self.models.artifact(m.artifact)
        if info is None:
            raise NotFound(
                f"manifest.artifact: {m.artifact} was not uploaded; "
                f"PUT /v1/artifacts/{m.artifact} with its bytes first"
            )
        if info.size != m.size:
            raise ManifestError(
                f"manifest.size: {m.size}, but artifact {m.artifact} has {info.size} bytes"
            )
        check_artifact(m, digest=info.id, size=info.size)
        data, sig = self.key.sign_manifest(m)
        now = self.clock()
        reg, _ = self.models.command(lambda r: r.register(data, sig, now, actor, reason=reason))
        return reg.versions[m.version]

    def promote(self, ref: str, actor: str, reason: str = "") -> tuple[DeploymentEvent, ...]:
        """Make ``ref`` the champion."""
        now = self.clock()

        def cmd(r: ModelRegistry) -> tuple[ModelRegistry, tuple[DeploymentEvent, ...]]:
            return r.promote(version_of(r, ref), now, actor, reason)

        return self.models.command(cmd)[1]

    def rollback(self, actor: str, reason: str = "") -> tuple[DeploymentEvent, ...]:
        """Return ``champion`` to the previous champion."""
        now = self.clock()
        return self.models.command(lambda r: r.rollback(now, actor, reason))[1]

    def set_alias(
        self, alias: str, ref: str, actor: str, reason: str = ""
    ) -> tuple[DeploymentEvent, ...]:
        """Point ``alias`` at a version."""
        now = self.clock()

        def cmd(r: ModelRegistry) -> tuple[ModelRegistry, tuple[DeploymentEvent, ...]]:
            return r.set_alias(alias, version_of(r, ref), now, actor, reason)

        return self.models.command(cmd)[1]

    def remove_alias(self, alias: str, actor: str, reason: str = "") -> tuple[DeploymentEvent, ...]:
        """Remove an alias."""
        now = self.clock()

        def cmd(r: ModelRegistry) -> tuple[ModelRegistry, tuple[DeploymentEvent, ...]]:
            if alias not in r.aliases:
                raise NotFound(f"alias: {alias!r} is not set (aliases {sorted(r.aliases)})")
            return r.remove_alias(alias, now, actor, reason)

        with control(self.store) as conn:
            users = [f"group {g.name}" for g in fs.groups(conn).values() if g.act == alias]
            users += [f"node {n.node}" for n in fs.nodes(conn).values() if n.pin_act == alias]
            if users:
                raise RegistryError(
                    f"alias: {alias!r} names the acting model of {', '.join(users)}; point "
                    "them at another version or alias first"
                )
            return self.models.command(cmd, conn)[1]

    # -- desired and actual state -----------------------------------------------------------
    def set_group(
        self,
        group: str,
        act: str,
        shadow: str | None = None,
        pipeline: Mapping[str, Any] | None = None,
        actor: str = "operator",
    ) -> fs.GroupRecord:
        """Set a group's desired state.

        ``act`` must name a version or alias now; ``shadow`` may name an alias that is set
        later (``challenger``): while it names nothing, the group has no shadow model.
        ``pipeline`` is ``{}`` (each node runs its own configured pipeline), a pipeline
        spec (``edgeloop.pipeline.spec``) or ``{"preset": name}`` (a bundled preset),
        validated here and stored with its defaults filled in: nodes apply it live
        (``edgeloop.pipeline.reconfigure``).

        Raises:
            ConfigError: ``pipeline`` is not a valid spec (every problem with its path).
        """
        if pipeline:
            from edgeloop.pipeline.spec import load_preset, load_spec

            if set(pipeline) == {"preset"}:
                spec = load_preset(str(pipeline["preset"]))
            else:
                spec = load_spec(dict(pipeline), origin="pipeline")
            pipeline = spec.model_dump(mode="json")
        with control(self.store) as conn:
            reg = self.models.registry(conn)
            version_of(reg, act, "act")
            if shadow is not None:
                check_name(shadow, "shadow")  # may name an alias set later (challenger)
            return fs.put_group(conn, group, act, shadow, pipeline or {}, actor, self.clock())

    def groups(self) -> dict[str, fs.GroupRecord]:
        """Every group's desired state as set (references unresolved)."""
        with reading(self.store) as conn:
            return fs.groups(conn)

    def nodes(self) -> dict[str, fs.NodeRecord]:
        """Every fleet node."""
        with reading(self.store) as conn:
            return fs.nodes(conn)

    def assign(
        self, node: str, group: str, pin_act: str | None = None, pin_shadow: str | None = None
    ) -> fs.NodeRecord:
        """Put a node in a group, optionally pinned to a version or alias."""
        if pin_shadow is not None and pin_act is None:
            raise ConfigError(f"nodes[{node}].pin_shadow: needs pin_act too")
        with control(self.store) as conn:
            reg = self.models.registry(conn)
            if pin_act is not None:
                version_of(reg, pin_act, "pin_act")
            if pin_shadow is not None:
                check_name(pin_shadow, "pin_shadow")
            return fs.put_node(conn, node, group, pin_act, pin_shadow, self.clock())

    def report_actual(self, report: fs.ActualReport, group: str | None = None) -> None:
        """Record a node's actual state. A node not yet in the fleet joins ``group`` when
        one is given (an operator's assignment is never changed by a report); without
        one it is recorded and shows in the fleet status until it is assigned."""
        with control(self.store) as conn:
            if group is not None and report.node not in fs.nodes(conn):
                fs.put_node(conn, report.node, group, None, None, report.reported_ns)
            fs.put_actual(conn, report)

    def _state(
        self, conn: Connection, nodes: dict[str, fs.NodeRecord] | None = None
    ) -> tuple[dict[str, DesiredState], dict[str, fs.NodeRecord]]:
        """Documents of ``nodes`` (default: the whole fleet) and those nodes."""
        reg = self.models.registry(conn)
        running = fs.list_rollouts(conn, running_only=True)
        if nodes is None:
            nodes = fs.nodes(conn)
        docs = documents(
            reg,
            fs.groups(conn),
            nodes,
            running[-1].rollout if running else None,
            fs.generation(conn),
        )
        return docs, nodes

    def desired(self, node: str) -> DesiredState:
        """The node's desired-state document.

        Raises:
            NotFound: the node is not in the fleet, its group has no desired state, or
                its models name nothing.
        """
        with reading(self.store) as conn:
            mine = fs.nodes(conn, only=node)
            if node not in mine:
                raise NotFound(
                    f"node: {node!r} is not in the fleet; assign it (PUT /v1/fleet/nodes/"
                    f"{node}) or report its actual state with a group"
                )
            # Resolved for this node only: the cost does not grow with the fleet.
            docs, _ = self._state(conn, mine)
            if node not in docs:
                raise missing_group(mine[node], fs.groups(conn))
        return docs[node]

    def status(self) -> dict[str, Any]:
        """Fleet status: per node, desired vs actual versions and generations
        (``desired.version_drift``), its group, last report and status; and totals."""
        with reading(self.store) as conn:
            docs, nodes = self._state(conn)
            reports = fs.actuals(conn)
            generation = fs.generation(conn)
        drift = version_drift(docs, {n: r.to_actual_state() for n, r in reports.items()})
        nothing = {
            "desired_version": None,
            "actual_version": None,
            "desired_generation": None,
            "actual_generation": None,
            "in_sync": False,
        }
        now = self.clock()
        rows = []
        for node in sorted(set(drift) | set(nodes)):  # fleet nodes without a document too
            d = drift.get(node, nothing)
            rep = reports.get(node)
            rows.append(
                {
                    "node": node,
                    "group": nodes[node].group if node in nodes else None,
                    **d,
                    "status": rep.status if rep else None,
                    "detail": rep.detail if rep else "",
                    "reported_ns": rep.reported_ns if rep else None,
                    "online": rep is not None and (now - rep.reported_ns) <= self.online_s * 1e9,
                }
            )
        return {
            "generation": generation,
            "nodes": rows,
            "in_sync": sum(1 for r in rows if r["in_sync"]),
            "drifting": sum(1 for r in rows if not r["in_sync"]),
        }

    # -- rollouts ---------------------------------------------------------------------------
    def _fleet(self, conn: Connection, now: int) -> Fleet:
        reports = fs.actuals(conn)
        window = self.online_s * 1e9
        return Fleet(
            tuple(
                NodeInfo(
                    n.node,
                    n.group,
                    n.node in reports and now - reports[n.node].reported_ns <= window,
                )
                for n in fs.nodes(conn).values()
            )
        )

    def start_rollout(self, challenger: str, policy: RolloutPolicy, actor: str) -> fs.RolloutRecord:
        """Start rolling ``challenger`` out over the nodes acting on the champion now.

        Raises:
            NotFound: unknown challenger; RolloutError: a rollout is running, there is no
                champion, or the policy does not fit the fleet.
        """
        now = self.clock()
        with control(self.store) as conn:
            if fs.list_rollouts(conn, running_only=True):
                raise RolloutError("rollout: one is already running; wait for its decision")
            reg = self.models.registry(conn)
            target = version_of(reg, challenger, "challenger")
            champion = reg.champion
            if champion is None:
                raise RolloutError("rollout: there is no champion yet; promote a version first")
            docs, _ = self._state(conn)
            fleet = self._fleet(conn, now)
            on_champion = {n for n, d in docs.items() if d.acting.version == champion}
            covered = Fleet(tuple(i for i in fleet.nodes if i.node in on_champion))
            r, decisions = start(champion, target, covered, policy, now)
            rid = fs.insert_rollout(conn, r, now)
            if reg.challenger != target:
                self.models.command(lambda g: g.set_alias(CHALLENGER, target, now, actor), conn)
            self._record(conn, r, decisions, now)
            return fs.RolloutRecord(rid, r, now, now)

    def observe(self, measurements: Iterable[EdgeMeasurement]) -> fs.RolloutRecord | None:
        """Count edge measurements as evidence of the running rollout, then judge it
        (:meth:`tick`). ``None`` when no rollout is running."""
        return self.tick(measurements)

    def observe_documents(self, node: str, documents: Sequence[Document]) -> None:
        """Shadow measurement documents of ``node`` (``edgeloop.node.shadow``), as the
        ingest hands them over after its commit: each becomes evidence of the running
        rollout, oriented for its challenger (``measurement_for``); documents comparing
        other versions are ignored, as is everything when no rollout runs. A document
        naming another node is refused (a node reports for itself only)."""
        from edgeloop.node.shadow import measurement_for

        with reading(self.store) as conn:
            running = fs.list_rollouts(conn, running_only=True)
        if not running:
            return
        challenger = running[-1].rollout.challenger
        found = []
        for doc in documents:
            if doc.body.get("node") != node:
                log.warning("measurement of node %r sent by %r ignored", doc.body.get("node"), node)
                continue
            m = measurement_for(doc.body, challenger)
            if m is not None:
                found.append(m)
        if found:
            self.observe(found)

    def tick(self, measurements: Iterable[EdgeMeasurement] = ()) -> fs.RolloutRecord | None:
        """Judge the running rollout at the hub's time (after adding ``measurements``);
        store the result and record its decisions. ``None`` when none is running."""
        now = self.clock()
        with control(self.store) as conn:
            running = fs.list_rollouts(conn, running_only=True)
            if not running:
                return None
            rec = running[-1]
            r = rec.rollout
            for m in measurements:
                r = observe(r, m)
            covered = Fleet(
                tuple(i for i in self._fleet(conn, now).nodes if i.node in set(r.order))
            )
            r, decisions = tick(r, covered, now)
            fs.update_rollout(conn, rec.id, r, now)
            self._record(conn, r, decisions, now)
            return fs.RolloutRecord(rec.id, r, rec.started_ns, now)

    def _record(
        self, conn: Connection, r: Rollout, decisions: Iterable[Decision], now: int
    ) -> None:
        """Record decisions as deployment events; act on promote and rollback."""
        v = r.challenger
        for d in decisions:
            reg, _ = self.models.command(
                partial(
                    ModelRegistry.record_rollout,
                    ref=v,
                    decision=d.to_dict(),
                    at_ns=now,
                    actor="rollout",
                    reason=d.reason,
                ),
                conn,
            )
            if d.kind == "promote" and reg.champion != v:
                self.models.command(
                    partial(
                        ModelRegistry.promote, ref=v, at_ns=now, actor="rollout", reason=d.reason
                    ),
                    conn,
                )
            elif d.kind == "rollback" and reg.challenger == v:
                self.models.command(
                    partial(
                        ModelRegistry.remove_alias,
                        alias=CHALLENGER,
                        at_ns=now,
                        actor="rollout",
                        reason=d.reason,
                    ),
                    conn,
                )

    def rollouts(self, running_only: bool = False) -> list[fs.RolloutRecord]:
        """Every rollout (or only the running one), oldest first."""
        with reading(self.store) as conn:
            return fs.list_rollouts(conn, running_only=running_only)


__all__ = ["ONLINE_S", "ControlPlane", "NotFound"]

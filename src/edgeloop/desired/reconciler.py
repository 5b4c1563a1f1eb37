"""Node-side reconciliation: actual state + desired state → the next actions. Pure.

The node runs a level-triggered loop: call :func:`reconcile`, carry out the actions in
order (an I/O adapter does the downloads, checks and file swaps), record what happened in
its :class:`ActualState`, and call :func:`reconcile` again, whenever it is connected and
whenever a new document arrives. Each call looks only at the two states, so a restart, a
dropped connection or a repeated document never needs special handling.

What the plan contains, in this order:

0. :class:`Prune` — artifacts neither desired, active nor previous (first: it frees
   disk for the downloads).
1. :class:`Download` — for each desired artifact not fully held, the missing byte
   ranges (chunk-aligned, :mod:`edgeloop.desired.ranges`): a download interrupted
   half-way resumes where it stopped.
2. :class:`Verify` — for each artifact fully held but not yet verified: the executor
   checks hash, size and signature (:func:`edgeloop.security.verify_artifact`). On
   failure it drops the bytes and counts the failure; after ``max_failures`` the
   artifact is given up on and the node reports ``failed`` while it keeps running what
   it runs.
3. :class:`Swap` — once every desired artifact is verified: activate the desired models
   and pipeline in one atomic step, keeping the acting model it replaces as
   ``previous`` (so a rollback needs no download). A swap to the models already active
   only records the new generation.
4. :class:`Report` — always last: ``converged``, ``converging``, ``failed`` or
   ``stale`` (the document is older than what was applied; nothing else is done).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from edgeloop.desired.documents import DesiredState, ModelSlot, pipeline_digest
from edgeloop.desired.ranges import Range, missing_ranges, normalise

Status = Literal["converged", "converging", "failed", "stale"]


@dataclass(frozen=True, slots=True)
class LocalArtifact:
    """An artifact on the node's disk, complete or not.

    Attributes:
        artifact: its id (``sha256:...``).
        size: its expected size.
        held: byte ranges present.
        verified: hash, size and signature checked.
        failures: failed verifications so far (each one dropped the bytes).
        last_error: the last verification error, for the report.
    """

    artifact: str
    size: int
    held: tuple[Range, ...] = ()
    verified: bool = False
    failures: int = 0
    last_error: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "held", normalise(self.held))


@dataclass(frozen=True, slots=True)
class ActualState:
    """What a node runs and holds.

    Attributes:
        node: the node.
        generation: the generation of the last desired state it applied (0: none).
        active: the models it runs.
        previous: the acting model before the last swap (kept for rollback).
        pipeline_digest: digest of the pipeline config it runs.
        artifacts: artifact id → :class:`LocalArtifact`.
    """

    node: str
    generation: int = 0
    active: tuple[ModelSlot, ...] = ()
    previous: ModelSlot | None = None
    pipeline_digest: str = ""
    artifacts: Mapping[str, LocalArtifact] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Download:
    """Fetch these byte ranges of an artifact (and record them as held)."""

    artifact: str
    version: str
    ranges: tuple[Range, ...]


@dataclass(frozen=True, slots=True)
class Verify:
    """Check a complete artifact's hash, size and signature against its manifest."""

    artifact: str
    version: str


@dataclass(frozen=True, slots=True)
class Swap:
    """Activate ``models`` and the pipeline atomically; keep ``keep`` as the previous."""

    models: tuple[ModelSlot, ...]
    pipeline_digest: str
    generation: int
    keep: ModelSlot | None


@dataclass(frozen=True, slots=True)
class Prune:
    """Delete artifacts nothing needs any more."""

    artifacts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Report:
    """Tell the hub where the node stands."""

    status: Status
    node: str
    desired_generation: int
    actual_generation: int
    detail: str = ""


Action = Download | Verify | Swap | Prune | Report


def reconcile(
    desired: DesiredState | None,
    actual: ActualState,
    *,
    chunk_size: int = 256 * 1024,
    max_failures: int = 3,
) -> tuple[Action, ...]:
    """The actions that bring ``actual`` towards ``desired`` (see the module docstring)."""
    if desired is None:
        return (Report("converged", actual.node, 0, actual.generation, "no desired state yet"),)
    if desired.generation < actual.generation:
        return (
            Report(
                "stale",
                actual.node,
                desired.generation,
                actual.generation,
                f"document generation {desired.generation} is older than the applied "
                f"{actual.generation}; ignored",
            ),
        )
    actions: list[Action] = []
    ready = True
    failed: list[str] = []
    for slot in desired.models:
        local = actual.artifacts.get(slot.artifact)
        if local is not None and local.verified:
            continue
        ready = False
        if local is not None and local.failures >= max_failures:
            failed.append(
                f"{slot.version} ({slot.artifact}) failed verification {local.failures} times: "
                f"{local.last_error}"
            )
            continue
        missing = missing_ranges(slot.size, local.held if local else (), chunk_size)
        if missing:
            actions.append(Download(slot.artifact, slot.version, missing))
        else:
            actions.append(Verify(slot.artifact, slot.version))

    want_digest = desired.pipeline_digest
    in_place = set(actual.active) == set(desired.models) and actual.pipeline_digest == want_digest
    keep = actual.previous
    if ready and not (in_place and actual.generation == desired.generation):
        old_act = next((m for m in actual.active if m.mode == "act"), None)
        if old_act is not None and old_act.version != desired.acting.version:
            keep = old_act
        actions.append(Swap(desired.models, want_digest, desired.generation, keep))

    needed = {m.artifact for m in desired.models} | {m.artifact for m in actual.active}
    if keep is not None:
        needed.add(keep.artifact)
    spare = tuple(sorted(a for a in actual.artifacts if a not in needed))
    if spare:
        actions.insert(0, Prune(spare))

    if failed:
        status: Status = "failed"
        detail = "; ".join(failed) + "; keeping the current models"
    elif ready and in_place and actual.generation == desired.generation:
        status, detail = "converged", ""
    else:
        status = "converging"
        todo = sorted({type(a).__name__.lower() for a in actions})
        detail = "next: " + ", ".join(todo)
    actions.append(Report(status, actual.node, desired.generation, actual.generation, detail))
    return tuple(actions)


def version_drift(
    desired: Mapping[str, DesiredState], actual: Mapping[str, ActualState]
) -> dict[str, dict[str, object]]:
    """Per node: desired and actual acting versions and generations (for ``fleet status``)."""
    out: dict[str, dict[str, object]] = {}
    for node in sorted(set(desired) | set(actual)):
        d, a = desired.get(node), actual.get(node)
        act = next((m.version for m in a.active if m.mode == "act"), None) if a else None
        want = d.acting.version if d else None
        out[node] = {
            "desired_version": want,
            "actual_version": act,
            "desired_generation": d.generation if d else None,
            "actual_generation": a.generation if a else None,
            "in_sync": d is not None
            and a is not None
            and set(a.active) == set(d.models)
            and a.pipeline_digest == pipeline_digest(d.pipeline),
        }
    return out

"""The node's reconcile adapter: the I/O around :func:`edgeloop.desired.reconcile`.

One round (:meth:`Reconciler.round`):

1. ``GET /v1/nodes/{node}/desired`` — the node's :class:`~edgeloop.desired.DesiredState`
   (404: none yet);
2. plan with :func:`~edgeloop.desired.reconcile` and carry out the actions, re-planning
   after each step until only the report is left:

   * ``Download``: each missing byte range with ``Range`` requests, written at its offset
     into a partial file and recorded as held only once on disk (a link cut keeps the
     bytes that arrived; a restart resumes after them: :mod:`edgeloop.node.model_store`);
   * ``Verify``: fetch the version (``GET /v1/models/{version}``: the manifest's
     signed bytes as ``manifest_text`` and its ``signature``), then check hash, size and
     signature in a child process (``python -m edgeloop.security.verify``), so that
     ``cryptography`` never becomes resident in the gateway; a refused artifact's bytes
     are dropped and the reason is kept for the report;
   * ``Swap``: build the detectors in a worker thread, write the ``current.json`` pointer
     (atomic), then switch the pipeline's models between two frames
     (:mod:`edgeloop.node.model_switch`);
   * ``Prune``: delete artifacts nothing needs;

3. ``PUT /v1/nodes/{node}/actual`` — the actual state and the report.

:meth:`Reconciler.run` repeats rounds every ``every_s`` while the uplink is up, with a
jittered exponential back-off after a failure. Network I/O is asyncio streams, file I/O
runs in the storage thread, verification in a child: the data path never waits for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from edgeloop.desired.documents import DesiredState, ModelSlot, pipeline_digest
from edgeloop.desired.ranges import add_range
from edgeloop.desired.reconciler import (
    ActualState,
    Download,
    LocalArtifact,
    Prune,
    Report,
    Swap,
    Verify,
    reconcile,
)
from edgeloop.errors import ConfigError, EdgeloopError, ModelError
from edgeloop.node.drift_sketches import SketchCollector, read_reference
from edgeloop.node.fetch import ControlClient, PartialBody
from edgeloop.node.model_store import ModelStore, slot_to_dict
from edgeloop.node.model_switch import Loaded, ModelSwitch
from edgeloop.node.samples import SampleCollector
from edgeloop.node.verifier import verify_in_child
from edgeloop.outbox.base import NewEntry

log = logging.getLogger("edgeloop.node.reconcile")

ACTUAL_SCHEMA = "edgeloop.actual/1"


@dataclass(frozen=True, slots=True)
class HubPaths:
    """Where the hub serves each control-plane resource (``str.format`` templates)."""

    desired: str = "/v1/nodes/{node}/desired"
    actual: str = "/v1/nodes/{node}/actual"
    artifact: str = "/v1/artifacts/{artifact}"
    model: str = "/v1/models/{version}"


def _detail(detail: str, pipeline_error: str) -> str:
    """The report's detail, with a refused pipeline config (the hub shows it per node)."""
    if not pipeline_error:
        return detail
    refused = f"pipeline config refused: {pipeline_error}"
    return f"{detail}; {refused}" if detail else refused


class Reconciler:
    """Brings a node's models to its desired state (see the module docstring).

    Args:
        node: the node id.
        client: the hub's control-plane client.
        store: the node's model directory.
        switch: puts models to work in the pipeline.
        trusted_keys: PEM files of the public keys the node trusts.
        clock: the node's clock (ns).
        append: stores outbox entries (the shadow measurements); ``None`` drops them.
        link_up: whether the uplink is connected (rounds wait while it is not).
        chunk_size, max_failures: see :func:`edgeloop.desired.reconcile`.
        every_s, retry_min_s, retry_max_s: round cadence and back-off bounds.
        paths: the hub's endpoints.
        fleet_group: the node group named in reports (a node not yet in the fleet joins it).
        sketches: drift sketches of the acting model's features, one entry per period
            (``edgeloop.node.drift_sketches``).
        samples: collects curated normal windows; sent with each measurement period.
    """

    def __init__(
        self,
        node: str,
        client: ControlClient,
        store: ModelStore,
        switch: ModelSwitch,
        trusted_keys: list[str],
        *,
        clock: Callable[[], int] = time.time_ns,
        append: Callable[[list[NewEntry]], Any] | None = None,
        link_up: Callable[[], bool] = lambda: True,
        chunk_size: int = 256 * 1024,
        max_failures: int = 3,
        every_s: float = 10.0,
        retry_min_s: float = 0.5,
        retry_max_s: float = 30.0,
        paths: HubPaths = HubPaths(),
        fleet_group: str | None = None,
        sketches: SketchCollector | None = None,
        samples: SampleCollector | None = None,
    ) -> None:
        self.node = node
        self.client = client
        self.store = store
        self.switch = switch
        self.trusted_keys = list(trusted_keys)
        self.clock = clock
        self.append = append
        self.link_up = link_up
        self.chunk_size = chunk_size
        self.max_failures = max_failures
        self.every_s = every_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.paths = paths
        self.fleet_group = fleet_group
        self.sketches = sketches
        self.samples = samples
        self.actual = ActualState(node)
        self.desired: DesiredState | None = None
        self.last_report: Report | None = None
        self.refusals: list[dict[str, str]] = []
        self.rounds = 0
        self.failures = 0
        self.bytes_downloaded = 0
        # The desired pipeline config runs (applied live) unless it was refused.
        self.pipeline_applied = True
        self.pipeline_error = ""
        self._rng = random.Random(node)

    # -- start-up --------------------------------------------------------------------------
    async def restore(self) -> None:
        """Read the model directory and put the active models back to work (at start-up).

        A model that no longer loads (file changed or gone) is not activated: the node
        then runs its configured pipeline and reconciles as if it had none.
        """
        actual = await asyncio.to_thread(self.store.load)
        # The node starts on its own configured pipeline: a config the hub had it apply
        # is applied again by the first round (its digest differs).
        actual = replace(actual, pipeline_digest=pipeline_digest({}))
        self.actual = actual
        if not actual.active:
            return
        try:
            loaded = await asyncio.to_thread(self.switch.load, actual.active, self.store.model_path)
        except ModelError as exc:
            # Forget them (and their files): the next round downloads and checks again.
            log.error("active models not restored: %s", exc)
            arts = dict(actual.artifacts)
            for slot in actual.active:
                await asyncio.to_thread(self.store.drop, slot.artifact)
                arts.pop(slot.artifact, None)
            self.actual = replace(
                actual, generation=0, active=(), previous=None, artifacts=MappingProxyType(arts)
            )
            await self._save()
            return
        await self._emit(self.switch.apply(loaded, self.clock()))
        await self._sketch_for(loaded.act[0], loaded.group)
        self._sample_for(loaded)

    # -- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        """Reconcile every ``every_s`` while the uplink is up; back off after failures."""
        backoff = self.retry_min_s
        while True:
            if not self.link_up():
                await asyncio.sleep(min(self.every_s, 1.0))
                continue
            try:
                await self.round()
            except (EdgeloopError, OSError) as exc:  # all of ours: transport, verifier, ...
                self.failures += 1
                log.warning("reconcile failed (retry in ~%.1f s): %s", backoff, exc)
                await asyncio.sleep(backoff * (0.5 + self._rng.random()))
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            backoff = self.retry_min_s
            await asyncio.sleep(self.every_s)

    async def round(self, max_steps: int = 100) -> Report:
        """One round: fetch the desired state, converge as far as possible, report."""
        self.rounds += 1
        self.desired = await self.fetch_desired()
        report = await self.converge(max_steps)
        await self.report(report)
        return report

    async def fetch_desired(self) -> DesiredState | None:
        path = self.paths.desired.format(node=self.node)
        reply = await self.client.get(path, ok=(200, 404))
        if reply.status == 404:
            return None
        doc = DesiredState.from_bytes(reply.body, source=f"GET {path}")
        if doc.node != self.node:
            raise ConfigError(f"GET {path}: the document is for node {doc.node!r}")
        return doc

    async def converge(self, max_steps: int = 100) -> Report:
        """Plan and act until the plan is only a report (or ``max_steps`` plans)."""
        for _ in range(max_steps):
            plan = reconcile(
                self.desired,
                self.actual,
                chunk_size=self.chunk_size,
                max_failures=self.max_failures,
            )
            report = plan[-1]
            assert isinstance(report, Report)
            if len(plan) == 1:
                self.last_report = report
                return report
            for action in plan[:-1]:
                if isinstance(action, Prune):
                    await self._prune(action)
                elif isinstance(action, Download):
                    await self._download(action)
                elif isinstance(action, Verify):
                    await self._verify(action)
                elif isinstance(action, Swap):
                    await self._swap(action)
        raise EdgeloopError(f"reconcile: not converged after {max_steps} plans")

    async def report(self, report: Report) -> None:
        path = self.paths.actual.format(node=self.node)
        await self.client.put_json(path, self.actual_doc(report))

    def actual_doc(self, report: Report | None = None) -> dict[str, Any]:
        """The actual-state document sent with ``PUT .../actual``."""
        a = self.actual
        rep = report or self.last_report
        return {
            "schema": ACTUAL_SCHEMA,
            "node": a.node,
            "group": self.fleet_group,
            "generation": a.generation,
            "active": [slot_to_dict(s) for s in a.active],
            "previous": slot_to_dict(a.previous) if a.previous else None,
            "pipeline_digest": a.pipeline_digest,
            "pipeline_applied": self.pipeline_applied,
            "pipeline_error": self.pipeline_error,
            "status": rep.status if rep else "converging",
            "desired_generation": rep.desired_generation if rep else None,
            "detail": _detail(rep.detail if rep else "", self.pipeline_error),
            "artifacts": [
                {
                    "artifact": v.artifact,
                    "size": v.size,
                    "held": sum(e - s for s, e in v.held),
                    "verified": v.verified,
                    "failures": v.failures,
                    "last_error": v.last_error,
                }
                for v in a.artifacts.values()
            ],
            "refused": list(self.refusals[-10:]),
        }

    # -- actions ---------------------------------------------------------------------------
    def _set_artifact(self, local: LocalArtifact | None, artifact: str) -> None:
        arts = dict(self.actual.artifacts)
        if local is None:
            arts.pop(artifact, None)
        else:
            arts[artifact] = local
        self.actual = replace(self.actual, artifacts=MappingProxyType(arts))

    async def _save(self) -> None:
        await asyncio.to_thread(self.store.save_downloads, self.actual.artifacts)

    async def _prune(self, action: Prune) -> None:
        for art in action.artifacts:
            await asyncio.to_thread(self.store.drop, art)
            self._set_artifact(None, art)
        await self._save()

    async def _download(self, action: Download) -> None:
        slot = next(
            m
            for m in (self.desired.models if self.desired else ())
            if m.artifact == action.artifact
        )
        local = self.actual.artifacts.get(action.artifact) or LocalArtifact(
            action.artifact, slot.size
        )
        path = self.paths.artifact.format(artifact=action.artifact, version=action.version)
        for start, end in action.ranges:
            try:
                data = await self.client.get_range(path, start, end)
            except PartialBody as cut:
                data = cut.received
                if data:  # keep what arrived: the resumed download starts after it
                    await asyncio.to_thread(
                        self.store.write_range, action.artifact, local.size, start, data
                    )
                    local = replace(local, held=add_range(local.held, start, start + len(data)))
                    self.bytes_downloaded += len(data)
                    self._set_artifact(local, action.artifact)
                    await self._save()
                raise
            await asyncio.to_thread(
                self.store.write_range, action.artifact, local.size, start, data
            )
            local = replace(local, held=add_range(local.held, start, end))
            self.bytes_downloaded += len(data)
            self._set_artifact(local, action.artifact)
            await self._save()

    async def _verify(self, action: Verify) -> None:
        art = action.artifact
        if not self.store.has_signed(art):
            path = self.paths.model.format(version=action.version, artifact=art)
            doc = (await self.client.get(path)).json(f"GET {path}")
            text, sig = doc.get("manifest_text"), doc.get("signature")
            if not isinstance(text, str) or not isinstance(sig, dict):
                raise ConfigError(f"GET {path}: expected manifest_text and signature")
            signed = (text.encode("utf-8"), json.dumps(sig).encode())
            await asyncio.to_thread(self.store.save_signed, art, *signed)
        verdict = await verify_in_child(
            self.trusted_keys,
            str(self.store.manifest_path(art)),
            str(self.store.signature_path(art)),
            str(self.store.bytes_path(art)),
        )
        local = self.actual.artifacts[art]
        if verdict["ok"] and verdict.get("artifact") == art:
            await asyncio.to_thread(self.store.promote, art)
            self._set_artifact(replace(local, verified=True, last_error=""), art)
            log.info("verified %s (%s) signed by %s", action.version, art, verdict.get("key_id"))
        else:
            reason = str(verdict.get("reason", "artifact_mismatch"))
            error = str(verdict.get("error", f"the manifest names {verdict.get('artifact')}"))
            self.refusals.append(
                {"version": action.version, "artifact": art, "reason": reason, "error": error}
            )
            log.error("refused %s (%s): %s: %s", action.version, art, reason, error)
            # Drop the bytes and the signed manifest: the next attempt fetches both again.
            await asyncio.to_thread(self.store.drop, art)
            self._set_artifact(
                replace(
                    local,
                    held=(),
                    verified=False,
                    failures=local.failures + 1,
                    last_error=f"{reason}: {error}",
                ),
                art,
            )
        await self._save()

    async def _swap(self, action: Swap) -> None:
        try:
            loaded = await asyncio.to_thread(self.switch.load, action.models, self.store.model_path)
        except ModelError as exc:
            # Verified but unusable here: give it up like a failed check (reported).
            for slot in action.models:
                local = self.actual.artifacts.get(slot.artifact)
                if local is not None and slot.artifact not in {
                    m.artifact for m in self.actual.active
                }:
                    self.refusals.append(
                        {
                            "version": slot.version,
                            "artifact": slot.artifact,
                            "reason": "unusable",
                            "error": str(exc),
                        }
                    )
                    self._set_artifact(
                        replace(
                            local,
                            verified=False,
                            failures=self.max_failures,
                            last_error=f"unusable: {exc}",
                        ),
                        slot.artifact,
                    )
            await self._save()
            log.error("swap refused: %s", exc)
            return
        new = replace(
            self.actual,
            generation=action.generation,
            active=action.models,
            previous=action.keep,
            pipeline_digest=action.pipeline_digest,
        )
        await asyncio.to_thread(self.store.save_pointer, new)
        entry = self.switch.apply(loaded, self.clock())
        await self._sketch_for(loaded.act[0], loaded.group)
        self._sample_for(loaded)
        if action.pipeline_digest != self.actual.pipeline_digest:
            self._apply_pipeline(action.pipeline_digest)
        self.switch.keep_previous(action.keep)
        self.actual = new
        log.info(
            "swapped to %s (generation %d; previous %s)",
            ", ".join(f"{m.version}:{m.mode}" for m in action.models),
            action.generation,
            action.keep.version if action.keep else None,
        )
        await self._emit(entry)

    def _apply_pipeline(self, digest: str) -> None:
        """Apply the desired document's pipeline config live (between two frames: this
        runs in the loop thread). A refusal keeps the running pipeline and is reported
        (``pipeline_applied: false`` and ``pipeline_error``) until a new config comes."""
        doc = self.desired
        data = doc.pipeline if doc is not None and doc.pipeline_digest == digest else None
        if data is None:
            self.pipeline_applied, self.pipeline_error = False, "desired document changed"
            return
        try:
            done = self.switch.apply_pipeline(data)
        except ConfigError as exc:
            self.pipeline_applied, self.pipeline_error = False, str(exc)
            log.error("desired pipeline config refused, the running one stays: %s", exc)
            return
        self.pipeline_applied, self.pipeline_error = True, ""
        log.info("pipeline config %s applied live: %s", digest[:12], done.describe())

    async def _emit(self, entry: NewEntry | None) -> None:
        if entry is not None and self.append is not None:
            await asyncio.to_thread(self.append, [entry])

    # -- shadow measurements ---------------------------------------------------------------
    async def measure_loop(self, period_s: float) -> None:
        """Close a shadow measurement period every ``period_s`` and store it upstream."""
        while True:
            # Periods end on multiples of period_s of the node's clock, so a hub judging
            # periods of that length finds one drift sketch per node in each.
            await asyncio.sleep(period_s - (self.clock() / 1e9) % period_s)
            await self.close_period()
            await self.close_sketches()

    async def close_sketches(self) -> None:
        """Close the drift sketches' period now and store its entry (if it saw windows)."""
        if self.sketches is not None:
            await self._emit(self.sketches.take(self.clock()))

    async def _sketch_for(self, act: ModelSlot, group: str) -> None:
        """Drift sketches follow the acting model, on its reference's edges (from the
        manifest the node verified); the previous model's last period is sent."""
        if self.sketches is None:
            return
        ref = await asyncio.to_thread(read_reference, self.store.manifest_path(act.artifact))
        await self._emit(self.sketches.begin(act.version, group, ref, self.clock()))

    async def close_period(self) -> None:
        """Close the shadow's measurement period now and store it (if it saw windows),
        and the period's curated samples (``edgeloop.node.samples``) if configured."""
        now = self.clock()
        await self._emit(self.switch.monitor.take(now))
        if self.samples is not None:
            await self._emit(self.samples.take(now))

    def _sample_for(self, loaded: Loaded) -> None:
        """Curated samples follow the acting model (rows another model scored are dropped)."""
        if self.samples is not None:
            names = self.switch.pipeline.feature_names(loaded.group)
            self.samples.begin(loaded.act[0].version, loaded.group, names, self.clock())

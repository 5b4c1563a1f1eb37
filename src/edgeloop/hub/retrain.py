"""Retraining: curated samples in, an evaluated, registered version and a canary out.

:meth:`RetrainService.retrain` is one run (one at a time, across threads and hub
processes; a run's row in ``retrain_runs`` says it is running):

1. **data**: the ``sample`` documents nodes sent in the window (``since_ns``, default
   ``window_s`` back; a drift trigger gives the drift's onset,
   :mod:`edgeloop.hub.drift_onset`), only rows of the champion's window group and
   feature names (:mod:`edgeloop.hub.training_set`);
2. **split**: a seeded ``holdout_fraction`` of the rows is held back;
3. **train**: :func:`edgeloop.learn.fit_model` on the rest with the champion's model
   kind, exported with :func:`edgeloop.learn.to_onnx`;
4. **evaluate** the exported model (what nodes would run) and the champion on the same
   data: alert rate on the held-back normal rows, and on the events operators labelled
   (``edgeloop.hub.labels``): a false alarm should score below the threshold, a true
   alarm at or above it;
5. **bar**: refuse (register nothing, say why) when the held-back alert rate is above
   ``max_holdout_alert_rate``, the labelled true alarms it still flags are fewer than
   ``min_true_alarm_recall``, or the labelled false alarms it clears are fewer than
   ``min_false_alarm_cleared`` (label bars apply when there are such labels);
6. **register** (parent = the champion; the manifest carries the metrics and the
   training data's fingerprint: hash, time range, source nodes) and **start a canary
   rollout** with the configured policy.

Every run is recorded (reason, actor, outcome, version, rollout, metrics, data set):
``GET /v1/retrain/runs``. Runs start by hand (``POST /v1/retrain``), on a schedule
(:class:`RetrainScheduler`, ``hub serve --retrain-every-s``) or on drift
(``DriftService.on_trigger`` → :meth:`RetrainService.submit`). Training runs in the
service's worker thread (:meth:`submit`) or the caller's, never in the ingest path.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, insert, select, update

from edgeloop.hub.control import ControlPlane
from edgeloop.hub.feedback_tables import retrain_runs
from edgeloop.hub.labels import LabelStore
from edgeloop.hub.model_store import control, reading
from edgeloop.hub.periodic import Periodic
from edgeloop.hub.retrain_config import RetrainConfig, retrain_config
from edgeloop.hub.retrain_eval import bar, evaluate, labelled_rows
from edgeloop.hub.training_set import TrainingSet, build_training_set, recent_documents
from edgeloop.node.samples import KIND_SAMPLE

log = logging.getLogger("edgeloop.hub.retrain")

SEC = 1_000_000_000
OUTCOMES = ("running", "rolled_out", "registered", "refused", "failed")


@dataclass(frozen=True, slots=True)
class RetrainResult:
    """What a run did.

    Attributes:
        run: the run's id (``retrain_runs``; 0 when it did not start: ``busy``).
        outcome: ``rolled_out``, ``registered`` (no rollout started: ``why``),
            ``refused`` (nothing registered: ``why``), ``failed`` or ``busy``.
        why: the reason for a refusal, a failure or a missing rollout.
        version, parent, rollout_id: what it registered and started.
        metrics: the evaluation (also in the manifest when registered).
        dataset: the training set's provenance and fingerprint.
    """

    run: int
    outcome: str
    why: str = ""
    version: str | None = None
    parent: str | None = None
    rollout_id: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    dataset: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"], d["dataset"] = dict(self.metrics), dict(self.dataset)
        return d


class RetrainBusy(RuntimeError):
    """Another run is in progress (in this process or another hub's)."""


class _Refused(Exception):
    def __init__(self, why: str, metrics: Mapping[str, float], dataset: Mapping[str, Any]):
        super().__init__(why)
        self.why, self.metrics, self.dataset = why, metrics, dataset


class RetrainService:
    """Runs retraining over the hub's store and control plane (module docstring)."""

    def __init__(
        self,
        plane: ControlPlane,
        config: RetrainConfig | None = None,
        *,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.plane = plane
        self.store = plane.store
        self.labels = LabelStore(plane.store)
        self.config = config or RetrainConfig()
        self.clock = clock or plane.clock
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[RetrainResult] | None = None
        self._running = threading.Lock()

    # -- triggers ------------------------------------------------------------------------
    def submit(
        self, reason: str, actor: str, *, since_ns: int | None = None, since_from: str = ""
    ) -> Future[RetrainResult]:
        """Run :meth:`retrain` in the service's worker thread; while one is queued or
        running, return that one instead of queueing another."""
        with self._lock:
            if self._pending is not None and not self._pending.done():
                return self._pending
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="retrain")
            self._pending = self._pool.submit(self._quiet, reason, actor, since_ns, since_from)
            return self._pending

    def _quiet(
        self, reason: str, actor: str, since_ns: int | None, since_from: str
    ) -> RetrainResult:
        try:
            return self.retrain(reason, actor, since_ns=since_ns, since_from=since_from)
        except RetrainBusy as exc:
            log.info("retrain (%s) skipped: %s", reason, exc)
            return RetrainResult(0, "busy", str(exc))

    def close(self) -> None:
        """Wait for a queued run and stop the worker thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    # -- one run ---------------------------------------------------------------------------
    def retrain(
        self, reason: str, actor: str, *, since_ns: int | None = None, since_from: str = ""
    ) -> RetrainResult:
        """Build, train, evaluate, register and roll out (module docstring).

        ``since_from`` says where ``since_ns`` came from (e.g. ``"drift onset"``), for
        the run's record (``dataset.since_from``): an operator sees why the data starts
        there.

        Raises:
            RetrainBusy: another run is in progress.
        """
        if not self._running.acquire(blocking=False):
            raise RetrainBusy("retrain: a run is in progress in this hub")
        try:
            run = self._begin(reason, actor)
            try:
                result = self._run(run, reason, actor, since_ns, since_from)
            except _Refused as exc:
                result = RetrainResult(
                    run, "refused", exc.why, metrics=exc.metrics, dataset=exc.dataset
                )
            except Exception as exc:
                log.exception("retrain run %d failed", run)
                result = RetrainResult(run, "failed", f"{type(exc).__name__}: {exc}")
            self._finish(result)
            log.info(
                "retrain run %d (%s, %s): %s %s %s",
                run,
                reason,
                actor,
                result.outcome,
                result.version or "",
                result.why,
            )
            return result
        finally:
            self._running.release()

    def _run(
        self, run: int, reason: str, actor: str, since_ns: int | None, since_from: str
    ) -> RetrainResult:
        from edgeloop.learn import fit_model, to_onnx
        from edgeloop.learn.train import CV_FOLDS, rows_needed
        from edgeloop.registry import describe

        cfg = self.config
        reg = self.plane.registry()
        champion = reg.champion
        if champion is None:
            raise _Refused("retrain: there is no champion to retrain", {}, {})
        cm = reg.versions[champion].manifest
        names, group = cm.input_schema.feature_names, cm.input_schema.group
        now = self.clock()
        if since_ns is None:
            since, since_from = now - int(cfg.window_s * SEC), f"window_s {cfg.window_s:g}"
        else:
            since, since_from = since_ns, since_from or "since_ns"
        docs = recent_documents(self.store, KIND_SAMPLE, since, now + 1, cfg.max_documents)
        ts = build_training_set(docs, names, group, max_rows=cfg.max_rows)
        dataset: dict[str, Any] = {
            "since_ns": since,
            "since_from": since_from,
            "until_ns": now,
            **ts.describe(),
        }
        n = ts.rows.shape[0]
        # The rows left to fit once the holdout is taken must be enough for the
        # calibration quantile too: refused here, with the reason, not failed in fit_model.
        folds = int(dict(cfg.params).get("cv_folds", CV_FOLDS))
        fit_need = rows_needed(cfg.quantile, folds, len(names))
        need = max(cfg.min_rows, math.ceil(fit_need / (1.0 - cfg.holdout_fraction)))
        if n < need:
            why = (
                ""
                if need == cfg.min_rows
                else (
                    f" (min_rows {cfg.min_rows}; quantile {cfg.quantile:g} needs {fit_need} "
                    f"after the {cfg.holdout_fraction:g} holdout)"
                )
            )
            raise _Refused(
                f"data: {n} usable sample rows of {champion}'s features since {since} "
                f"(from {len(docs)} documents), need {need}{why}",
                {},
                dataset,
            )
        train, hold = _split(ts, cfg.holdout_fraction, cfg.seed)
        model = fit_model(
            train,
            names,
            kind=cm.kind,  # type: ignore[arg-type]  # a registered kind
            seed=cfg.seed,
            quantile=cfg.quantile,
            group=group,
            **dict(cfg.params),
        )
        artifact = to_onnx(model)
        champ_bytes = self._artifact_bytes(cm.artifact)
        labelled = labelled_rows(self.labels.labelled(), ts.names)
        metrics = evaluate(artifact, champ_bytes, ts.names, group, hold, len(train), labelled)
        dataset["sha256"] = model.info.fingerprint
        failures = bar(
            metrics,
            max_holdout_alert_rate=cfg.max_holdout_alert_rate,
            min_true_alarm_recall=cfg.min_true_alarm_recall,
            min_false_alarm_cleared=cfg.min_false_alarm_cleared,
        )
        if failures:
            raise _Refused("evaluation: " + "; ".join(failures), metrics, dataset)
        quantisation = None
        if cfg.quantise:  # int8 only where the measurement shows it pays (learn.quantise)
            from edgeloop.learn.quantise import measure_quantisation

            quantisation, artifact = measure_quantisation(artifact, names, group, hold)
        stamp = datetime.fromtimestamp(now / SEC, UTC).strftime("%Y%m%dT%H%M%S")
        version = f"{cfg.version_prefix}{run}-{stamp}"
        manifest = describe(
            model,
            artifact,
            train,
            version=version,
            preset=cm.input_schema.preset,
            start_ns=ts.start_ns,
            end_ns=max(ts.end_ns, ts.start_ns),
            source_nodes=ts.source_nodes,
            creator=f"retrain:{actor}",
            created_ns=now,
            metrics=metrics,
            parent=champion,
            quantisation=quantisation,
        )
        self.plane.put_artifact(artifact)
        self.plane.register(manifest.to_dict(), actor, reason=f"retrain run {run}: {reason}")

        def done(outcome: str, why: str = "", rollout_id: int | None = None) -> RetrainResult:
            return RetrainResult(run, outcome, why, version, champion, rollout_id, metrics, dataset)

        if not cfg.start_rollout:
            return done("registered", "rollouts are off (start_rollout)")
        from edgeloop.errors import EdgeloopError

        try:
            rec = self.plane.start_rollout(version, cfg.policy, actor)
        except EdgeloopError as exc:
            return done("registered", f"no rollout started: {exc}")
        return done("rolled_out", rollout_id=rec.id)

    def _artifact_bytes(self, aid: str) -> bytes | None:
        info = self.plane.models.artifact(aid)
        return None if info is None else self.plane.models.read_artifact(info, 0, info.size)

    # -- the record ------------------------------------------------------------------------
    def _begin(self, reason: str, actor: str) -> int:
        now = self.clock()
        c = retrain_runs.c
        with control(self.store) as conn:
            busy = conn.scalar(
                select(func.count())
                .select_from(retrain_runs)
                .where(c.outcome == "running", c.started_ns > now - int(self.config.stale_s * SEC))
            )
            if busy:
                raise RetrainBusy("retrain: a run is in progress (retrain_runs)")
            # A run still marked running past stale_s died with its hub: say so.
            conn.execute(
                update(retrain_runs)
                .where(c.outcome == "running")
                .values(
                    outcome="failed",
                    detail={"why": f"abandoned: still running after {self.config.stale_s:g} s"},
                    finished_ns=now,
                )
            )
            row = {
                "reason": reason,
                "actor": actor[:256],
                "outcome": "running",
                "detail": {},
                "started_ns": now,
            }
            key = conn.execute(insert(retrain_runs).values(**row)).inserted_primary_key
            assert key is not None
            return int(key[0])

    def _finish(self, r: RetrainResult) -> None:
        detail = {"why": r.why, "metrics": dict(r.metrics), "dataset": dict(r.dataset)}
        with control(self.store) as conn:
            conn.execute(
                update(retrain_runs)
                .where(retrain_runs.c.id == r.run)
                .values(
                    outcome=r.outcome,
                    version=r.version,
                    parent=r.parent,
                    rollout_id=r.rollout_id,
                    detail=detail,
                    finished_ns=self.clock(),
                )
            )

    def runs(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` runs, oldest first."""
        c = retrain_runs.c
        q = select(*retrain_runs.columns).order_by(c.id.desc()).limit(limit)
        with reading(self.store) as conn:
            rows = [dict(r) for r in conn.execute(q).mappings()]
        return rows[::-1]


def _split(
    ts: TrainingSet, fraction: float, seed: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(train, held back): a seeded permutation, the first ``fraction`` held back."""
    n = ts.rows.shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    k = max(1, round(n * fraction))
    return np.ascontiguousarray(ts.rows[np.sort(perm[k:])]), ts.rows[np.sort(perm[:k])]


class RetrainScheduler(Periodic):
    """Start a run every ``every_s`` seconds (``hub serve --retrain-every-s``) and wait
    for it (:class:`~edgeloop.hub.periodic.Periodic`); a failing or refused run waits
    for the next period."""

    name = "retrain-schedule"

    def __init__(self, service: RetrainService, every_s: float) -> None:
        super().__init__(every_s)
        self.service = service

    @property
    def runs(self) -> int:
        """Runs started (finished, refused or failed)."""
        return self.ticks + self.failures

    def job(self) -> None:
        self.service.submit(f"schedule: every {self.every_s:g} s", "schedule").result()


__all__ = [
    "OUTCOMES",
    "RetrainBusy",
    "RetrainConfig",
    "RetrainResult",
    "RetrainScheduler",
    "RetrainService",
    "retrain_config",
]

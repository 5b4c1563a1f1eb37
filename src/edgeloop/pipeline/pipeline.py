"""The edge pipeline: a spec turned into stages, run on whole frames.

``process(frame, now_ns)`` runs, in order:

1. **validation**: samples with a non-finite value or an unknown sensor index are
   dropped and counted per :class:`~edgeloop.errors.RejectReason`; the rest is kept;
2. a sort by (sensor, ts), only when the frame is not sorted already;
3. the **filters** of the spec;
4. the **summaries** (every sample that passed 2-3 is covered by exactly one row);
5. per window group: **windows** -> **features** -> each **detector** ``score`` then
   ``learn`` (with its own scores); several detectors of a group are combined by the
   elementwise maximum of their scores (see :func:`combine_scores`).

Every sample handed to :meth:`Pipeline.process` is therefore either summarised, or
counted in ``rejected`` or ``filtered``. Anonymisation is *not* applied here: local
actions need real names; the node applies :attr:`Pipeline.anonymiser` to what it sends
upstream.
"""

from __future__ import annotations

import fnmatch
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from edgeloop.detect.registry import build_detector
from edgeloop.detect.robust import RobustDetector
from edgeloop.errors import ConfigError, RejectReason
from edgeloop.pipeline.aggregate import SummaryAggregator
from edgeloop.pipeline.features import compute_features, feature_names
from edgeloop.pipeline.join import Joiner, catalog_layout, joiner_for
from edgeloop.pipeline.plan import DetectorPlan, PipelinePlan, WindowPlan, plan_of
from edgeloop.pipeline.stages import Anonymiser, FilterStage
from edgeloop.pipeline.types import Features, Scores
from edgeloop.pipeline.windows import Windower, ensure_sorted
from edgeloop.telemetry.frame import SENSOR_DTYPE, Frame, SensorCatalog
from edgeloop.telemetry.records import SummaryBatch

if TYPE_CHECKING:  # the detect package imports pipeline.types: no runtime cycle
    from edgeloop.detect.base import Detector

    # The spec's pydantic models are a launcher's business: a node builds from plans.
    from edgeloop.pipeline.spec import PipelineSpec, WindowSpec

__all__ = [
    "DetectorFactory",
    "Pipeline",
    "PipelineOutput",
    "ShadowSink",
    "combine_scores",
    "select_sensors",
]

DetectorFactory = Callable[[DetectorPlan], "Detector"]
"""Builds a detector the pipeline does not know itself (e.g. ``type: onnx``)."""

ShadowSink = Callable[[str, "Scores", "Scores | None", int, int], None]
"""Receives a shadow detector's work on one block: (group, the scores of the detector it
is compared with, its own scores or ``None`` if it failed, the compared detector's time
and its own time for the block, in ns)."""


@dataclass(frozen=True, slots=True)
class PipelineOutput:
    """What one :meth:`Pipeline.process` call produced.

    Attributes:
        features: one block per window group that completed windows in this call.
        scores: aligned with ``features``; the combined score when a group has several
            detectors (an all-zero score when it has none).
        detector_scores: aligned with ``features``; each detector's own scores by name.
        summaries: periods closed by this call, if any.
        windows: number of windows completed (all groups).
        samples: samples accepted (after validation and filters).
        rejected: samples rejected by validation in this call, per reason.
        filtered: samples dropped by filters in this call.
    """

    features: list[Features]
    scores: list[Scores]
    detector_scores: list[dict[str, Scores]]
    summaries: SummaryBatch | None
    windows: int
    samples: int
    rejected: dict[RejectReason, int] = field(default_factory=dict)
    filtered: int = 0


def select_sensors(
    catalog: SensorCatalog, spec: WindowPlan | WindowSpec, start: int = 0
) -> npt.NDArray[np.uint32]:
    """Catalog indices ``>= start`` that belong to the window group ``spec``."""
    kinds = set(spec.kinds)
    picked = [
        i
        for i in range(start, len(catalog))
        if (not kinds or catalog[i].kind in kinds)
        and (not spec.sensors or any(fnmatch.fnmatchcase(catalog[i].name, g) for g in spec.sensors))
    ]
    return np.array(picked, dtype=SENSOR_DTYPE)


def _rescale(score: npt.NDArray[np.float32], t: float) -> npt.NDArray[np.float32]:
    """Monotone map of [0, 1] onto itself that sends threshold ``t`` to 0.5."""
    if t == 0.5:
        return score
    if t <= 0.0:
        return np.where(score >= t, 0.5 + 0.5 * score, 0.0).astype(np.float32)
    if t >= 1.0:
        return np.where(score >= t, 1.0, 0.5 * score / t).astype(np.float32)
    low = 0.5 * score / t
    high = 0.5 + 0.5 * (score - t) / (1.0 - t)
    return np.where(score >= t, high, low).astype(np.float32)


def combine_scores(scores: Sequence[Scores]) -> Scores:
    """Elementwise maximum of several detectors' scores for the same windows.

    With equal thresholds the scores are compared as they are. Otherwise each is first
    mapped monotonically so its threshold lands on 0.5, and the result has threshold
    0.5: a window is anomalous exactly when at least one detector finds it so.
    ``confidence`` and ``top_feature`` come from the detector with the highest score.
    """
    if len(scores) == 1:
        return scores[0]
    ts = {s.threshold for s in scores}
    if len(ts) == 1:
        mats = [s.score for s in scores]
        threshold = scores[0].threshold
    else:
        mats = [_rescale(s.score, s.threshold) for s in scores]
        threshold = 0.5
    if len(mats) == 2:  # the common case, without stacking
        second = mats[1] > mats[0]
        a, b = scores
        return Scores(
            score=np.where(second, mats[1], mats[0]).astype(np.float32, copy=False),
            threshold=threshold,
            confidence=np.where(second, b.confidence, a.confidence),
            top_feature=np.where(second, b.top_feature, a.top_feature),
            detector=f"max({a.detector},{b.detector})",
        )
    stack = np.stack(mats)
    best = stack.argmax(axis=0)
    cols = np.arange(stack.shape[1])
    return Scores(
        score=stack[best, cols].astype(np.float32),
        threshold=threshold,
        confidence=np.stack([s.confidence for s in scores])[best, cols],
        top_feature=np.stack([s.top_feature for s in scores])[best, cols],
        detector="max(" + ",".join(s.detector for s in scores) + ")",
    )


@dataclass(slots=True)
class _Group:
    spec: WindowPlan
    windower: Windower
    names: tuple[str, ...]
    detectors: list[tuple[str, Detector]]
    joiner: Joiner | None = None
    # A challenger scoring the same windows, never acted on: (compared with, detector).
    shadow: tuple[str, Detector] | None = None


class Pipeline:
    """Filters, windows, features, detectors and summaries composed from a spec.

    Build it with :meth:`from_spec`. Pure: no I/O, time comes in as ``now_ns``.
    """

    def __init__(
        self,
        spec: PipelinePlan,
        catalog: SensorCatalog,
        groups: list[_Group],
        filters: list[FilterStage],
        aggregator: SummaryAggregator | None,
        anonymiser: Anonymiser | None,
    ) -> None:
        self.spec = spec
        self.catalog = catalog
        self.filters = filters
        self.aggregator = aggregator
        self.anonymiser = anonymiser
        self._groups = groups
        self._known = len(catalog)
        self.samples_in = 0
        self.rejected: dict[RejectReason, int] = {}
        # Time spent in each detector's score + learn, by (group, detector name).
        self.detector_ns: Counter[tuple[str, str]] = Counter()
        # Sees the shadow detectors' scores (see set_shadow); set by the node.
        self.shadow_sink: ShadowSink | None = None
        self._filtered_before = 0  # dropped by filters a reconfiguration replaced

    @classmethod
    def from_spec(
        cls,
        spec: PipelinePlan | PipelineSpec,
        catalog: SensorCatalog,
        detector_factory: DetectorFactory | None = None,
        anon_key: bytes | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Pipeline:
        """Compose the stages ``spec`` describes for the sensors of ``catalog``.

        Args:
            spec: a validated spec (see :func:`~edgeloop.pipeline.spec.load_spec`) or
                its plan (:mod:`edgeloop.pipeline.plan`, what a running node gets).
            catalog: the node's sensors; sensors added later join matching groups.
            detector_factory: builds detectors other than ``robust`` (e.g. ONNX).
            anon_key: the anonymisation key; default: ``environ[spec.anonymise.key_env]``.
            environ: where to look the key up (default ``os.environ``).

        Raises:
            ConfigError: a detector type without factory, or a hash without a key.
        """
        if not isinstance(spec, PipelinePlan):
            spec = plan_of(spec)
        groups: list[_Group] = []
        for w in spec.windows:
            bands = w.spectrum.bands if w.spectrum else 0
            sensors = select_sensors(catalog, w)
            names = feature_names(w.features, bands)
            joiner = joiner_for(catalog, sensors) if w.join == "machine" else None
            if joiner is not None and not joiner.channels:
                raise ConfigError(
                    f"windows[{w.group}]: join: machine needs the group's sensors in the "
                    "catalog when the pipeline is built (none matched)"
                )
            if joiner is not None:
                names = tuple(f"{c}.{n}" for c in joiner.channels for n in names)
            groups.append(_Group(w, Windower(w.group, sensors, w.size, w.step), names, [], joiner))
        by_name = {g.spec.group: g for g in groups}
        for i, d in enumerate(spec.detectors):
            g = by_name[d.group]
            name = d.name or d.type
            det: Detector
            if d.type == "robust":
                det = RobustDetector(len(catalog), g.names, name=name, **d.params)
            elif d.type != "onnx":
                try:
                    det = build_detector(d.type, len(catalog), g.names, d.params, name)
                except ConfigError as e:
                    raise ConfigError(f"detectors[{i}]: {e}") from e
            elif detector_factory is None:
                raise ConfigError(
                    f"detectors[{i}]: type {d.type!r} needs a detector_factory "
                    "(Pipeline.from_spec(..., detector_factory=...))"
                )
            else:
                det = detector_factory(d)
            g.detectors.append((name, det))
        filters = [FilterStage(catalog, f.mode, f.kinds, f.sensors, f.range) for f in spec.filters]
        agg = None
        if spec.summaries is not None:
            s = spec.summaries
            late = None if s.lateness_s is None else round(s.lateness_s * 1e9)
            agg = SummaryAggregator(round(s.period_s * 1e9), catalog.names(), late)
        anon = None
        a = spec.anonymise
        if a.hash or a.drop:
            key = anon_key
            if key is None and a.hash:
                env = os.environ if environ is None else environ
                raw = env.get(a.key_env, "")
                if not raw:
                    raise ConfigError(
                        f"anonymise.key_env: environment variable {a.key_env} is not set "
                        "(the hash key)"
                    )
                key = raw.encode()
            anon = Anonymiser(key or b"", a.hash, a.drop)
        return cls(spec, catalog, groups, filters, agg, anon)

    # -- running --------------------------------------------------------------------------
    def process(self, frame: Frame, now_ns: int) -> PipelineOutput:
        """Run every stage on ``frame``; ``now_ns`` closes summary periods.

        The same as :meth:`prepare`, then :meth:`detect`, then :meth:`summarise`. A node
        calls the three itself so that it can act on the detection before the
        bookkeeping (summaries) is done.
        """
        prepared, rejected, filtered = self.prepare(frame, now_ns)
        det = self.detect(prepared)
        return PipelineOutput(
            features=det.features,
            scores=det.scores,
            detector_scores=det.detector_scores,
            summaries=self.summarise(prepared, now_ns),
            windows=det.windows,
            samples=len(prepared),
            rejected=rejected,
            filtered=filtered,
        )

    def prepare(
        self, frame: Frame, now_ns: int, *, validated: bool = False
    ) -> tuple[Frame, dict[RejectReason, int], int]:
        """Validate, sort and filter ``frame``: returns (frame, rejected, filtered).

        ``validated=True`` skips the check for non-finite values and unknown sensors,
        for callers that have already run the stricter
        :class:`~edgeloop.telemetry.validate.FrameValidator` (the node does).
        """
        self._sync_catalog()
        self.samples_in += len(frame)
        rejected: dict[RejectReason, int] = {}
        if not validated:
            frame, rejected = self._validate(frame)
        frame = ensure_sorted(frame)
        n_valid = len(frame)
        for f in self.filters:
            frame = f.process(frame, now_ns)
        return frame, rejected, n_valid - len(frame)

    def detect(self, frame: Frame) -> PipelineOutput:
        """Windows, features and detectors on a :meth:`prepare`-d frame (no summaries)."""
        feats_out: list[Features] = []
        scores_out: list[Scores] = []
        per_det: list[dict[str, Scores]] = []
        n_windows = 0
        for feats, combined, own in self.detect_groups(frame):
            n_windows += len(feats)
            feats_out.append(feats)
            scores_out.append(combined)
            per_det.append(own)
        return PipelineOutput(
            features=feats_out,
            scores=scores_out,
            detector_scores=per_det,
            summaries=None,
            windows=n_windows,
            samples=len(frame),
        )

    def detect_groups(self, frame: Frame) -> Iterator[tuple[Features, Scores, dict[str, Scores]]]:
        """Like :meth:`detect`, one window group at a time, as soon as each is scored.

        Yields (features, combined scores, scores by detector) for every group that
        completed windows. A node acts on a group's scores before the next group runs.
        """
        for g in self._groups:
            w = g.windower.process_sorted(frame)
            if len(w) == 0:
                continue
            bands = g.spec.spectrum.bands if g.spec.spectrum else 0
            log = g.spec.spectrum.log if g.spec.spectrum else True
            feats = compute_features(w, g.spec.features, bands, log)
            if g.joiner is not None:
                feats = g.joiner.process(feats)
                if len(feats) == 0:
                    continue
            own: dict[str, Scores] = {}
            took: dict[str, int] = {}
            for name, det in g.detectors:
                t = perf_counter_ns()
                sc = det.score(feats)
                det.learn(feats, sc)
                took[name] = perf_counter_ns() - t
                self.detector_ns[(g.spec.group, name)] += took[name]
                own[name] = sc
            yield feats, combine_scores(list(own.values())) if own else _no_scores(len(feats)), own
            # The shadow scores after the caller has acted on the group's scores, so it
            # never delays an action; its scores go to the sink only, never into `own`.
            if g.shadow is not None and self.shadow_sink is not None:
                self._score_shadow(g, feats, own, took)

    def summarise(self, frame: Frame, now_ns: int) -> SummaryBatch | None:
        """Feed a :meth:`prepare`-d frame to the summaries; return closed periods."""
        return self.aggregator.process(frame, now_ns) if self.aggregator else None

    def flush(self) -> SummaryBatch | None:
        """Emit every open summary period (at shutdown). Incomplete windows are dropped."""
        return self.aggregator.flush() if self.aggregator else None

    # -- introspection ------------------------------------------------------------------
    @property
    def groups(self) -> dict[str, npt.NDArray[np.uint32]]:
        """Sensors of each window group."""
        return {g.spec.group: g.windower.sensors for g in self._groups}

    def detectors(self, group: str) -> dict[str, Detector]:
        """The detectors of ``group`` by name."""
        return dict(self._group(group).detectors)

    # -- model delivery -------------------------------------------------------------------
    def replace_detector(self, group: str, name: str, detector: Detector) -> Detector | None:
        """Let ``detector`` take over as ``name`` in ``group``; return the one it replaced.

        Between two calls of :meth:`process` (or of :meth:`detect_groups`) this is a
        single list assignment: the group's windows, the other detectors and the
        summaries are untouched, so no window is lost or scored twice. A group without
        a detector of that name gets it added (``None`` is returned).

        Raises:
            ConfigError: no window group ``group`` (the groups are named).
        """
        g = self._group(group)
        for i, (n, old) in enumerate(g.detectors):
            if n == name:
                g.detectors[i] = (name, detector)
                return old
        g.detectors.append((name, detector))
        return None

    def set_shadow(
        self, group: str, detector: Detector | None, compare_with: str = ""
    ) -> Detector | None:
        """Run ``detector`` in shadow on ``group`` (``None``: stop); return the previous one.

        A shadow detector scores (and learns from) every window of the group, after the
        group's own detectors, and hands its scores with those of the detector named
        ``compare_with`` to :attr:`shadow_sink`. Its scores never enter the combined
        score, so nothing is decided or acted on from them. An exception it raises is
        reported to the sink as ``None`` scores and never reaches the caller.

        Raises:
            ConfigError: no window group ``group``, or ``compare_with`` is not one of its
                detectors.
        """
        g = self._group(group)
        names = [n for n, _ in g.detectors]
        if detector is not None and compare_with not in names:
            raise ConfigError(
                f"shadow: group {group!r} has no detector {compare_with!r} to compare with "
                f"(detectors: {names})"
            )
        old = g.shadow[1] if g.shadow is not None else None
        g.shadow = None if detector is None else (compare_with, detector)
        return old

    def feature_names(self, group: str) -> tuple[str, ...]:
        """The feature names of ``group``'s blocks, in column order."""
        return self._group(group).names

    def shadow(self, group: str) -> Detector | None:
        """The shadow detector of ``group``, if any."""
        g = self._group(group)
        return g.shadow[1] if g.shadow is not None else None

    @property
    def filtered(self) -> int:
        """Samples dropped by filters so far."""
        return self._filtered_before + sum(f.dropped_total for f in self.filters)

    def _adopt(self, other: Pipeline) -> None:
        """Run ``other``'s plan, groups, filters and anonymiser from now on (counters,
        summaries and sinks stay): the last step of
        :func:`edgeloop.pipeline.reconfigure.reconfigure`, which decides what they keep."""
        self._filtered_before = self.filtered
        self.spec = other.spec
        self._groups = other._groups
        self.filters = other.filters
        self.anonymiser = other.anonymiser

    # -- internals ----------------------------------------------------------------------
    def _group(self, group: str) -> _Group:
        for g in self._groups:
            if g.spec.group == group:
                return g
        raise ConfigError(
            f"window group {group!r} is not in the pipeline (groups: "
            f"{[g.spec.group for g in self._groups]})"
        )

    def _score_shadow(
        self, g: _Group, feats: Features, own: dict[str, Scores], took: dict[str, int]
    ) -> None:
        assert g.shadow is not None and self.shadow_sink is not None
        compare_with, det = g.shadow
        t = perf_counter_ns()
        sc: Scores | None
        try:
            sc = det.score(feats)
            det.learn(feats, sc)
        except Exception:  # a challenger's failure is evidence for the rollout, not a crash
            sc = None
        elapsed = perf_counter_ns() - t
        self.shadow_sink(g.spec.group, own[compare_with], sc, took[compare_with], elapsed)

    def _validate(self, frame: Frame) -> tuple[Frame, dict[RejectReason, int]]:
        if len(frame) == 0:
            return frame, {}
        finite = np.isfinite(frame.value)
        known = int(frame.sensor.max()) < len(self.catalog)
        all_finite = bool(finite.all())
        if known and all_finite:
            return frame, {}
        keep = finite
        rejected: dict[RejectReason, int] = {}
        if not known:
            ok_sensor = frame.sensor < len(self.catalog)
            rejected[RejectReason.UNKNOWN_SENSOR] = int((~ok_sensor).sum())
            keep = keep & ok_sensor
            bad_value = ~finite & ok_sensor
        else:
            bad_value = ~finite
        if not all_finite:
            rejected[RejectReason.NON_FINITE] = int(bad_value.sum())
        rejected = {k: v for k, v in rejected.items() if v}
        for k, v in rejected.items():
            self.rejected[k] = self.rejected.get(k, 0) + v
        return frame.take(keep), rejected

    def _sync_catalog(self) -> None:
        if len(self.catalog) == self._known:
            return
        layout = None
        for g in self._groups:
            added = select_sensors(self.catalog, g.spec, self._known)
            g.windower.add_sensors(added)
            if g.joiner is not None:
                layout = layout or catalog_layout(self.catalog)
                g.joiner.grow(*layout)
                g.joiner.add_sensors(added)
        if self.aggregator is not None:
            self.aggregator.set_sensor_names(self.catalog.names())
        self._known = len(self.catalog)


def _no_scores(n: int) -> Scores:
    return Scores(
        np.zeros(n, np.float32), 1.0, np.zeros(n, np.float32), np.full(n, -1, np.int32), "none"
    )

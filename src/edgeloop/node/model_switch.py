"""Put delivered models to work: the acting model takes over a detector, a shadow runs beside.

Two steps, so that nothing slow happens on the data path:

1. :meth:`ModelSwitch.load` (a worker thread): read each model file, check that its bytes
   hash to the artifact id the node verified (a file changed on disk since is refused),
   build the :class:`~edgeloop.detect.onnx_model.OnnxDetector`, and check that it reads
   exactly the features of its window group — a model that does not fit is refused here,
   before it could fail on the next frame.
2. :meth:`ModelSwitch.apply` (the loop thread, between two frames): the acting model
   replaces the group's detector (``Pipeline.replace_detector``: windows and other
   detectors untouched), the shadow model is set or cleared (``Pipeline.set_shadow``),
   and the :class:`~edgeloop.node.shadow.ShadowMonitor` starts a new period.

The detector objects of the active and the previous acting model stay in memory, so a
rollback to the previous version is a pointer change, not a reload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeloop.desired.documents import ModelSlot
from edgeloop.errors import ConfigError, ModelError
from edgeloop.node.shadow import ShadowMonitor
from edgeloop.outbox.base import NewEntry
from edgeloop.pipeline.pipeline import Pipeline
from edgeloop.pipeline.plan import plan_from_data
from edgeloop.pipeline.reconfigure import Reconfiguration, reconfigure

if TYPE_CHECKING:
    from edgeloop.detect.base import Detector


@dataclass(frozen=True, slots=True)
class Loaded:
    """Models ready to take over: (slot, detector) for the acting and the shadow model."""

    group: str
    act: tuple[ModelSlot, Detector]
    shadow: tuple[ModelSlot, Detector] | None = None


class ModelSwitch:
    """Swaps delivered ONNX models into a running pipeline (see the module docstring).

    Args:
        pipeline: the node's pipeline.
        monitor: receives the shadow's scores (becomes the pipeline's shadow sink).
        detector: name of the detector the acting model takes over; ``None``: the
            group's ONNX detector if it has exactly one, else ``"onnx"``.
        default_group: the window group of models whose metadata names none.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        monitor: ShadowMonitor,
        detector: str | None = None,
        default_group: str | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.monitor = monitor
        self.detector = detector
        self.default_group = default_group
        pipeline.shadow_sink = monitor
        self.own_plan = pipeline.spec  # the node's configured pipeline: desired ``{}``
        self._kept: dict[str, Detector] = {}
        self.retired: Detector | None = None
        self.swaps = 0

    # -- worker thread -------------------------------------------------------------------
    def load(self, models: tuple[ModelSlot, ...], path_of: Callable[[str], Path]) -> Loaded:
        """Build (or reuse) the detectors of ``models``.

        Raises:
            ModelError: a file is missing, does not hash to its artifact id, is not a
                loadable model, names a window group the pipeline lacks, or reads other
                features than its group computes; both models must score one group.
        """
        built: dict[str, tuple[ModelSlot, Detector, str]] = {}
        for slot in models:
            det = self._kept.get(slot.artifact)
            if det is None:
                det = self._build(slot, path_of(slot.artifact))
            group = self._group_of(slot, det)
            built[slot.mode] = (slot, det, group)
        act = built.get("act")
        if act is None:
            raise ModelError("models: no acting model in the desired state")
        shadow = built.get("shadow")
        if shadow is not None and shadow[2] != act[2]:
            raise ModelError(
                f"models: shadow {shadow[0].version} is for group {shadow[2]!r}, acting "
                f"{act[0].version} for {act[2]!r}; a shadow must score the acting model's windows"
            )
        return Loaded(act[2], (act[0], act[1]), (shadow[0], shadow[1]) if shadow else None)

    def _build(self, slot: ModelSlot, path: Path) -> Detector:
        from edgeloop.detect.onnx_model import OnnxDetector  # onnxruntime: only with models

        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{path}: cannot read model {slot.version} ({exc.strerror})") from None
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest != slot.artifact or len(data) != slot.size:
            raise ModelError(
                f"{path}: model {slot.version} hashes to {digest} ({len(data)} bytes), "
                f"expected {slot.artifact} ({slot.size} bytes); refusing to load it"
            )
        return OnnxDetector(data, name=f"{slot.version}")

    def _group_of(self, slot: ModelSlot, det: Detector) -> str:
        meta_group = getattr(getattr(det, "meta", None), "group", "")
        group = meta_group or self.default_group
        if not group:
            raise ModelError(
                f"model {slot.version}: its metadata names no window group and "
                "models.window_group is not set"
            )
        try:
            names = self.pipeline.feature_names(group)
        except ConfigError as exc:
            raise ModelError(f"model {slot.version}: {exc}") from None
        want = tuple(getattr(det, "feature_names", ()))
        if set(want) != set(names) or len(want) != len(names):
            missing = [n for n in want if n not in names]
            extra = [n for n in names if n not in want]
            raise ModelError(
                f"model {slot.version}: reads features the group {group!r} does not compute "
                f"{missing} and ignores {extra}"
            )
        return group

    # -- loop thread -----------------------------------------------------------------------
    def target(self, group: str) -> str:
        """Name of the detector an acting model takes over in ``group``."""
        if self.detector is not None:
            return self.detector
        from edgeloop.detect.onnx_model import OnnxDetector

        onnx = [n for n, d in self.pipeline.detectors(group).items() if isinstance(d, OnnxDetector)]
        return onnx[0] if len(onnx) == 1 else "onnx"

    def apply(self, loaded: Loaded, now_ns: int) -> NewEntry | None:
        """Make ``loaded`` the running models, between two frames; return the shadow
        measurement of the period this ends (if any). Cannot fail: all checks ran in
        :meth:`load`."""
        name = self.target(loaded.group)
        act_slot, act = loaded.act
        old = self.pipeline.replace_detector(loaded.group, name, act)
        if old is not None and old is not act:
            self.retired = old
        shadow = loaded.shadow
        self.pipeline.set_shadow(loaded.group, shadow[1] if shadow else None, compare_with=name)
        entry = self.monitor.begin(act_slot.version, shadow[0].version if shadow else None, now_ns)
        keep = {act_slot.artifact: act}
        if shadow is not None:
            keep[shadow[0].artifact] = shadow[1]
        self._kept = keep
        self.swaps += 1
        return entry

    def apply_pipeline(self, data: Mapping[str, Any]) -> Reconfiguration:
        """Run the desired pipeline config, between two frames: ``{}`` is the node's own
        configured pipeline, anything else the plan data the hub validated (a spec with
        its defaults). What the change does not touch keeps running
        (``edgeloop.pipeline.reconfigure``), the delivered models included.

        Raises:
            ConfigError: the plan does not parse or cannot be applied live; nothing changed.
        """
        plan = self.own_plan if not data else plan_from_data(data)
        return reconfigure(self.pipeline, plan)

    def keep_previous(self, previous: ModelSlot | None) -> None:
        """Keep the retired acting model's object for ``previous`` (rollback without reload)."""
        if previous is not None and self.retired is not None:
            self._kept.setdefault(previous.artifact, self.retired)

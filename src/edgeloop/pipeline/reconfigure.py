"""Apply a new pipeline plan to a running pipeline, keeping what the change does not touch.

A fleet operator changes a node group's pipeline (windows, features, detectors and their
thresholds, filters, anonymisation) at the hub; each node of the group applies it live,
between two frames, without a restart. :func:`reconfigure` decides, part by part, what
survives:

* a **window group** whose window plan is unchanged keeps its windower (and joiner): the
  samples of its open windows are not lost, and its windows stay evenly spaced; a group
  whose plan changed starts new windows (the samples of its open windows are dropped,
  as at a restart); a new group starts empty; a group the plan drops is gone;
* a **detector** keeps its object (its learned baseline, or the delivered model that
  took it over) when its plan entry is unchanged and its group reads the same feature
  names; otherwise it is built afresh from the plan (and warms up again);
* an **ONNX detector** is never built from a path the new plan names: it must be the
  same object as before — the configured model, or the model delivered to that
  (group, name) — reading the same features; models are delivered through the registry,
  not through pipeline configs;
* the **shadow** model of a group moves with the group, and must still have its
  comparison detector;
* **filters** and **anonymisation** are taken from the new plan (filters' counters
  continue); **summaries** must not change: a new summary period would split a period
  already open into two rows for the same sensor and start, which the hub's accounting
  counts as duplicates. Changing it needs a restart of the node, and is refused.

Either the whole plan is applied or nothing is: every check runs before the first
assignment, and a refusal is a :class:`~edgeloop.errors.ConfigError` naming the part.
Pure: no I/O (the anonymisation key comes from the environment as at start-up).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeloop.errors import ConfigError
from edgeloop.pipeline.pipeline import DetectorFactory, Pipeline
from edgeloop.pipeline.plan import DetectorPlan, PipelinePlan

if TYPE_CHECKING:
    from edgeloop.detect.base import Detector


@dataclass(frozen=True, slots=True)
class Reconfiguration:
    """What :func:`reconfigure` did, by window group and ``group/detector`` name."""

    kept_groups: tuple[str, ...]
    restarted_groups: tuple[str, ...]
    added_groups: tuple[str, ...]
    removed_groups: tuple[str, ...]
    kept_detectors: tuple[str, ...]
    built_detectors: tuple[str, ...]

    def describe(self) -> str:
        parts = []
        for label, names in (
            ("kept", self.kept_groups),
            ("restarted", self.restarted_groups),
            ("added", self.added_groups),
            ("removed", self.removed_groups),
        ):
            if names:
                parts.append(f"{label} groups {', '.join(names)}")
        if self.built_detectors:
            parts.append(f"new detectors {', '.join(self.built_detectors)}")
        return "; ".join(parts) or "no change"


def _entries(plan: PipelinePlan) -> dict[tuple[str, str], DetectorPlan]:
    return {(d.group, d.name or d.type): d for d in plan.detectors}


def reconfigure(
    pipeline: Pipeline,
    plan: PipelinePlan,
    detector_factory: DetectorFactory | None = None,
    environ: Mapping[str, str] | None = None,
) -> Reconfiguration:
    """Make ``pipeline`` run ``plan``, keeping what the change does not touch.

    Call it between two frames (the node's loop thread). See the module docstring for
    what is kept. ``detector_factory`` builds detector types the pipeline does not know
    itself (other than ONNX, which is never built here).

    Raises:
        ConfigError: the plan changes the summaries, names an ONNX model that is not
            already running with the same features, drops the comparison detector of a
            running shadow, or does not build (an unknown detector type, a parameter out
            of range, a missing anonymisation key); ``pipeline`` is then unchanged.
    """
    old_plan = pipeline.spec
    if plan.summaries != old_plan.summaries:
        raise ConfigError(
            f"summaries: {old_plan.summaries} -> {plan.summaries}: a new summary period "
            "applies at the node's next start, not live (an open period would be split)"
        )
    old_groups = {g.spec.group: g for g in pipeline._groups}
    old_entries = _entries(old_plan)
    new_entries = _entries(plan)

    def reuse(entry: DetectorPlan) -> Detector:
        """ONNX entries: the running object of that (group, name), never a new file."""
        name = entry.name or entry.type
        where = f"detectors[{entry.group}/{name}]"
        g = old_groups.get(entry.group)
        running = dict(g.detectors).get(name) if g is not None else None
        if running is None:
            raise ConfigError(
                f"{where}: an onnx detector can only keep a model already running there; "
                "deliver new models through the registry, not a pipeline config"
            )
        return running

    def factory(entry: DetectorPlan) -> Detector:
        if entry.type == "onnx":
            return reuse(entry)
        if detector_factory is None:
            raise ConfigError(f"detectors[{entry.group}]: no factory for type {entry.type!r}")
        return detector_factory(entry)

    fresh = Pipeline.from_spec(plan, pipeline.catalog, detector_factory=factory, environ=environ)

    kept_groups, restarted, added, kept_dets, built = [], [], [], [], []
    for g in fresh._groups:
        name = g.spec.group
        old = old_groups.get(name)
        if old is None:
            added.append(name)
        elif old.spec == g.spec and old.names == g.names:
            g.windower, g.joiner = old.windower, old.joiner
            kept_groups.append(name)
        else:
            restarted.append(name)
        old_dets = dict(old.detectors) if old is not None else {}
        same_names = old is not None and old.names == g.names
        for i, (det_name, _det) in enumerate(g.detectors):
            key = (name, det_name)
            entry = new_entries[key]
            label = f"{name}/{det_name}"
            if entry.type == "onnx":
                if not same_names:
                    raise ConfigError(
                        f"detectors[{label}]: its group's features change "
                        f"({old.names if old else ()} -> {g.names}); the running model reads "
                        "the old ones"
                    )
                kept_dets.append(label)
            elif same_names and old_entries.get(key) == entry and det_name in old_dets:
                g.detectors[i] = (det_name, old_dets[det_name])
                kept_dets.append(label)
            else:
                built.append(label)
        # Detectors a delivered model added (no plan entry: ModelSwitch's default name)
        # come along, reading the same features.
        for det_name, det in old_dets.items():
            if (name, det_name) in old_entries or det_name in dict(g.detectors):
                continue
            if not same_names:
                raise ConfigError(
                    f"detectors[{name}/{det_name}]: a delivered model acts here; the new "
                    "plan changes the group's features"
                )
            g.detectors.append((det_name, det))
            kept_dets.append(f"{name}/{det_name}")
        if old is not None and old.shadow is not None:
            compare_with, shadow = old.shadow
            if not same_names or compare_with not in dict(g.detectors):
                raise ConfigError(
                    f"windows[{name}]: a shadow model runs beside {compare_with!r}; the new "
                    "plan changes the group's features or drops that detector"
                )
            g.shadow = (compare_with, shadow)
    removed = [n for n in old_groups if n not in {g.spec.group for g in fresh._groups}]
    for n in removed:
        acting = [d for d, _ in old_groups[n].detectors if old_entries.get((n, d)) is None]
        onnx = [d.name or d.type for d in old_plan.detectors if d.group == n and d.type == "onnx"]
        if old_groups[n].shadow is not None or acting or onnx:
            raise ConfigError(f"windows[{n}]: models act on this group; it cannot be removed")

    # Every check passed: switch in one go.
    pipeline._adopt(fresh)
    return Reconfiguration(
        tuple(kept_groups),
        tuple(restarted),
        tuple(added),
        tuple(removed),
        tuple(kept_dets),
        tuple(built),
    )


__all__ = ["Reconfiguration", "reconfigure"]

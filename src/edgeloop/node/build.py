"""Assemble a node from its config: pipeline spec, detectors, outbox, uplink.

The one place that turns configuration into objects, so every tier and every entry point
(gateway process, simulator, tests) builds nodes the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edgeloop.detect.base import Detector
from edgeloop.errors import ConfigError
from edgeloop.node.actions import ActionRegistry
from edgeloop.node.config import NodeConfig
from edgeloop.node.core import NodeCore
from edgeloop.outbox.base import OutboxStore
from edgeloop.outbox.factory import open_outbox
from edgeloop.pipeline.pipeline import Pipeline
from edgeloop.pipeline.plan import DetectorPlan, PipelinePlan
from edgeloop.pipeline.types import Features, Scores
from edgeloop.telemetry.frame import SensorCatalog
from edgeloop.transport.base import Transport

if TYPE_CHECKING:  # validating a spec is a launcher's job (pydantic): imported on use
    from edgeloop.node.drift_sketches import SketchCollector
    from edgeloop.node.reconcile import Reconciler
    from edgeloop.node.samples import SampleCollector
    from edgeloop.pipeline.spec import PipelineSpec


def preset_path(name: str) -> Path:
    """Path of a bundled pipeline preset (``edgeloop/presets/<name>.yaml``)."""
    from importlib import resources  # a launcher's step (~1 MB of imports a node skips)

    ref = resources.files("edgeloop") / "presets" / f"{name}.yaml"
    return Path(str(ref))


def resolve_spec(pipeline: str) -> PipelineSpec:
    """Load a pipeline spec from a YAML path or the name of a bundled preset."""
    from edgeloop.pipeline.spec import load_spec

    p = Path(pipeline)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return load_spec(p)
    preset = preset_path(pipeline)
    if not preset.exists():
        raise ConfigError(f"pipeline: {pipeline!r} is neither a YAML file nor a bundled preset")
    return load_spec(preset)


def make_detector(entry: DetectorPlan) -> Detector:
    """Detector factory for spec entries the pipeline does not build itself (ONNX)."""
    if entry.type == "onnx":
        from edgeloop.detect.onnx_model import OnnxDetector

        if entry.model is None:
            raise ConfigError("detectors: an onnx detector needs a model path")
        threshold = entry.params.get("threshold")
        return OnnxDetector(Path(entry.model), threshold=threshold, name=entry.name or "onnx")
    raise ConfigError(f"detectors: unknown detector type {entry.type!r}")


def build_core(
    config: NodeConfig,
    catalog: SensorCatalog,
    actions: ActionRegistry | None = None,
    spec: PipelinePlan | PipelineSpec | None = None,
) -> NodeCore:
    """The node's core; ``spec`` defaults to resolving ``config.pipeline`` (a launcher)."""
    spec = spec or resolve_spec(config.pipeline)
    pipeline = Pipeline.from_spec(spec, catalog, detector_factory=make_detector)
    return NodeCore(config, catalog, pipeline, actions)


def build_outbox(config: NodeConfig) -> OutboxStore:
    return open_outbox(config.outbox.url, budget_bytes=config.outbox.budget_bytes)


def build_transport(config: NodeConfig) -> Transport | None:
    up = config.uplink
    if up.kind == "none":
        return None
    if up.kind == "http":
        from edgeloop.transport.http import HttpTransport

        assert up.url is not None
        return HttpTransport(up.url, timeout_s=up.timeout_s)
    if up.kind == "mqtt":
        # paho-mqtt is imported only by nodes whose uplink is MQTT (docs/footprint.md).
        from edgeloop.transport.mqtt import MqttTransport

        assert up.host is not None
        return MqttTransport(
            up.host,
            up.port,
            up.tenant or config.tenant,
            config.node_id,
            timeout_s=up.timeout_s,
            keepalive_s=up.keepalive_s,
        )
    raise ConfigError("uplink.kind 'inproc' needs a receiver object; build InProcTransport in code")


def add_score_sink(core: NodeCore, sink: Callable[[Features, Scores], None]) -> None:
    """Feed ``core``'s scored blocks (features, combined scores) to ``sink`` too."""
    before = core.score_sink
    if before is None:
        core.score_sink = sink
        return

    def both(feats: Features, scores: Scores) -> None:
        before(feats, scores)
        sink(feats, scores)

    core.score_sink = both


def attach_sketches(config: NodeConfig, core: NodeCore) -> SketchCollector:
    """Drift sketches (:mod:`edgeloop.node.drift_sketches`) of the blocks ``core`` scores."""
    from edgeloop.node.drift_sketches import SketchCollector

    collector = SketchCollector(config.node_id)
    add_score_sink(core, collector)
    return collector


def build_reconciler(
    config: NodeConfig,
    pipeline: Pipeline,
    outbox: OutboxStore,
    clock: Callable[[], int],
    link_up: Callable[[], bool],
    core: NodeCore | None = None,
) -> Reconciler:
    """The node's model reconciler from ``config.models`` (its modules load only then).
    With ``models.samples`` and the node's ``core``, it also sends curated normal
    windows (:func:`attach_samples`)."""
    from edgeloop.node.fetch import ControlClient
    from edgeloop.node.model_store import ModelStore
    from edgeloop.node.model_switch import ModelSwitch
    from edgeloop.node.reconcile import Reconciler
    from edgeloop.node.shadow import ShadowMonitor

    m = config.models
    if m is None:
        raise ConfigError("models: not configured")
    url = m.hub_url or config.uplink.url
    if not url:
        raise ConfigError("models.hub_url: required unless uplink.kind is 'http'")
    return Reconciler(
        config.node_id,
        ControlClient(url, timeout_s=m.timeout_s),
        ModelStore(m.dir, config.node_id),
        ModelSwitch(pipeline, ShadowMonitor(config.node_id), m.detector, m.window_group),
        list(m.trusted_keys),
        clock=clock,
        append=outbox.append,
        link_up=link_up,
        chunk_size=m.chunk_bytes,
        max_failures=m.max_failures,
        every_s=m.reconcile_every_s,
        retry_min_s=m.retry_min_s,
        retry_max_s=m.retry_max_s,
        fleet_group=m.fleet_group,
        sketches=attach_sketches(config, core) if core is not None else None,
        samples=attach_samples(config, core) if m.samples and core else None,
    )


def attach_samples(config: NodeConfig, core: NodeCore) -> SampleCollector:
    """A :class:`~edgeloop.node.samples.SampleCollector` fed by ``core``'s scored blocks
    (added to ``core.score_sink``, beside any sink already there)."""
    from edgeloop.node.samples import SampleCollector, open_machines_of

    assert config.models is not None and config.models.samples is not None
    c = config.models.samples
    machines = core.catalog.machines()
    collector: SampleCollector | None = None

    def tainting() -> list[str]:
        # The acting model's own alarms are left out row by row (by score); an incident
        # another group raised (a temperature alarm) leaves out the machine's rows too.
        return core.decider.open_incidents_outside(collector.group if collector else None)

    collector = SampleCollector(
        config.node_id,
        open_machines_of(tainting, machines),
        core.catalog.machine_codes(),
        max_rows=c.max_rows,
        max_bytes=c.max_bytes,
        max_score_ratio=c.max_score_ratio,
        seed=c.seed,
    )
    add_score_sink(core, collector)
    return collector

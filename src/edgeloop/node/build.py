"""Assemble a node from its config: pipeline spec, detectors, outbox, uplink.

The one place that turns configuration into objects, so every tier and every entry point
(gateway process, simulator, tests) builds nodes the same way.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from edgeloop.detect.base import Detector
from edgeloop.errors import ConfigError
from edgeloop.node.actions import ActionRegistry
from edgeloop.node.config import NodeConfig
from edgeloop.node.core import NodeCore
from edgeloop.outbox.base import OutboxStore
from edgeloop.outbox.factory import open_outbox
from edgeloop.pipeline.pipeline import Pipeline
from edgeloop.pipeline.spec import PipelineSpec, load_spec
from edgeloop.telemetry.frame import SensorCatalog
from edgeloop.transport.base import Transport


def preset_path(name: str) -> Path:
    """Path of a bundled pipeline preset (``edgeloop/presets/<name>.yaml``)."""
    ref = resources.files("edgeloop") / "presets" / f"{name}.yaml"
    return Path(str(ref))


def resolve_spec(pipeline: str) -> PipelineSpec:
    """Load a pipeline spec from a YAML path or the name of a bundled preset."""
    p = Path(pipeline)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return load_spec(p)
    preset = preset_path(pipeline)
    if not preset.exists():
        raise ConfigError(f"pipeline: {pipeline!r} is neither a YAML file nor a bundled preset")
    return load_spec(preset)


def make_detector(entry: Any) -> Detector:
    """Detector factory for spec entries the pipeline does not build itself (ONNX)."""
    if entry.type == "onnx":
        from edgeloop.detect.onnx_model import OnnxDetector

        threshold = entry.params.get("threshold")
        return OnnxDetector(Path(entry.model), threshold=threshold, name=entry.name or "onnx")
    raise ConfigError(f"detectors: unknown detector type {entry.type!r}")


def build_core(
    config: NodeConfig,
    catalog: SensorCatalog,
    actions: ActionRegistry | None = None,
    spec: PipelineSpec | None = None,
) -> NodeCore:
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
    raise ConfigError("uplink.kind 'inproc' needs a receiver object; build InProcTransport in code")

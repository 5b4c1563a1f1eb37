"""The edge pipeline: windows, features, filters, summaries, anonymisation, and the spec.

Everything here is pure and vectorized over whole frames. Typical use::

    from edgeloop import pipeline

    spec = pipeline.load_preset("factory")
    pipe = pipeline.Pipeline.from_spec(spec, catalog)
    out = pipe.process(frame, now_ns)

Names are imported lazily (PEP 562): ``edgeloop.pipeline.types``, which the detect and
node packages import, stays cheap and free of import cycles (the pipeline composes
detectors, detectors use the pipeline's value types).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeloop._lazy import lazy_exports

if TYPE_CHECKING:
    from edgeloop.pipeline.aggregate import SummaryAggregator
    from edgeloop.pipeline.features import (
        FEATURES,
        band_energies,
        compute_features,
        feature_names,
    )
    from edgeloop.pipeline.pipeline import (
        DetectorFactory,
        Pipeline,
        PipelineOutput,
        combine_scores,
        select_sensors,
    )
    from edgeloop.pipeline.spec import PipelineSpec, SpecError, WindowSpec, load_preset, load_spec
    from edgeloop.pipeline.stages import Anonymiser, FilterStage
    from edgeloop.pipeline.types import Features, Scores, Windows
    from edgeloop.pipeline.windows import Windower, ensure_sorted, is_sorted

_WHERE = {
    "SummaryAggregator": "aggregate",
    "FEATURES": "features",
    "band_energies": "features",
    "compute_features": "features",
    "feature_names": "features",
    "DetectorFactory": "pipeline",
    "Pipeline": "pipeline",
    "PipelineOutput": "pipeline",
    "combine_scores": "pipeline",
    "select_sensors": "pipeline",
    "PipelineSpec": "spec",
    "SpecError": "spec",
    "WindowSpec": "spec",
    "load_preset": "spec",
    "load_spec": "spec",
    "Anonymiser": "stages",
    "FilterStage": "stages",
    "Features": "types",
    "Scores": "types",
    "Windows": "types",
    "Windower": "windows",
    "ensure_sorted": "windows",
    "is_sorted": "windows",
}

__all__ = [
    "FEATURES",
    "Anonymiser",
    "DetectorFactory",
    "Features",
    "FilterStage",
    "Pipeline",
    "PipelineOutput",
    "PipelineSpec",
    "Scores",
    "SpecError",
    "SummaryAggregator",
    "WindowSpec",
    "Windower",
    "Windows",
    "band_energies",
    "combine_scores",
    "compute_features",
    "ensure_sorted",
    "feature_names",
    "is_sorted",
    "load_preset",
    "load_spec",
    "select_sensors",
]


__getattr__, __dir__ = lazy_exports("edgeloop.pipeline", _WHERE, globals())

"""Hub-side training for a scenario: fit the multivariate edge model on normal operation.

The hub simulates (in production: collects) normal windows from the plan's machines,
computes features with the *same* pipeline spec the gateways run, fits a PCA T²+Q model
per window group (scikit-learn), exports it to ONNX and writes a spec that adds the
ONNX detector beside the streaming robust one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edgeloop.learn.export import to_onnx
from edgeloop.learn.train import fit_model
from edgeloop.node.build import resolve_spec
from edgeloop.pipeline.pipeline import Pipeline
from edgeloop.scenarios.plan import FloorPlan
from edgeloop.sim.build import build_sim

# Groups whose features are comparable across machines get a fleet model. The process
# group mixes temperature, pressure and current (different units): the per-sensor robust
# detector covers it.
MODEL_GROUPS = ("vibration",)


def normal_features(
    plan: FloorPlan, pipeline_name: str, seconds: float, seed: int
) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """Feature matrices of fault-free operation of every machine of the plan, by group."""
    spec = resolve_spec(pipeline_name).model_copy(update={"detectors": ()})
    out: dict[str, list[np.ndarray]] = {}
    names: dict[str, tuple[str, ...]] = {}
    for gw in plan.gateways:
        sim = build_sim(
            {
                "generate": {
                    "n_machines": plan.machines_per_gateway,
                    "gateway": gw.name,
                    "seed": plan.seed + gw.index,
                }
            },
            [],
            seed=seed * 1000 + gw.index + 1,
            start_ns=0,
        )
        pipe = Pipeline.from_spec(spec, sim.catalog)
        step = 1_000_000_000
        for _ in range(int(seconds)):
            res = pipe.process(sim.step(step), sim.now_ns)
            for f in res.features:
                out.setdefault(f.group, []).append(f.values)
                names[f.group] = f.names
    return {g: (names[g], np.concatenate(v)) for g, v in out.items()}


def train_edge_models(
    plan: FloorPlan,
    workdir: Path,
    seed: int,
    pipeline_name: str = "factory",
    seconds: float = 60.0,
    threshold: float = 0.8,
) -> Path:
    """Train, export and reference the edge models; return the path of the new spec.

    ``threshold`` 0.8 on the calibrated score means a raw statistic four times its
    normal 99.9 % quantile: the fleet model is a second opinion for clear departures,
    the per-sensor robust detector handles the fine ones.
    """
    base = resolve_spec(pipeline_name)
    spec: dict[str, Any] = base.model_dump(mode="json")
    trained = [w.group for w in base.windows if w.group in MODEL_GROUPS]
    feats = normal_features(plan, pipeline_name, seconds, seed) if trained else {}
    models_dir = workdir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    for group in MODEL_GROUPS:
        if group not in feats:
            continue
        names, x = feats[group]
        model = fit_model(x, names, kind="pca_t2q", seed=seed, group=group)
        path = models_dir / f"{group}.onnx"
        path.write_bytes(to_onnx(model))
        spec["detectors"].append(
            {
                "group": group,
                "type": "onnx",
                "name": f"pca_t2q_{group}",
                "model": str(path),
                "params": {"threshold": threshold},
            }
        )
    out = workdir / "pipeline.yaml"
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out

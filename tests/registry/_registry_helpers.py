"""Manifests for the registry and signing tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeloop.drift import Sketch, quantile_edges
from edgeloop.registry import DataFingerprint, InputSchema, Manifest, artifact_id

NAMES = ("temp.mean", "temp.std", "vib.rms")
TRAIN = np.random.default_rng(7).normal(size=(500, 3)).astype(np.float32)


def onnx_bytes(version: str) -> bytes:
    """Stand-in artifact bytes (the registry never parses them)."""
    return f"ONNX model {version}".encode() * 10


def make_manifest(version: str, parent: str | None = None, **over: Any) -> Manifest:
    data = onnx_bytes(version)
    fields: dict[str, Any] = {
        "version": version,
        "artifact": artifact_id(data),
        "size": len(data),
        "kind": "pca_t2q",
        "input_schema": InputSchema(NAMES, "factory", "process"),
        "training_data": DataFingerprint.of(
            TRAIN, 1_764_000_000_000_000_000, 1_764_003_600_000_000_000, ["gw2", "gw1"]
        ),
        "metrics": {"recall": 0.97, "false_alarms_per_hour": 0.4},
        "parent": parent,
        "creator": "retrain:drift",
        "created_ns": 1_764_010_000_000_000_000,
        "drift_reference": Sketch.build(NAMES, quantile_edges(TRAIN, 8), TRAIN),
    }
    fields.update(over)
    return Manifest(**fields)

"""The loop's pieces on a real artifact: train, export, describe, sign, register, verify,
load at the edge, measure drift against the manifest's reference. No stand-ins."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from edgeloop.detect.onnx_model import OnnxDetector
from edgeloop.drift import DriftConfig, Sketch, assess, quantile_edges
from edgeloop.learn import fit_model, to_onnx
from edgeloop.pipeline.types import Features
from edgeloop.registry import (
    DataFingerprint,
    InputSchema,
    Manifest,
    ManifestError,
    ModelRegistry,
    artifact_id,
    choose_quantisation,
    describe,
)
from edgeloop.rollout import measure
from edgeloop.security import ArtifactMismatchError, PrivateKey, trust, verify_artifact

NAMES = ("temp.mean", "temp.std", "pressure.mean", "current.mean", "current.std")
T0 = 1_764_000_000_000_000_000
KEY = PrivateKey.generate()


def windows(n: int, seed: int, load: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    x = np.column_stack(
        [
            60 + 5 * load * z[:, 0],
            0.5 + 0.05 * np.abs(z[:, 1]),
            3 + 0.2 * load * z[:, 0],
            10 * load + z[:, 1],
            0.3 + 0.02 * rng.random(n),
        ]
    )
    return (x + 0.05 * rng.normal(size=x.shape)).astype(np.float32)


@functools.cache
def artifact() -> tuple[np.ndarray, bytes, Manifest]:
    x = windows(3000, 1)
    model = fit_model(x, NAMES, quantile=0.99, group="process")
    data = to_onnx(model)
    manifest = Manifest(
        version="process-1",
        artifact=artifact_id(data),
        size=len(data),
        kind=model.kind,
        input_schema=InputSchema(NAMES, "factory", "process"),
        training_data=DataFingerprint.of(x, T0, T0 + 3600 * 10**9, ["gw1", "gw2"]),
        metrics={"recall": 1.0},
        creator="test",
        created_ns=T0,
        drift_reference=Sketch.build(NAMES, quantile_edges(x, 10), x),
    )
    return x, data, manifest


def test_a_signed_onnx_artifact_is_registered_verified_and_runs_at_the_edge() -> None:
    _, data, manifest = artifact()
    manifest_bytes, sig = KEY.sign_manifest(manifest)
    reg, _ = ModelRegistry().register(
        manifest_bytes, sig, T0, "test", trusted=trust(KEY.public_key)
    )
    reg, _ = reg.promote("process-1", T0, "test")
    held = reg.resolve("champion")
    verified = verify_artifact(held.manifest_bytes, held.signature, trust(KEY.public_key), data)
    det = OnnxDetector(data)
    # The manifest and the artifact's own metadata tell the same story.
    assert det.feature_names == verified.input_schema.feature_names
    assert det.meta.fingerprint == verified.training_data.sha256
    assert det.meta.group == verified.input_schema.group
    new = windows(500, 2)
    scores = det.score(
        Features(
            "process",
            NAMES,
            np.zeros(500, np.uint32),
            np.zeros(500, np.int64),
            np.zeros(500, np.int64),
            new,
        )
    ).score
    assert float(np.mean(scores >= det.threshold)) < 0.05


def test_a_tampered_artifact_is_refused_before_it_is_loaded() -> None:
    _, data, manifest = artifact()
    manifest_bytes, sig = KEY.sign_manifest(manifest)
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0x01
    with pytest.raises(ArtifactMismatchError, match="hash mismatch for process-1"):
        verify_artifact(manifest_bytes, sig, trust(KEY.public_key), bytes(tampered))


def test_the_manifest_reference_detects_a_load_regime_change() -> None:
    _, _, manifest = artifact()
    ref = manifest.drift_reference
    assert ref is not None
    cfg = DriftConfig(metric="psi", threshold=0.25, min_samples=200)
    same = {f"gw{i}": Sketch.empty(NAMES, ref.edges).update(windows(600, 10 + i)) for i in (1, 2)}
    heavier = {
        f"gw{i}": Sketch.empty(NAMES, ref.edges).update(windows(600, 20 + i, load=1.6))
        for i in (1, 2)
    }
    calm = assess(ref, same, 0, cfg)
    drifted = assess(ref, heavier, 1, cfg)
    assert calm.verdicts() == {"gw1": False, "gw2": False, "*": False}
    assert drifted.verdicts()["*"] is True
    assert (
        "current.mean" in drifted.drifted_features() and "temp.mean" in drifted.drifted_features()
    )


def test_side_by_side_evidence_from_two_real_models() -> None:
    _, data, _ = artifact()
    champion = OnnxDetector(data)
    challenger = OnnxDetector(
        to_onnx(fit_model(windows(3000, 5), NAMES, quantile=0.99, group="process"))
    )
    new = windows(800, 3)
    block = Features(
        "process",
        NAMES,
        np.zeros(800, np.uint32),
        np.zeros(800, np.int64),
        np.zeros(800, np.int64),
        new,
    )
    m = measure(
        "gw1",
        "process-2",
        0,
        1,
        challenger.score(block).score,
        champion.score(block).score,
        challenger.threshold,
        champion.threshold,
    )
    assert m.windows == 800 and m.agreements >= 0.95 * 800 and m.score_shift < 0.2


def test_describe_writes_the_manifest_of_a_trained_model() -> None:
    x = windows(1500, 8)
    x[3, 2] = np.nan  # dropped by fit_model, and by describe alike
    model = fit_model(x, NAMES, quantile=0.99, group="process")
    data = to_onnx(model)
    m = describe(
        model,
        data,
        x,
        version="p-2",
        preset="factory",
        start_ns=T0,
        end_ns=T0 + 1,
        source_nodes=["gw2", "gw1"],
        creator="retrain:drift",
        created_ns=T0,
        parent=None,
        metrics={"recall": 0.98},
        bins=8,
    )
    assert m.artifact == artifact_id(data) and m.training_data.n_rows == 1499
    assert m.training_data.sha256 == OnnxDetector(data).meta.fingerprint
    assert m.input_schema == InputSchema(NAMES, "factory", "process")
    assert m.drift_reference is not None and m.drift_reference.bins == 8
    assert Manifest.from_bytes(m.canonical_bytes()) == m
    with pytest.raises(ManifestError, match="is not the model's training data"):
        describe(
            model,
            data,
            windows(1500, 9),
            version="p-2",
            preset="factory",
            start_ns=T0,
            end_ns=T0,
            source_nodes=[],
            creator="x",
            created_ns=T0,
        )


def test_int8_is_chosen_only_when_it_gains_without_losing_quality() -> None:
    base = {"fp32_bytes": 40_000, "fp32_us": 3.0, "metric": "f1", "fp32_quality": 0.95}
    smaller_same = choose_quantisation(**base, int8_bytes=12_000, int8_us=3.1, int8_quality=0.95)
    worse = choose_quantisation(**base, int8_bytes=12_000, int8_us=2.0, int8_quality=0.93)
    no_gain = choose_quantisation(**base, int8_bytes=41_000, int8_us=3.5, int8_quality=0.96)
    tolerated = choose_quantisation(
        **base, int8_bytes=12_000, int8_us=2.0, int8_quality=0.94, tolerance=0.01
    )
    assert [q.chosen for q in (smaller_same, worse, no_gain, tolerated)] == [
        "int8",
        "fp32",
        "fp32",
        "int8",
    ]
    assert worse.int8_quality == 0.93  # the measurement is kept either way

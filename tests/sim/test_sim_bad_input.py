"""Corrupted samples are rejected one for one, by reason, and the rest is kept."""

from __future__ import annotations

import numpy as np

from edgeloop.errors import RejectReason
from edgeloop.sim.bad_input import corrupt_samples
from edgeloop.sim.factory import FactoryConfig, FactorySim
from edgeloop.telemetry.validate import FrameValidator


def test_every_corrupted_sample_is_rejected_and_every_other_kept() -> None:
    sim = FactorySim(FactoryConfig.generate(2), seed=1, start_ns=0)
    validator = FrameValidator(sim.catalog)
    rng = np.random.default_rng(0)
    total = corrupted = accepted = 0
    for _ in range(20):
        clean = sim.step(100_000_000)
        bad, k = corrupt_samples(clean, rng, 0.01, len(sim.catalog))
        out = validator.process(bad, sim.now_ns)
        total += len(clean)
        corrupted += k
        accepted += len(out)
        # what is kept is exactly the untouched samples, values intact
        keep = (bad.sensor == clean.sensor) & (bad.ts == clean.ts) & np.isfinite(bad.value)
        np.testing.assert_array_equal(np.sort(out.value), np.sort(clean.value[keep]))
    assert corrupted > 50
    assert accepted == total - corrupted
    assert validator.rejected == corrupted
    reasons = set(validator.rejects)
    assert {
        RejectReason.NON_FINITE,
        RejectReason.FUTURE,
        RejectReason.OUT_OF_ORDER,
        RejectReason.UNKNOWN_SENSOR,
    } <= reasons

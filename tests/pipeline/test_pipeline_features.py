"""compute_features: exact moments, guarded ratios, band energies, no warnings."""

from __future__ import annotations

import numpy as np
import pytest

from edgeloop.errors import ConfigError
from edgeloop.pipeline.features import FEATURES, band_energies, compute_features
from edgeloop.pipeline.types import Windows

ALL = list(FEATURES)


def windows(x: np.ndarray) -> Windows:
    n = x.shape[0]
    return Windows(
        "g",
        np.arange(n, dtype=np.uint32),
        np.zeros(n, np.int64),
        np.ones(n, np.int64),
        np.ascontiguousarray(x, dtype=np.float32),
    )


def reference(x: np.ndarray) -> dict[str, np.ndarray]:
    x = x.astype(np.float64)
    mean = x.mean(axis=1)
    d = x - mean[:, None]
    m2 = (d**2).mean(axis=1)
    rms = np.sqrt((x**2).mean(axis=1))
    return {
        "mean": mean,
        "std": np.sqrt(m2),
        "min": x.min(axis=1),
        "max": x.max(axis=1),
        "rms": rms,
        "p2p": np.ptp(x, axis=1),
        "kurtosis": (d**4).mean(axis=1) / m2**2,
        "skew": (d**3).mean(axis=1) / m2**1.5,
        "crest": np.abs(x).max(axis=1) / rms,
    }


def test_time_features_match_a_float64_reference() -> None:
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 1.5, (50, 333)) * rng.uniform(0.1, 10, (50, 1)) - 3.0
    f = compute_features(windows(x), ALL)
    assert f.names == tuple(ALL) and f.values.dtype == np.float32
    ref = reference(x.astype(np.float32))
    for j, name in enumerate(ALL):
        np.testing.assert_allclose(f.values[:, j], ref[name], rtol=2e-4, atol=1e-5, err_msg=name)
    assert np.array_equal(f.sensor, np.arange(50)) and f.group == "g"


def test_constant_windows_have_zero_spread_and_guarded_ratios() -> None:
    x = np.array([[0.1] * 64, [0.0] * 64, [-7.5] * 64, [3e-30] * 64], dtype=np.float32)
    f = compute_features(windows(x), ALL, bands=4)
    col = {n: f.values[:, i] for i, n in enumerate(f.names)}
    assert np.all(col["std"] == 0) and np.all(col["p2p"] == 0)
    assert np.all(col["kurtosis"] == 0) and np.all(col["skew"] == 0)
    assert col["crest"].tolist() == [1.0, 0.0, 1.0, 1.0]  # |c| / rms; 0 when rms == 0
    np.testing.assert_allclose(col["rms"], np.abs(x[:, 0]), rtol=1e-6)
    assert np.all(f.values[:, -4:] == 0)


def test_extreme_inputs_raise_no_warnings() -> None:
    """Tiny spreads underflow, huge values overflow float32: values, not warnings."""
    tiny = np.float32(1.0) + np.array([0, 1e-7, 0, 2e-7] * 16, np.float32)
    huge = np.array([3e38, -3e38] * 32, np.float32)
    quiet = np.array([1e-20, -1e-20] * 32, np.float32)
    f = compute_features(windows(np.stack([tiny, huge, quiet])), ALL, bands=8)
    assert np.isfinite(f.values[0]).all() and np.isfinite(f.values[2]).all()
    assert f.values[2, ALL.index("kurtosis")] == pytest.approx(1.0, rel=1e-3)


def test_a_tone_lands_in_its_band() -> None:
    w, fs = 1024, 2000.0
    t = np.arange(w) / fs
    tones = [60.0, 310.0, 990.0]  # bands of 125 Hz: 0, 2, 7
    x = np.stack([np.sin(2 * np.pi * f0 * t) for f0 in tones])
    e = band_energies(x.astype(np.float32), 8, log=False)
    assert e.argmax(axis=1).tolist() == [0, 2, 7]
    # Most of the power is in that band, and the total is the variance (0.5 for a sine).
    assert (e.max(axis=1) / e.sum(axis=1) > 0.99).all()
    np.testing.assert_allclose(e.sum(axis=1), 0.5, rtol=0.02)


def test_band_energies_add_up_to_the_variance_of_noise() -> None:
    x = np.random.default_rng(1).normal(5.0, 2.0, (200, 512)).astype(np.float32)
    e = band_energies(x, 8, log=False)
    np.testing.assert_allclose(e.sum(axis=1).mean(), 4.0, rtol=0.03)
    # DC (the offset 5.0) is excluded: the lowest band holds ~1/8 of the power.
    assert e[:, 0].mean() == pytest.approx(0.5, rel=0.1)
    raw = band_energies(x, 8, log=False, taper=False)
    np.testing.assert_allclose(raw.sum(axis=1), x.var(axis=1), rtol=0.02)


def test_log_bands_and_uneven_band_edges() -> None:
    x = np.random.default_rng(2).normal(0, 3.0, (10, 1000)).astype(np.float32)
    lin = band_energies(x, 7, log=False)
    np.testing.assert_allclose(band_energies(x, 7, log=True), np.log1p(lin), rtol=1e-5)
    # 500 non-DC bins in 7 bands: every bin counted once.
    np.testing.assert_allclose(lin.sum(axis=1), band_energies(x, 1, log=False)[:, 0], rtol=1e-4)
    f = compute_features(windows(x), ["rms"], bands=7)
    assert f.names == ("rms", *(f"band_{i}" for i in range(7)))
    np.testing.assert_allclose(f.values[:, 1:], np.log1p(lin), rtol=1e-5)


def test_many_rows_are_chunked_consistently() -> None:
    x = np.random.default_rng(3).normal(0, 1, (200, 64)).astype(np.float32)
    whole = band_energies(x, 4)
    parts = np.concatenate([band_energies(x[i : i + 7], 4) for i in range(0, 200, 7)])
    np.testing.assert_allclose(whole, parts, rtol=1e-6)


def test_empty_block_and_bad_requests() -> None:
    f = compute_features(windows(np.empty((0, 16))), ["mean", "std"], bands=2)
    assert f.values.shape == (0, 4)
    with pytest.raises(ConfigError, match="unknown"):
        compute_features(windows(np.zeros((1, 16))), ["mean", "median"])
    with pytest.raises(ConfigError, match="duplicate"):
        compute_features(windows(np.zeros((1, 16))), ["mean", "mean"])
    with pytest.raises(ConfigError, match="bands"):
        compute_features(windows(np.zeros((1, 16))), ["mean"], bands=9)

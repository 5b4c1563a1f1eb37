"""Window features, vectorized over the rows of a ``(n, w)`` float32 matrix.

Time-domain features (:data:`FEATURES`):

========  ================================================================
mean      arithmetic mean
std       population standard deviation (``ddof=0``)
min/max   extremes
rms       root mean square, ``sqrt(mean**2 + std**2)``
p2p       peak to peak, ``max - min``
kurtosis  Pearson (non-excess) kurtosis ``m4 / m2**2``: 3 for Gaussian noise,
          1.5 for a pure sine; **0 for a constant window** (no variance)
crest     crest factor ``max(|min|, |max|) / rms``; 0 when ``rms == 0``
skew      ``m3 / m2**1.5``; 0 for a constant window
========  ================================================================

Spectral features ``band_0 .. band_{k-1}``: the one-sided power spectrum of the
mean-removed, Hann-tapered window (rfft, float32 -> complex64), DC excluded, summed over
``k`` equal-width bands of frequency bins and normalised so that the bands add up to
about the window's variance (Parseval). With ``log=True`` each band is
``log1p(energy)``: loud bands are compressed (a tenfold energy is not a tenfold
feature), quiet ones stay nearly linear.

Moments come from the window centred once; a window is constant exactly when its min
equals its max, which decides the zero-variance guards without any RuntimeWarning.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edgeloop.errors import ConfigError
from edgeloop.pipeline.types import Features, Windows

__all__ = ["FEATURES", "band_names", "compute_features", "feature_names"]

FEATURES: tuple[str, ...] = ("mean", "std", "min", "max", "rms", "p2p", "kurtosis", "crest", "skew")
"""Names of the time-domain features :func:`compute_features` knows."""

# rfft over a bounded number of rows at a time: numpy's pocketfft slows down by a factor
# of 3-5 on very tall inputs (cache), and the chunk's power spectrum stays in cache.
_FFT_ROWS = 64


def band_names(bands: int) -> tuple[str, ...]:
    """``("band_0", ..., "band_{bands-1}")``."""
    return tuple(f"band_{i}" for i in range(bands))


def feature_names(names: Sequence[str], bands: int = 0) -> tuple[str, ...]:
    """The column names :func:`compute_features` produces for ``names`` and ``bands``."""
    return (*names, *band_names(bands))


@functools.lru_cache(maxsize=16)
def _hann(w: int) -> npt.NDArray[np.float32]:
    """Periodic Hann window of length ``w`` (read-only, shared)."""
    win = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(w) / w)).astype(np.float32)
    win.flags.writeable = False
    return win


def _check(names: Sequence[str], bands: int, w: int) -> None:
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ConfigError(f"features: unknown {unknown} (known: {', '.join(FEATURES)})")
    if len(set(names)) != len(names):
        raise ConfigError(f"features: duplicate names in {list(names)}")
    if bands < 0:
        raise ConfigError(f"spectrum.bands: must be >= 0 (got {bands})")
    if bands and bands > w // 2:
        raise ConfigError(
            f"spectrum.bands: at most size // 2 = {w // 2} bands for windows of {w} (got {bands})"
        )


def band_energies(
    x: npt.NDArray[np.float32],
    bands: int,
    log: bool = True,
    taper: bool = True,
    mean: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Spectral power of each row of ``x`` summed in ``bands`` equal-width bands (DC excluded).

    Args:
        x: windows, shape ``(n, w)``, float32.
        bands: number of bands, ``1 <= bands <= w // 2``.
        log: return ``log1p(energy)`` instead of the energy.
        taper: multiply each window by a Hann window first. Without it, a tone that
            does not fit the window a whole number of times leaks into neighbouring
            bands by an amount that depends on its phase, which makes band energies
            jitter from window to window.

    Returns:
        float32 array of shape ``(n, bands)``; without ``log`` a row sums to about the
        window's variance.
    """
    n, w = x.shape
    nbins = w // 2  # non-DC bins 1..w//2
    edges = (np.arange(bands, dtype=np.int64) * nbins) // bands
    equal = nbins % bands == 0
    out = np.empty((n, bands), np.float32)
    spec = np.empty((min(n, _FFT_ROWS), nbins + 1), np.complex64)
    win = _hann(w) if taper else None
    tmp = np.empty((min(n, _FFT_ROWS), w), np.float32) if taper else None
    for lo in range(0, n, _FFT_ROWS):
        hi = min(lo + _FFT_ROWS, n)
        s = spec[: hi - lo]
        if win is not None and tmp is not None:
            # Centre first: the taper would leak the DC term into the lowest band.
            chunk = tmp[: hi - lo]
            mu = x[lo:hi].mean(axis=1) if mean is None else mean[lo:hi]
            np.subtract(x[lo:hi], mu[:, None], out=chunk)
            chunk *= win
        else:
            chunk = x[lo:hi]
        np.fft.rfft(chunk, axis=1, out=s)
        ri = s[:, 1:].view(np.float32)  # (rows, 2*nbins): re, im interleaved
        p = ri * ri
        if equal:
            out[lo:hi] = p.reshape(hi - lo, bands, -1).sum(axis=2)
        else:
            out[lo:hi] = np.add.reduceat(p, 2 * edges, axis=1)
    # One-sided spectrum: |X_k|^2 * 2 / (w * sum(win^2)) sums (over k >= 1) to about the
    # variance (exactly, for w = rectangular window, up to the Nyquist bin).
    norm = float(w) * (float(np.dot(win, win)) if win is not None else float(w))
    out *= np.float32(2.0 / norm)
    if log:
        np.log1p(out, out=out)
    return out


def compute_features(
    windows: Windows,
    names: Sequence[str],
    bands: int = 0,
    log_bands: bool = True,
    taper: bool = True,
) -> Features:
    """Feature vectors of every window.

    Args:
        windows: complete windows of one group, values shape ``(n, w)``.
        names: time-domain features to compute, in output order (see :data:`FEATURES`).
        bands: number of spectral bands appended as ``band_0..band_{bands-1}`` (0: none).
        log_bands: ``log1p``-scale the band energies.
        taper: apply a Hann window before the rfft (see :func:`band_energies`).

    Returns:
        :class:`Features` with columns ``feature_names(names, bands)``, float32.

    Raises:
        ConfigError: an unknown or duplicate feature name, or too many bands.
    """
    x = windows.values
    n, w = x.shape
    _check(names, bands, w)
    cols = feature_names(names, bands)
    out = np.empty((n, len(cols)), np.float32)
    if n == 0:
        return Features(windows.group, cols, windows.sensor, windows.t0_ns, windows.t1_ns, out)
    # Inputs beyond float32 range give inf/nan features (scored as anomalous downstream)
    # instead of warnings; the pipeline rejects non-finite samples before this point.
    with np.errstate(all="ignore"):
        val = _time_features(x, set(names)) if names else {}
        for j, name in enumerate(names):
            out[:, j] = val[name]
        if bands:
            mean = val.get("mean")
            out[:, len(names) :] = band_energies(x, bands, log_bands, taper, mean)
    return Features(windows.group, cols, windows.sensor, windows.t0_ns, windows.t1_ns, out)


def _time_features(
    x: npt.NDArray[np.float32], want: set[str]
) -> dict[str, npt.NDArray[np.float32]]:
    """The requested time-domain features of each row (more may be returned)."""
    w = x.shape[1]
    val: dict[str, npt.NDArray[np.float32]] = {}
    mean = x.mean(axis=1, dtype=np.float32)
    val["mean"] = mean
    if not want - {"mean"}:
        return val
    mn = x.min(axis=1)
    mx = x.max(axis=1)
    val["min"], val["max"], val["p2p"] = mn, mx, mx - mn
    const = mx == mn
    mean[const] = mn[const]  # exact, where float32 summation may round
    if not want & {"std", "rms", "kurtosis", "crest", "skew"}:
        return val
    # Exactly constant windows (min == max) get variance 0: centring around a rounded
    # float32 mean would otherwise leave a tiny, meaningless spread.
    varying = mx > mn
    d = x - mean[:, None]
    d2 = d * d
    # Moments and their ratios as float64 n-vectors (cheap): squares of float32 moments
    # underflow for quiet windows long before the ratios are ill-defined.
    m2 = d2.mean(axis=1, dtype=np.float64)
    m3 = np.vecdot(d2, d).astype(np.float64) / w if "skew" in want else None
    m4 = np.vecdot(d2, d2).astype(np.float64) / w if "kurtosis" in want else None
    quiet = np.flatnonzero(varying & (m2 < 1e-15))
    if quiet.size:  # rare: redo these rows in float64, where d**4 does not underflow
        dq = x[quiet].astype(np.float64)
        dq -= dq.mean(axis=1, keepdims=True)
        m2[quiet] = (dq * dq).mean(axis=1)
        if m3 is not None:
            m3[quiet] = (dq**3).mean(axis=1)
        if m4 is not None:
            m4[quiet] = (dq**4).mean(axis=1)
    m2[~varying] = 0.0
    mean64 = mean.astype(np.float64)
    rms = np.sqrt(mean64 * mean64 + m2)
    val["std"] = np.sqrt(m2).astype(np.float32)
    val["rms"] = rms.astype(np.float32)
    safe_m2 = np.where(varying, m2, 1.0)
    if m4 is not None:
        val["kurtosis"] = np.where(varying, m4 / (safe_m2 * safe_m2), 0.0).astype(np.float32)
    if m3 is not None:
        val["skew"] = np.where(varying, m3 / (safe_m2 * np.sqrt(safe_m2)), 0.0).astype(np.float32)
    if "crest" in want:
        peak = np.maximum(np.abs(mn), np.abs(mx)).astype(np.float64)
        safe = np.where(rms > 0, rms, 1.0)
        val["crest"] = np.where(rms > 0, peak / safe, 0.0).astype(np.float32)
    return val

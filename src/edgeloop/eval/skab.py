"""SKAB scoring: point-wise outlier F1/FAR/MAR and the NAB-style change-point score.

The rules follow SKAB's own evaluation (the ``tsad`` metrics its leaderboard uses):

* **Fitting rows.** The first ``skip`` rows (400) of each file are for fitting: neither
  score counts them, nor a change point among them.
* **Outliers** (point-wise over the scored rows of every file, counts summed):
  ``F1 = TP/(TP + (FP + FN)/2)``, ``FAR = 100·FP/(FP + TN)``, ``MAR = 100·FN/(FN + TP)``
  (NaN where the denominator is 0).
* **Change points.** Each true change point ``c`` opens the window ``[c, c + 60 s]``
  (both ends inclusive); when a window reaches the next one's start, the next one starts
  where it ends instead ("cut right window"), so a change point closer than 60 s to the
  previous one cannot be hit. The earliest predicted change point in a window earns
  ``A_FP + (A_TP − A_FP)·(1 − tanh(x)/tanh(π/2))/2`` (``x`` running from −π/2 at the window's
  start to π/2 at its end, on tsad's grid of 1000 steps): ``A_TP`` at the change point,
  ``A_FP`` at the window's end. Further predictions in a window are free; one outside every
  window costs ``A_FP``; a window with none costs ``A_FN`` (weights are signed, as SKAB's).
  Normalised: ``100·(S − N·A_FN)/(N·A_TP − N·A_FN)`` over the ``N`` change points.

The scorers are pure numpy; :func:`load_skab` and :func:`load_anomaly_free` are the I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "CP_WINDOW",
    "FIT_ROWS",
    "SENSORS",
    "SKAB_PROFILES",
    "ChangepointResult",
    "OutlierResult",
    "SkabFile",
    "SkabProfile",
    "changepoint_score",
    "changepoint_windows",
    "load_anomaly_free",
    "load_skab",
    "outlier_score",
]

F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]
Times = npt.NDArray[np.datetime64]

FIT_ROWS = 400
CP_WINDOW = np.timedelta64(60, "s")
SENSORS = (
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
)


@dataclass(frozen=True, slots=True)
class SkabProfile:
    """Signed weights of a hit window (at its start), a false alarm and a missed window."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


SKAB_PROFILES = {
    "standard": SkabProfile("standard", 1.0, -0.11, -1.0),
    "LowFP": SkabProfile("LowFP", 1.0, -0.22, -1.0),
    "LowFN": SkabProfile("LowFN", 1.0, -0.11, -2.0),
}

_GRID = np.linspace(-np.pi / 2, np.pi / 2, 1000)


@dataclass(frozen=True, slots=True)
class SkabFile:
    """One experiment: ``name`` relative to the data directory (``"valve1/0.csv"``).

    ``values`` has one column per name of :data:`SENSORS`; ``anomaly`` and
    ``changepoint`` are ``None`` for the anomaly-free file.
    """

    name: str
    timestamps: Times
    values: F64
    anomaly: Bool | None
    changepoint: Bool | None


@dataclass(frozen=True, slots=True)
class OutlierResult:
    """Point-wise counts over the scored rows and the rates derived from them."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def f1(self) -> float:
        """``TP/(TP + (FP + FN)/2)``."""
        return _ratio(self.tp, self.tp + (self.fp + self.fn) / 2)

    @property
    def far(self) -> float:
        """False alarm rate, %: ``100·FP/(FP + TN)``."""
        return 100.0 * _ratio(self.fp, self.fp + self.tn)

    @property
    def mar(self) -> float:
        """Missed alarm rate, %: ``100·FN/(FN + TP)``."""
        return 100.0 * _ratio(self.fn, self.fn + self.tp)


@dataclass(frozen=True, slots=True)
class ChangepointResult:
    """Change-point detection over all files: counts, raw and normalised score per profile."""

    changepoints: int
    detected: int
    false_alarms: int
    raw: dict[str, float]
    scores: dict[str, float]


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def _scored(f: SkabFile, predictions: Mapping[str, npt.ArrayLike], skip: int) -> Bool:
    """The file's predictions as booleans (nonzero = alarm), fitting rows dropped."""
    p = np.asarray(predictions[f.name])
    if p.shape != (len(f.timestamps),):
        raise ValueError(f"{f.name}: {p.shape} predictions for {len(f.timestamps)} rows")
    alarms: Bool = p[skip:] != 0
    return alarms


def _labelled(f: SkabFile) -> tuple[Bool, Bool]:
    if f.anomaly is None or f.changepoint is None:
        raise ValueError(f"{f.name}: no labels (the anomaly-free file cannot be scored)")
    return f.anomaly, f.changepoint


def outlier_score(
    files: Sequence[SkabFile], predictions: Mapping[str, npt.ArrayLike], skip: int = FIT_ROWS
) -> OutlierResult:
    """Point-wise outlier detection: ``predictions[name]`` holds one 0/1 per row."""
    tp = fp = fn = tn = 0
    for f in files:
        truth = _labelled(f)[0][skip:]
        pred = _scored(f, predictions, skip)
        tp += int((truth & pred).sum())
        fp += int((~truth & pred).sum())
        fn += int((truth & ~pred).sum())
        tn += int((~truth & ~pred).sum())
    return OutlierResult(tp=tp, fp=fp, fn=fn, tn=tn)


def changepoint_windows(
    times: Times, is_cp: Bool, width: np.timedelta64 = CP_WINDOW
) -> tuple[Times, Times]:
    """Scoring windows ``[c, c + width]`` for the change points, overlaps cut on the right."""
    starts = times[is_cp].copy()
    ends = starts + width
    for i in range(1, len(starts)):
        if ends[i - 1] >= starts[i]:
            starts[i] = ends[i - 1]
    return starts, ends


def _tp_reward(rel: F64, profile: SkabProfile) -> F64:
    """Reward of a first detection at relative position ``rel`` in [0, 1] of its window."""
    step = np.minimum(np.floor(rel * len(_GRID)).astype(np.int64), len(_GRID) - 1)
    span = profile.tp_weight - profile.fp_weight
    shape = -np.tanh(_GRID[step]) / np.tanh(np.pi / 2)
    reward: F64 = span / 2 * shape + span / 2 + profile.fp_weight
    return reward


def changepoint_score(
    files: Sequence[SkabFile],
    predictions: Mapping[str, npt.ArrayLike],
    skip: int = FIT_ROWS,
    width: np.timedelta64 = CP_WINDOW,
    profiles: Mapping[str, SkabProfile] = SKAB_PROFILES,
) -> ChangepointResult:
    """NAB-style change-point score: ``predictions[name]`` holds one 0/1 per row (1 = change)."""
    rel_positions: list[F64] = []
    n_cp = n_fp = 0
    for f in files:
        times = f.timestamps[skip:]
        if len(times) > 1 and (np.diff(times) < np.timedelta64(0, "s")).any():
            raise ValueError(f"{f.name}: timestamps go back in time")
        starts, ends = changepoint_windows(times, _labelled(f)[1][skip:], width)
        alarms = times[_scored(f, predictions, skip)]
        inside = (alarms[None, :] >= starts[:, None]) & (alarms[None, :] <= ends[:, None])
        hit = inside.any(axis=1)
        first = alarms[inside.argmax(axis=1)[hit]] if len(alarms) else alarms
        span = (ends[hit] - starts[hit]).astype(np.float64)
        lag = (first - starts[hit]).astype(np.float64)
        rel_positions.append(np.divide(lag, span, out=np.zeros_like(lag), where=span > 0))
        n_cp += len(starts)
        n_fp += int((~inside.any(axis=0)).sum())
    rel = np.concatenate(rel_positions) if rel_positions else np.empty(0)
    n_fn = n_cp - len(rel)
    raw, scores = {}, {}
    for name, p in profiles.items():
        raw[name] = float(_tp_reward(rel, p).sum() + p.fp_weight * n_fp + p.fn_weight * n_fn)
        null, perfect = n_cp * p.fn_weight, n_cp * p.tp_weight
        scores[name] = 100.0 * (raw[name] - null) / (perfect - null) if n_cp else math.nan
    return ChangepointResult(
        changepoints=n_cp, detected=len(rel), false_alarms=n_fp, raw=raw, scores=scores
    )


# --- loaders: the only I/O ------------------------------------------------------------


def _read(path: Path, name: str) -> SkabFile:
    lines = path.read_text().splitlines()
    header = lines[0].split(";")
    if header[0] != "datetime" or tuple(header[1:9]) != SENSORS:
        raise ValueError(f"{path}: unexpected columns {header}")
    labelled = header[9:] == ["anomaly", "changepoint"]
    cells = [line.split(";") for line in lines[1:] if line]
    times = np.array([c[0].replace(" ", "T") for c in cells], dtype="datetime64[s]")
    numbers = np.array([c[1:] for c in cells], dtype=np.float64)
    return SkabFile(
        name=name,
        timestamps=times,
        values=numbers[:, :8],
        anomaly=numbers[:, 8] != 0 if labelled else None,
        changepoint=numbers[:, 9] != 0 if labelled else None,
    )


def load_skab(data_dir: str | Path) -> list[SkabFile]:
    """The labelled experiments under ``data_dir`` (``<folder>/<n>.csv``), sorted by name."""
    root = Path(data_dir)
    paths = sorted(p for p in root.glob("*/*.csv") if p.parent.name != "anomaly-free")
    return [_read(p, p.relative_to(root).as_posix()) for p in paths]


def load_anomaly_free(data_dir: str | Path) -> SkabFile:
    """``anomaly-free/anomaly-free.csv``: normal operation, no labels."""
    return _read(
        Path(data_dir) / "anomaly-free" / "anomaly-free.csv", "anomaly-free/anomaly-free.csv"
    )

"""NAB v1.1 scoring: windows, profiles, thresholds and normalisation, as the public scoreboard.

The rules are those of the NAB v1.1 sweeper (``nab/sweeper.py`` in numenta/NAB):

* **Order.** Rows are taken in file order, never sorted by time (some files repeat a
  timestamp; one steps back once). A window is entered at the first row, after the row
  where the previous window was entered, whose timestamp equals its start, and left at
  the first row from there whose timestamp equals its end.
* **Probation.** The first ``min(floor(0.15·N), 750)`` rows of a file are not scored: no
  reward, no cost, and a window with no scorable row is not counted at all.
* **Detections.** A row is a detection when its anomaly score is ``>= threshold``.
* **Window reward.** Each window scores once: the earliest detection in it earns
  ``A_TP · σ̃(p) / σ̃(−1)``, where ``σ̃(p) = 2/(1 + e^{5p}) − 1`` and
  ``p = −(r − i + 1)/w`` (``r`` the first row holding the end timestamp, ``w`` the rows
  from the first row holding the start timestamp to ``r``): ``A_TP`` at the left edge,
  less later. A window with no detection costs ``A_FN``.
* **False positives.** A detection outside every window costs ``A_FP · σ̃(d)`` with
  ``d = |e − i|/(w − 1)``, ``e`` the row where the preceding window was left (``σ̃ = −1``
  past ``d = 3``, and with no preceding window): just after a window it costs little.
* **Normalisation.** ``100·(S − S_null)/(S_perfect − S_null)`` with the null detector
  (nothing detected: ``−A_FN`` per window) and the perfect one (``A_TP`` per window),
  counting the windows that have a scorable row — on NAB's labels, every window.

The scoring core is pure numpy over a :class:`NabCorpus`, whose row layout (window of each
row and its reward or cost weight) is computed once; the ``load_*`` functions are the
only I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "PROBATION_CAP",
    "PROBATION_FRACTION",
    "CostProfile",
    "NabCorpus",
    "NabFile",
    "NabResult",
    "ThresholdChoice",
    "load_corpus",
    "load_profiles",
    "load_results",
    "load_thresholds",
    "normalised_score",
    "null_detector",
    "null_score",
    "optimise_threshold",
    "optimise_thresholds",
    "perfect_detector",
    "perfect_score",
    "probationary_length",
    "scaled_sigmoid",
    "score_corpus",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
Times = npt.NDArray[np.datetime64]

PROBATION_FRACTION = 0.15
PROBATION_CAP = 750  # NAB: 0.15 · 5000 rows


def scaled_sigmoid(x: F64) -> F64:
    """NAB's ``σ̃(x) = 2/(1 + e^{5x}) − 1``, with ``σ̃(x) = −1`` for ``x > 3`` (and ``+inf``)."""
    inner = 2.0 / (1.0 + np.exp(5.0 * np.minimum(x, 3.0))) - 1.0
    return np.where(x > 3.0, -1.0, inner)


_MAX_TP = float(scaled_sigmoid(np.array([-1.0]))[0])


def probationary_length(n_rows: int, fraction: float = PROBATION_FRACTION) -> int:
    """Rows not scored at the head of an ``n_rows`` file: ``min(floor(fraction·n), 750)``."""
    return min(math.floor(fraction * n_rows), PROBATION_CAP)


@dataclass(frozen=True, slots=True)
class CostProfile:
    """An application profile: the weights of a detected window, a false positive, a miss."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


@dataclass(frozen=True, slots=True)
class NabFile:
    """One benchmark file: ``name`` is its path relative to the data directory."""

    name: str
    timestamps: Times
    values: F64
    windows: tuple[tuple[np.datetime64, np.datetime64], ...]


def _file_layout(f: NabFile, fraction: float) -> tuple[I64, F64, Bool]:
    """Per row: window index (−1 outside), unweighted reward/cost, scorable flag."""
    ts, n = f.timestamps, len(f.timestamps)
    rows = np.arange(n, dtype=np.int64)
    window = np.full(n, -1, dtype=np.int64)
    weight = np.empty(n, dtype=np.float64)
    exits: list[int] = []
    widths: list[int] = []
    after = 0  # the sweeper looks for the next window's start from this row on
    for k, (start, end) in enumerate(f.windows):
        starts, ends = np.flatnonzero(ts == start), np.flatnonzero(ts == end)
        if not len(starts) or not len(ends):
            raise ValueError(f"{f.name}: window {k} [{start}, {end}] has a limit not in the file")
        entered = starts[starts >= after]
        if not len(entered) or (exits and entered[0] <= exits[-1]):
            raise ValueError(f"{f.name}: window {k} overlaps or precedes the previous window")
        enter = int(entered[0])
        left = ends[ends >= enter]
        if not len(left):
            raise ValueError(f"{f.name}: window {k} ends before it starts")
        leave, right = int(left[0]), int(ends[0])
        width = right - int(starts[0]) + 1
        if width < 1:
            raise ValueError(f"{f.name}: window {k} has its end before its start")
        inside = slice(enter, leave + 1)
        window[inside] = k
        weight[inside] = scaled_sigmoid(-(right - rows[inside] + 1) / width) / _MAX_TP
        exits.append(leave)
        widths.append(width)
        after = enter + 1
    outside = window < 0
    prev = np.searchsorted(np.asarray(exits, dtype=np.int64), rows, side="left") - 1
    exit_arr = np.asarray([*exits, 0], dtype=np.float64)[prev]
    span = np.asarray([*widths, 2], dtype=np.float64)[prev] - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.where((prev >= 0) & (span > 0), np.abs(rows - exit_arr) / span, np.inf)
    weight[outside] = scaled_sigmoid(dist[outside])
    scorable = rows >= probationary_length(n, fraction)
    return window, weight, scorable


class NabCorpus:
    """Files in a fixed order, with the row layout that scoring needs, computed once.

    Attributes (all rows of all files, concatenated in file order): ``row_file`` (file
    index), ``window`` (global window index, −1 outside), ``weight`` (unweighted reward
    inside a window, ``σ̃(p)/σ̃(−1)`` in (0, 1]; unweighted cost outside, ``σ̃(d)`` in
    [−1, 0]), ``scorable``; per window: ``window_file`` and ``window_scorable``.
    """

    def __init__(self, files: Iterable[NabFile], probation_fraction: float = PROBATION_FRACTION):
        self.files = tuple(files)
        self.names = tuple(f.name for f in self.files)
        if len(set(self.names)) != len(self.names):
            raise ValueError("duplicate file names in the corpus")
        self.probation_fraction = probation_fraction
        self.lengths = np.array([len(f.timestamps) for f in self.files], dtype=np.int64)
        self.row_file = np.repeat(np.arange(len(self.files), dtype=np.int64), self.lengths)
        windows, weights, scorables, window_file = [], [], [], []
        base = 0
        for i, f in enumerate(self.files):
            w, wt, sc = _file_layout(f, probation_fraction)
            windows.append(np.where(w >= 0, w + base, -1))
            weights.append(wt)
            scorables.append(sc)
            window_file.extend([i] * len(f.windows))
            base += len(f.windows)
        self.window: I64 = np.concatenate(windows) if windows else np.empty(0, np.int64)
        self.weight: F64 = np.concatenate(weights) if weights else np.empty(0)
        self.scorable: Bool = np.concatenate(scorables) if scorables else np.empty(0, bool)
        self.window_file = np.asarray(window_file, dtype=np.int64)
        self.window_scorable = np.zeros(base, dtype=bool)
        self.window_scorable[self.window[self.scorable & (self.window >= 0)]] = True

    @property
    def n_windows(self) -> int:
        """Windows that count: those with at least one scorable row."""
        return int(self.window_scorable.sum())

    def select(self, names: Iterable[str]) -> NabCorpus:
        """A corpus of the named files only (in this corpus's order)."""
        wanted = set(names)
        unknown = wanted - set(self.names)
        if unknown:
            raise KeyError(f"not in the corpus: {sorted(unknown)}")
        return NabCorpus([f for f in self.files if f.name in wanted], self.probation_fraction)

    def stack(self, scores_by_file: Mapping[str, npt.ArrayLike]) -> F64:
        """The detector's scores for every file, concatenated in corpus order.

        Raises ``ValueError`` unless the files are exactly this corpus's, each with one
        finite score per row.
        """
        if set(scores_by_file) != set(self.names):
            missing = sorted(set(self.names) - set(scores_by_file))
            extra = sorted(set(scores_by_file) - set(self.names))
            raise ValueError(f"scores do not match the corpus: missing {missing}, extra {extra}")
        parts = [np.asarray(scores_by_file[n], dtype=np.float64) for n in self.names]
        for name, part, n in zip(self.names, parts, self.lengths, strict=True):
            if part.shape != (n,):
                raise ValueError(f"{name}: {part.shape} scores for {n} rows")
            if not np.isfinite(part).all():
                raise ValueError(f"{name}: non-finite anomaly scores")
        return np.concatenate(parts) if parts else np.empty(0)


@dataclass(frozen=True, slots=True)
class NabResult:
    """A detector's NAB score on a corpus for one profile and threshold.

    ``score`` is the raw sum; ``tp``/``fp``/``fn``/``tn`` count scorable rows (NAB's
    counts); ``detected`` of ``windows`` windows were hit; ``per_file`` holds raw scores.
    """

    profile: str
    threshold: float
    score: float
    null: float
    perfect: float
    tp: int
    fp: int
    fn: int
    tn: int
    detected: int
    windows: int
    per_file: dict[str, float]

    @property
    def normalised(self) -> float:
        """``100·(score − null)/(perfect − null)``: 0 for the null detector, 100 for perfect."""
        return normalised_score(self.score, self.null, self.perfect)


@dataclass(frozen=True, slots=True)
class ThresholdChoice:
    """The best threshold for a profile and the raw score it gives."""

    profile: str
    threshold: float
    score: float


def null_score(corpus: NabCorpus, profile: CostProfile) -> float:
    """Raw score of a detector that never fires: ``−A_FN`` per window."""
    return -profile.fn_weight * corpus.n_windows


def perfect_score(corpus: NabCorpus, profile: CostProfile) -> float:
    """Raw score of the perfect detector: ``A_TP`` per window."""
    return profile.tp_weight * corpus.n_windows


def normalised_score(score: float, null: float, perfect: float) -> float:
    """``100·(score − null)/(perfect − null)``; raises ``ValueError`` if perfect == null."""
    if perfect == null:
        raise ValueError("no window to score: perfect and null scores are equal")
    return 100.0 * (score - null) / (perfect - null)


def score_corpus(
    scores_by_file: Mapping[str, npt.ArrayLike],
    corpus: NabCorpus,
    profile: CostProfile,
    threshold: float,
) -> NabResult:
    """Score a detector's anomaly scores (one array per file, keyed by file name)."""
    s = corpus.stack(scores_by_file)
    det = corpus.scorable & (s >= threshold)
    inside = corpus.window >= 0
    fp_rows = det & ~inside
    n_files = len(corpus.files)
    per_file = profile.fp_weight * np.bincount(
        corpus.row_file[fp_rows], weights=corpus.weight[fp_rows], minlength=n_files
    )
    hit_rows = np.flatnonzero(det & inside)
    hit_windows, first = np.unique(corpus.window[hit_rows], return_index=True)
    window_score = np.where(corpus.window_scorable, -profile.fn_weight, 0.0)
    # the reward falls along a window, so its earliest detection is its best
    window_score[hit_windows] = profile.tp_weight * corpus.weight[hit_rows[first]]
    per_file = per_file + np.bincount(corpus.window_file, weights=window_score, minlength=n_files)
    counted = corpus.scorable
    return NabResult(
        profile=profile.name,
        threshold=float(threshold),
        score=float(per_file.sum()),
        null=null_score(corpus, profile),
        perfect=perfect_score(corpus, profile),
        tp=len(hit_rows),
        fp=int(fp_rows.sum()),
        fn=int((counted & inside & ~det).sum()),
        tn=int((counted & ~inside & ~det).sum()),
        detected=len(hit_windows),
        windows=corpus.n_windows,
        per_file={n: float(v) for n, v in zip(corpus.names, per_file, strict=True)},
    )


def _sweep(s: F64, corpus: NabCorpus, profile: CostProfile) -> tuple[F64, F64]:
    """Every threshold that can matter and its raw score, highest threshold first.

    The first entry is "nothing detected" (a threshold just above the highest score);
    then, for each distinct score ``v``, the score with threshold ``v``.
    """
    rows = np.flatnonzero(corpus.scorable)
    order = rows[np.argsort(-s[rows], kind="stable")]
    vals, win, wt = s[order], corpus.window[order], corpus.weight[order]
    delta = np.where(win < 0, profile.fp_weight * wt, 0.0)
    # inside a window only a new earliest detection changes its score: group the
    # detections by window (keeping threshold order) and find the running minimum row
    pos = np.flatnonzero(win >= 0)
    by_win = pos[np.argsort(win[pos], kind="stable")]
    seg = win[by_win]
    key = order[by_win] - seg * (len(corpus.window) + 1)  # segments descend: min resets
    run_min = np.minimum.accumulate(key)
    new_seg = np.ones(len(seg), dtype=bool)
    new_seg[1:] = seg[1:] != seg[:-1]
    record = new_seg.copy()
    record[1:] |= key[1:] < run_min[:-1]
    rec = by_win[record]
    gain = profile.tp_weight * wt[rec]
    before = np.empty_like(gain)
    if len(gain):
        before[0] = -profile.fn_weight
        before[1:] = np.where(new_seg[record][1:], -profile.fn_weight, gain[:-1])
    delta[rec] = gain - before
    total = null_score(corpus, profile) + np.cumsum(delta)
    last = np.ones(len(vals), dtype=bool)
    last[:-1] = vals[1:] != vals[:-1]
    top = float(np.nextafter(vals[0], np.inf)) if len(vals) else 1.0
    thresholds = np.concatenate([[top], vals[last]])
    scores = np.concatenate([[null_score(corpus, profile)], total[last]])
    return thresholds, scores


def optimise_threshold(
    scores_by_file: Mapping[str, npt.ArrayLike], corpus: NabCorpus, profile: CostProfile
) -> ThresholdChoice:
    """The single threshold maximising the summed raw score over all files (exact sweep).

    Every distinct score is tried (NAB v1.1's optimiser does the same); on a tie the
    highest threshold wins. "Nothing detected" is a candidate, with a threshold just
    above the highest score.
    """
    thresholds, scores = _sweep(corpus.stack(scores_by_file), corpus, profile)
    best = int(np.argmax(scores))
    return ThresholdChoice(profile.name, float(thresholds[best]), float(scores[best]))


def optimise_thresholds(
    scores_by_file: Mapping[str, npt.ArrayLike],
    corpus: NabCorpus,
    profiles: Mapping[str, CostProfile],
) -> dict[str, ThresholdChoice]:
    """:func:`optimise_threshold` for each profile (the published scoreboard method)."""
    s = corpus.stack(scores_by_file)
    out = {}
    for name, profile in profiles.items():
        thresholds, scores = _sweep(s, corpus, profile)
        best = int(np.argmax(scores))
        out[name] = ThresholdChoice(name, float(thresholds[best]), float(scores[best]))
    return out


def null_detector(corpus: NabCorpus) -> dict[str, F64]:
    """Scores of the null detector: 0 everywhere (never fires at a positive threshold)."""
    return {f.name: np.zeros(len(f.timestamps)) for f in corpus.files}


def perfect_detector(corpus: NabCorpus) -> dict[str, F64]:
    """Scores of the perfect detector: 1 at the first scorable row of each window, else 0."""
    flat = np.zeros(len(corpus.window))
    rows = np.flatnonzero(corpus.scorable & (corpus.window >= 0))
    _, first = np.unique(corpus.window[rows], return_index=True)
    flat[rows[first]] = 1.0
    bounds = np.cumsum(corpus.lengths)[:-1]
    return dict(zip(corpus.names, np.split(flat, bounds), strict=True))


# --- loaders: the only I/O ------------------------------------------------------------


def _read_csv(path: Path, column: str) -> tuple[list[str], F64]:
    """The ``timestamp`` column (as text) and one float column of a NAB CSV file."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    try:
        ti, ci = header.index("timestamp"), header.index(column)
    except ValueError:
        raise ValueError(f"{path}: needs columns timestamp and {column}, has {header}") from None
    cells = [line.split(",") for line in lines[1:] if line]
    return [c[ti] for c in cells], np.array([float(c[ci]) for c in cells], dtype=np.float64)


def load_corpus(
    data_dir: str | Path, labels_file: str | Path, names: Sequence[str] | None = None
) -> NabCorpus:
    """Load the files named in ``labels_file`` (NAB ``combined_windows.json``) from ``data_dir``.

    Files are ordered by name; ``names`` restricts the corpus to some of them.
    """
    data_dir = Path(data_dir)
    labels = json.loads(Path(labels_file).read_text())
    files = []
    for name in sorted(labels if names is None else names):
        stamps, values = _read_csv(data_dir / name, "value")
        windows = tuple(
            (np.datetime64(a.replace(" ", "T"), "us"), np.datetime64(b.replace(" ", "T"), "us"))
            for a, b in labels[name]
        )
        files.append(NabFile(name, np.array(stamps, dtype="datetime64[us]"), values, windows))
    return NabCorpus(files)


def load_results(results_dir: str | Path, detector: str, corpus: NabCorpus) -> dict[str, F64]:
    """A detector's anomaly scores: ``<results_dir>/<folder>/<detector>_<file>.csv``.

    ``results_dir`` is the detector's own directory (NAB: ``results/<detector>``); the
    ``anomaly_score`` column is read. Raises ``ValueError`` if a file's timestamps differ from the data file's.
    """
    out = {}
    for f in corpus.files:
        folder, _, base = f.name.rpartition("/")
        path = Path(results_dir) / folder / f"{detector}_{base}"
        stamps, scores = _read_csv(path, "anomaly_score")
        if not np.array_equal(np.array(stamps, dtype="datetime64[us]"), f.timestamps):
            raise ValueError(f"{path}: timestamps differ from the data file's")
        out[f.name] = scores
    return out


def load_profiles(path: str | Path) -> dict[str, CostProfile]:
    """NAB ``profiles.json``: profile name → :class:`CostProfile`."""
    raw = json.loads(Path(path).read_text())
    return {
        name: CostProfile(
            name,
            float(p["CostMatrix"]["tpWeight"]),
            float(p["CostMatrix"]["fpWeight"]),
            float(p["CostMatrix"]["fnWeight"]),
        )
        for name, p in raw.items()
    }


def load_thresholds(path: str | Path) -> dict[str, dict[str, float]]:
    """NAB ``thresholds.json``: detector → profile → threshold."""
    raw = json.loads(Path(path).read_text())
    return {
        det: {prof: float(v["threshold"]) for prof, v in by_profile.items()}
        for det, by_profile in raw.items()
    }

"""NAB v1.1 scorer: reproduces the published scores, and each rule holds on tiny files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeloop.eval import nab
from edgeloop.eval.nab import CostProfile, NabCorpus, NabFile

DATA = Path(__file__).parents[2].parent / "shared" / "data" / "nab"
PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
PUBLISHED = {
    "ARTime": (74.47, 65.60, 79.70),
    "numenta": (69.85, 62.95, 73.34),
}

STANDARD = CostProfile("standard", 1.0, 0.11, 1.0)
LOW_FN = CostProfile("reward_low_FN_rate", 1.0, 0.11, 2.0)

# --- the published detectors on the 31 development files ------------------------------


@pytest.fixture(scope="module")
def corpus() -> NabCorpus:
    if not DATA.is_dir():
        pytest.fail(
            f"benchmark data not found at {DATA}: the tests read ../shared/data beside "
            "the project (see ../shared/data/README.md); it is never copied in"
        )
    return nab.load_corpus(DATA / "data", DATA / "labels" / "combined_windows.json")


@pytest.fixture(scope="module")
def profiles() -> dict[str, CostProfile]:
    return nab.load_profiles(DATA / "profiles.json")


@pytest.fixture(scope="module")
def results(corpus: NabCorpus) -> dict[str, dict[str, np.ndarray]]:
    return {d: nab.load_results(DATA / "results" / d, d, corpus) for d in PUBLISHED}


def test_corpus_is_the_31_development_files(corpus: NabCorpus) -> None:
    assert len(corpus.files) == 31
    assert int(corpus.lengths.sum()) == 191_345
    assert corpus.n_windows == len(corpus.window_scorable) == 61


@pytest.mark.parametrize("detector", sorted(PUBLISHED))
def test_reproduces_the_published_scores(
    detector: str,
    corpus: NabCorpus,
    profiles: dict[str, CostProfile],
    results: dict[str, dict[str, np.ndarray]],
) -> None:
    thresholds = nab.load_thresholds(DATA / "results" / "thresholds.json")[detector]
    got = tuple(
        nab.score_corpus(results[detector], corpus, profiles[p], thresholds[p]).normalised
        for p in PROFILE_NAMES
    )
    assert got == pytest.approx(PUBLISHED[detector], abs=0.01)


@pytest.mark.parametrize("detector", sorted(PUBLISHED))
def test_optimised_thresholds_score_at_least_the_published_ones(
    detector: str,
    corpus: NabCorpus,
    profiles: dict[str, CostProfile],
    results: dict[str, dict[str, np.ndarray]],
) -> None:
    published = nab.load_thresholds(DATA / "results" / "thresholds.json")[detector]
    best = nab.optimise_thresholds(results[detector], corpus, profiles)
    assert set(best) == set(PROFILE_NAMES)
    for name, choice in best.items():
        at_best = nab.score_corpus(results[detector], corpus, profiles[name], choice.threshold)
        assert at_best.score == pytest.approx(choice.score, abs=1e-9)
        at_published = nab.score_corpus(results[detector], corpus, profiles[name], published[name])
        assert choice.score >= at_published.score - 1e-9


def test_null_and_perfect_detectors_on_the_corpus(
    corpus: NabCorpus, profiles: dict[str, CostProfile]
) -> None:
    for profile in profiles.values():
        null = nab.score_corpus(nab.null_detector(corpus), corpus, profile, 0.5)
        perfect = nab.score_corpus(nab.perfect_detector(corpus), corpus, profile, 0.5)
        assert null.normalised == pytest.approx(0.0, abs=1e-9)
        assert perfect.normalised == pytest.approx(100.0, abs=1e-9)
        assert (perfect.detected, perfect.fp) == (61, 0)


# --- the rules, on tiny synthetic files -------------------------------------------------

N = 1000  # probation: 150 rows
WINDOW = (400, 499)  # rows


def tiny_file(
    name: str = "synthetic/a.csv", n: int = N, windows: tuple[tuple[int, int], ...] = (WINDOW,)
) -> NabFile:
    t = np.datetime64("2024-01-01T00:00:00", "us") + np.arange(n) * np.timedelta64(5, "m")
    return NabFile(name, t, np.zeros(n), tuple((t[a], t[b]) for a, b in windows))


def score_at(rows: list[int], profile: CostProfile = STANDARD, f: NabFile | None = None) -> float:
    f = f or tiny_file()
    s = np.zeros(len(f.timestamps))
    s[rows] = 1.0
    return nab.score_corpus({f.name: s}, NabCorpus([f]), profile, 0.5).score


def test_probationary_length() -> None:
    assert nab.probationary_length(1000) == 150
    assert nab.probationary_length(4032) == 604
    assert nab.probationary_length(4999) == 749
    assert nab.probationary_length(5000) == nab.probationary_length(22_695) == 750


def test_earliest_detection_in_a_window_earns_the_most() -> None:
    left, middle, right = score_at([400]), score_at([450]), score_at([499])
    assert left == pytest.approx(1.0)  # A_TP at the left edge
    assert left > middle > right > 0
    assert score_at([420, 480]) == score_at([420])  # only the earliest detection counts


def test_a_missed_window_costs_a_fn() -> None:
    assert score_at([]) == pytest.approx(-1.0)
    assert score_at([], LOW_FN) == pytest.approx(-2.0)


def test_a_false_positive_just_after_a_window_costs_less_than_a_far_one() -> None:
    miss = score_at([])
    just_after, later, far = (score_at([r]) - miss for r in (500, 600, 950))
    before_any_window = score_at([300]) - miss
    assert 0 > just_after > later > far
    assert before_any_window == pytest.approx(-STANDARD.fp_weight)
    assert far == pytest.approx(-STANDARD.fp_weight)  # past 3 window widths: full cost


def test_probationary_rows_are_ignored() -> None:
    assert score_at(list(range(150))) == score_at([])
    assert score_at([150]) == pytest.approx(score_at([]) - STANDARD.fp_weight)
    f = tiny_file(windows=((20, 100),))  # wholly inside the probation period
    corpus = NabCorpus([f])
    assert corpus.n_windows == 0
    assert score_at([50], f=f) == 0.0


def test_null_and_perfect_detectors_normalise_to_0_and_100() -> None:
    corpus = NabCorpus([tiny_file(), tiny_file("synthetic/b.csv", 2000, ((500, 600), (900, 1100)))])
    for profile in (STANDARD, LOW_FN):
        null = nab.score_corpus(nab.null_detector(corpus), corpus, profile, 0.5)
        perfect = nab.score_corpus(nab.perfect_detector(corpus), corpus, profile, 0.5)
        assert (null.normalised, perfect.normalised) == pytest.approx((0.0, 100.0))
        assert (perfect.windows, perfect.detected, perfect.tp, perfect.fp) == (3, 3, 3, 0)


def test_rows_are_scored_in_file_order() -> None:
    f = tiny_file()
    t = f.timestamps.copy()
    t[300:] -= np.timedelta64(50, "m")  # steps back once: rows 300-309 repeat 290-299's times
    f = NabFile(f.name, t, f.values, ((t[400], t[499]),))
    corpus = NabCorpus([f])
    assert np.flatnonzero(corpus.window >= 0).tolist() == list(range(400, 500))
    assert score_at([400], f=f) == pytest.approx(1.0)


def test_bad_windows_and_scores_are_refused() -> None:
    f = tiny_file()
    with pytest.raises(ValueError, match="not in the file"):
        NabCorpus(
            [NabFile(f.name, f.timestamps, f.values, ((f.timestamps[10], np.datetime64(0, "us")),))]
        )
    with pytest.raises(ValueError, match="overlaps"):
        NabCorpus([tiny_file(windows=((400, 500), (450, 600)))])
    corpus = NabCorpus([f])
    with pytest.raises(ValueError, match="missing"):
        nab.score_corpus({}, corpus, STANDARD, 0.5)
    with pytest.raises(ValueError, match="scores for"):
        nab.score_corpus({f.name: np.zeros(3)}, corpus, STANDARD, 0.5)


def test_optimiser_finds_the_best_threshold_by_brute_force() -> None:
    rng = np.random.default_rng(7)
    files = [
        tiny_file("synthetic/a.csv", 800, ((300, 360), (600, 640))),
        tiny_file("synthetic/b.csv", 1200, ((700, 800),)),
        tiny_file("synthetic/c.csv", 600),  # its window is [400, 499]
    ]
    corpus = NabCorpus(files)
    scores = {f.name: np.round(rng.random(len(f.timestamps)) ** 8, 3) for f in files}
    for profile in (STANDARD, LOW_FN, CostProfile("fp", 1.0, 0.5, 1.0)):
        choice = nab.optimise_threshold(scores, corpus, profile)
        candidates = np.unique(np.concatenate(list(scores.values())))
        brute = [nab.score_corpus(scores, corpus, profile, float(c)).score for c in candidates]
        brute.append(nab.null_score(corpus, profile))
        assert choice.score == pytest.approx(max(brute), abs=1e-9)
        got = nab.score_corpus(scores, corpus, profile, choice.threshold).score
        assert got == pytest.approx(choice.score, abs=1e-9)

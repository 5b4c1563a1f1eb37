"""Edge-side evidence: alert counts, agreement, KS shift and latency from two score arrays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgeloop.errors import ConfigError
from edgeloop.rollout import ks_distance, measure

scores = arrays(np.float64, st.integers(1, 60), elements=st.floats(0, 1))


@given(scores, scores)
def test_ks_distance_matches_its_definition(a: np.ndarray, b: np.ndarray) -> None:
    grid = np.union1d(a, b)
    expected = max(abs(np.mean(a <= x) - np.mean(b <= x)) for x in grid)
    assert ks_distance(a, b) == pytest.approx(expected)
    assert ks_distance(a, a) == 0.0 and ks_distance(a, []) == 0.0


@given(scores, st.floats(0.05, 0.95), st.floats(0.05, 0.95))
def test_counts_are_consistent(ch: np.ndarray, t_ch: float, t_cp: float) -> None:
    cp = np.clip(ch[::-1] * 0.8, 0, 1)
    m = measure("gw1", "v2", 0, 1, ch, cp, t_ch, t_cp)
    a, b = ch >= t_ch, cp >= t_cp
    assert (m.windows, m.challenger_alerts, m.champion_alerts) == (ch.size, a.sum(), b.sum())
    assert m.agreements == int((a == b).sum())
    # Disagreements are at least the difference in alert counts.
    assert m.windows - m.agreements >= abs(m.challenger_alerts - m.champion_alerts)


def test_a_model_that_alerts_on_everything_shows_in_every_figure() -> None:
    rng = np.random.default_rng(0)
    champ = rng.beta(1, 20, size=1000)
    bad = np.full(1000, 0.99)
    m = measure("gw1", "v2", 0, 1, bad, champ, 0.5, 0.5, latency_ms=rng.gamma(2, 0.5, 1000))
    assert m.challenger_alerts == 1000 and m.champion_alerts < 5
    assert m.agreements < 5 and m.score_shift == pytest.approx(1.0)
    assert 2.0 < m.latency_p99_ms < 6.0


def test_mismatched_or_non_finite_scores_are_refused() -> None:
    with pytest.raises(ConfigError, match="challenger has 2 scores, champion 3"):
        measure("gw1", "v2", 0, 1, [0.1, 0.2], [0.1, 0.2, 0.3], 0.5, 0.5)
    with pytest.raises(ConfigError, match="champion scores: 1 non-finite values"):
        measure("gw1", "v2", 0, 1, [0.1, 0.2], [0.1, np.nan], 0.5, 0.5)

"""SKAB scorers: the README's reference figures on the real files, and each rule on tiny ones."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edgeloop.eval import skab
from edgeloop.eval.skab import SKAB_PROFILES, SkabFile

DATA = Path(__file__).parents[2].parent / "shared" / "data" / "skab" / "data"


@pytest.fixture(scope="module")
def files() -> list[SkabFile]:
    if not DATA.is_dir():
        pytest.fail(
            f"benchmark data not found at {DATA}: the tests read ../shared/data beside "
            "the project (see ../shared/data/README.md); it is never copied in"
        )
    return skab.load_skab(DATA)


def test_loads_the_17_labelled_experiments(files: list[SkabFile]) -> None:
    assert len(files) == 17
    assert {f.name.split("/")[0] for f in files} == {"other", "valve1", "valve2"}
    for f in files:
        assert f.values.shape == (len(f.timestamps), len(skab.SENSORS))
        assert f.anomaly is not None and f.changepoint is not None
        assert f.anomaly[: skab.FIT_ROWS].sum() == 0
    free = skab.load_anomaly_free(DATA)
    assert free.anomaly is None and free.changepoint is None
    assert free.values.shape[1] == len(skab.SENSORS)


def test_all_zero_predictions(files: list[SkabFile]) -> None:
    zeros = {f.name: np.zeros(len(f.timestamps)) for f in files}
    out = skab.outlier_score(files, zeros)
    assert (out.f1, out.far, out.mar) == (0.0, 0.0, 100.0)
    cp = skab.changepoint_score(files, zeros)
    assert cp.scores == pytest.approx(dict.fromkeys(SKAB_PROFILES, 0.0))


def test_perfect_predictions(files: list[SkabFile]) -> None:
    out = skab.outlier_score(files, {f.name: f.anomaly for f in files if f.anomaly is not None})
    assert (out.f1, out.far, out.mar) == (1.0, 0.0, 0.0)
    cp = skab.changepoint_score(
        files, {f.name: f.changepoint for f in files if f.changepoint is not None}
    )
    # five change points lie closer than 60 s to the previous one: their windows are unhittable
    assert (cp.changepoints, cp.detected, cp.false_alarms) == (63, 58, 0)
    assert cp.scores["standard"] == pytest.approx(92.06, abs=0.005)


# --- tiny synthetic files --------------------------------------------------------------


def tiny(anomaly: list[int], cps: list[int], n: int | None = None) -> SkabFile:
    n = n or len(anomaly)
    t = np.datetime64("2020-01-01T00:00:00", "s") + np.arange(n) * np.timedelta64(1, "s")
    a = np.zeros(n, dtype=bool)
    a[: len(anomaly)] = np.asarray(anomaly, dtype=bool)
    c = np.zeros(n, dtype=bool)
    c[cps] = True
    return SkabFile("t/x.csv", t, np.zeros((n, len(skab.SENSORS))), a, c)


def cp_raw(f: SkabFile, alarms: list[int], profile: str = "standard") -> float:
    p = np.zeros(len(f.timestamps))
    p[alarms] = 1
    return skab.changepoint_score([f], {f.name: p}, skip=0).raw[profile]


def test_point_wise_counts_and_rates() -> None:
    f = tiny([1, 1, 0, 0], [])
    out = skab.outlier_score([f], {f.name: [1, 0, 1, 0]}, skip=0)
    assert (out.tp, out.fp, out.fn, out.tn) == (1, 1, 1, 1)
    assert (out.f1, out.far, out.mar) == (0.5, 50.0, 50.0)
    assert math.isnan(skab.outlier_score([f], {f.name: [0] * 4}, skip=4).f1)


def test_fitting_rows_are_not_scored() -> None:
    f = tiny([0] * 500, [450])
    f = SkabFile(f.name, f.timestamps, f.values, f.timestamps < f.timestamps[10], f.changepoint)
    p = np.zeros(500)
    p[:10] = 1  # alarms on the (labelled) first rows, inside the fitting part
    out = skab.outlier_score([f], {f.name: p})
    assert (out.tp, out.fp, out.fn) == (0, 0, 0)
    p[450] = 1
    cp = skab.changepoint_score([f], {f.name: p})
    assert (cp.changepoints, cp.detected, cp.false_alarms) == (1, 1, 0)


def test_earlier_detection_in_a_window_scores_more() -> None:
    f = tiny([0] * 300, [100])
    at_cp, mid, end, miss = (cp_raw(f, a) for a in ([100], [130], [160], []))
    assert at_cp == pytest.approx(1.0)  # A_TP at the change point
    assert at_cp > mid > end
    assert mid == pytest.approx((1.0 - 0.11) / 2, abs=0.01)
    assert end == pytest.approx(-0.11)  # the window's end is worth a false alarm
    assert miss == -1.0 and cp_raw(f, [], "LowFN") == -2.0


def test_alarms_outside_windows_cost_a_fp_and_repeats_inside_are_free() -> None:
    f = tiny([0] * 300, [100])
    assert cp_raw(f, [100, 110, 160]) == pytest.approx(1.0)
    assert cp_raw(f, [50, 100, 161, 250]) == pytest.approx(1.0 - 3 * 0.11)
    assert cp_raw(f, [50, 100], "LowFP") == pytest.approx(1.0 - 0.22)


def test_overlapping_windows_are_cut_on_the_right() -> None:
    f = tiny([0] * 300, [100, 130, 190])
    assert f.changepoint is not None
    starts, ends = skab.changepoint_windows(f.timestamps, f.changepoint)
    offsets = ((starts - f.timestamps[0]).astype(int), (ends - f.timestamps[0]).astype(int))
    assert [o.tolist() for o in offsets] == [[100, 160, 190], [160, 190, 250]]
    # an alarm at each change point: 130 lies in the first window (free), 190 is the shared
    # edge of windows 2 and 3, so it hits window 2 at its end (worth A_FP) and 3 at its start
    cp = skab.changepoint_score([f], {f.name: f.changepoint}, skip=0)
    assert (cp.changepoints, cp.detected, cp.false_alarms) == (3, 3, 0)
    assert cp.raw["standard"] == pytest.approx(1.0 - 0.11 + 1.0)
    assert cp_raw(f, [100, 130]) == pytest.approx(1.0 - 1.0 - 1.0)  # windows 2 and 3 missed
    assert cp.scores["standard"] == pytest.approx(100 * (cp.raw["standard"] + 3) / 6)


def test_wrong_prediction_length_is_refused() -> None:
    f = tiny([0, 1, 0], [1])
    with pytest.raises(ValueError, match="predictions for 3 rows"):
        skab.outlier_score([f], {f.name: [0, 1]}, skip=0)

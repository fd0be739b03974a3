"""Vehicle-wise splitting and the warning report."""

from __future__ import annotations

import numpy as np
import pytest

from models.crossval import cross_validate_cost
from models.errors import InsufficientDataError
from models.evaluate import (
    calibration,
    classification_report,
    lead_times,
    split_by_vehicle,
    split_by_vehicle_and_time,
    time_to_failure_error,
)


def test_split_keeps_each_vehicle_on_one_side() -> None:
    ids = np.repeat([f"v{i}" for i in range(10)], 5)
    train, test = split_by_vehicle(ids, 0.3, seed=1)
    assert not (set(ids[train]) & set(ids[test]))
    assert (train | test).all()
    assert len(set(ids[test])) == 3


def test_split_is_reproducible_and_seed_dependent() -> None:
    ids = np.repeat([f"v{i}" for i in range(20)], 3)
    a = split_by_vehicle(ids, 0.25, seed=5)[1]
    b = split_by_vehicle(ids, 0.25, seed=5)[1]
    c = split_by_vehicle(ids, 0.25, seed=6)[1]
    assert (a == b).all()
    assert not (a == c).all()


def test_stratified_split_puts_failing_vehicles_on_both_sides() -> None:
    ids = np.repeat([f"v{i}" for i in range(8)], 4)
    y = np.isin(ids, ["v0", "v1", "v2", "v3"]) & (np.arange(ids.size) % 4 == 3)
    train, test = split_by_vehicle(ids, 0.5, seed=0, stratify=y)
    assert y[train].any()
    assert y[test].any()


def test_two_failing_vehicles_are_split_one_each_way() -> None:
    ids = np.repeat([f"v{i}" for i in range(10)], 2)
    y = np.isin(ids, ["v3", "v7"])
    for seed in range(5):
        train, test = split_by_vehicle(ids, 0.25, seed=seed, stratify=y)
        assert set(ids[test & y]) and set(ids[train & y])


def test_split_needs_two_vehicles() -> None:
    with pytest.raises(InsufficientDataError):
        split_by_vehicle(np.array(["a", "a"]), 0.5, seed=0)


def test_report_counts_and_cost() -> None:
    y = np.array([0, 0, 1, 1, 0])
    p = np.array([0.1, 0.6, 0.7, 0.2, 0.3])
    rep = classification_report(y, p, threshold=0.5, cost_fp=1.0, cost_fn=10.0)
    assert (rep["tp"], rep["fp"], rep["fn"], rep["tn"]) == (1, 1, 1, 2)
    assert rep["precision"] == 0.5
    assert rep["recall"] == 0.5
    assert rep["cost"] == 11.0
    assert rep["n"] == 5
    assert 0.0 <= rep["brier"] <= 1.0
    assert rep["roc_auc"] is not None


def test_report_with_one_class_has_no_auc() -> None:
    rep = classification_report(np.zeros(3), np.array([0.1, 0.2, 0.9]), 0.5, 1.0, 10.0)
    assert rep["roc_auc"] is None
    assert rep["recall"] is None
    assert rep["fp"] == 1


def test_lead_time_counts_only_warnings_before_the_failure() -> None:
    ids = np.array(["a"] * 5 + ["b"] * 5 + ["c"] * 5)
    days = np.tile(np.arange(5.0), 3)
    warned = np.array([[0, 1, 1, 0, 1], [0, 0, 0, 0, 1], [1, 0, 0, 0, 0]], dtype=bool).ravel()
    rep = lead_times(ids, days, warned, {"a": 4.0, "b": 3.0})
    assert rep["per_vehicle"] == {"a": 3.0, "b": None}, "b warned only after failing"
    assert rep["n_failures"] == 2 and rep["n_warned_in_time"] == 1
    assert rep["median_lead_days"] == 3.0


def test_calibration_of_honest_and_overconfident_probabilities() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20_000)
    y = rng.uniform(0, 1, p.size) < p
    assert calibration(y, p)["ece"] < 0.02
    assert calibration(y, np.where(p > 0.5, 1.0, 0.0))["ece"] > 0.2
    assert sum(b["n"] for b in calibration(y, p)["bins"]) == p.size


def test_time_to_failure_error_sign_and_size() -> None:
    rep = time_to_failure_error([12.0, 8.0, np.inf], [10.0, 10.0, 5.0])
    assert rep == {"n": 2, "mae": 2.0, "median_abs": 2.0, "bias": 0.0}
    assert time_to_failure_error([], [])["mae"] is None


def test_cross_validation_tunes_each_fold_on_its_own_training_part() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 2))
    X[::5, 1] = np.nan
    y = (X[:, 0] + rng.normal(0, 0.5, 400) > 1.5).astype(int)
    cv = cross_validate_cost(X, y, cost_fp=1.0, cost_fn=10.0, folds=4)
    rep = cv.report
    assert rep["tp"] + rep["fp"] + rep["tn"] + rep["fn"] == 400
    assert rep["cost"] == rep["fp"] + 10 * rep["fn"]
    assert len(cv.fold_thresholds) == cv.folds == 4
    with pytest.raises(InsufficientDataError, match="at least 2"):
        cross_validate_cost(X, np.r_[1, np.zeros(399, dtype=int)], cost_fp=1, cost_fn=1)


def test_vehicle_and_time_split_purges_rows_whose_label_sees_the_future() -> None:
    ids = np.repeat(["a", "b", "c"], 10)
    days = np.tile(np.arange(10.0), 3)
    train, test = split_by_vehicle_and_time(ids, days, ["c"], cutoff=6.0, horizon=2.0)
    assert set(days[train]) == {0.0, 1.0, 2.0, 3.0}
    assert set(ids[train]) == {"a", "b"}
    assert set(ids[test]) == {"c"} and days[test].min() == 6.0


def test_split_keeps_held_out_vehicles_held_out_as_the_fleet_grows() -> None:
    small = np.repeat([f"v{i}" for i in range(40)], 2)
    grown = np.repeat([f"v{i}" for i in range(44)], 2)
    before = set(small[split_by_vehicle(small, 0.25, seed=2)[1]])
    after = set(grown[split_by_vehicle(grown, 0.25, seed=2)[1]])
    assert len(before & after) >= len(before) - 1

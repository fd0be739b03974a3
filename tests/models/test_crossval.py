"""Cross-validated cost: every candidate on the same folds, baselines and threshold spread."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from models import BoostedWarningClassifier
from models.crossval import (
    all_negative_candidate,
    cross_validate_cost,
    fold_splits,
    folded_cost,
    plain_gbm_candidate,
    threshold_spread,
)
from models.errors import InsufficientDataError


def _table(seed: int = 0, n: int = 900) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    wear = rng.normal(size=n)
    X = np.column_stack([np.exp(2 * wear + rng.normal(0, 0.5, n)), rng.lognormal(0, 2, n)])
    X[rng.random(X.shape) < 0.15] = np.nan
    y = (wear + 0.5 * rng.normal(size=n) > 1.6).astype(int)
    return X, y, rng.integers(0, 150, n)


def test_baselines_share_the_folds_and_cost_what_they_should() -> None:
    X, y, groups = _table()
    cv = cross_validate_cost(X, y, cost_fp=10.0, cost_fn=500.0, folds=4, groups=groups)
    assert cv.estimator == "boosted" and cv.folds == 4
    never = cv.baselines["all_negative"]
    assert never["cost"] == 500.0 * y.sum() and never["tp"] == never["fp"] == 0
    gbm = cv.baselines["plain_gbm"]
    assert gbm["cost"] == 10 * gbm["fp"] + 500 * gbm["fn"]
    splits = fold_splits(y, groups, folds=4, seed=0)
    again = folded_cost(plain_gbm_candidate(0), X, y, splits, cost_fp=10.0, cost_fn=500.0,
                        groups=groups)
    assert again.report["cost"] == gbm["cost"] and again.fold_thresholds == [0.5] * 4
    assert sum(cv.fold_costs) == cv.report["cost"] < never["cost"]
    assert cv.threshold_spread == threshold_spread(cv.fold_thresholds)


def test_folds_never_split_a_group() -> None:
    _, y, groups = _table(1)
    for train, test in fold_splits(y, groups, folds=5, seed=3):
        assert not set(groups[train]) & set(groups[test])


def test_all_negative_warns_nobody() -> None:
    X, y, _ = _table(2)
    splits = fold_splits(y, None, folds=3, seed=0)
    folded = folded_cost(all_negative_candidate(), X, y, splits, cost_fp=1.0, cost_fn=7.0)
    assert folded.report["fp"] == folded.report["tp"] == 0
    assert folded.report["cost"] == 7.0 * y.sum()


def test_threshold_spread_figures() -> None:
    spread = threshold_spread([0.1, 0.2, 0.3, 0.4, 0.5])
    assert spread["min"] == 0.1 and spread["max"] == 0.5
    assert spread["iqr"] == pytest.approx(0.2) and spread["std"] == pytest.approx(np.sqrt(0.02))


def test_logistic_estimator_robust_by_default_and_without_baselines() -> None:
    X, y, groups = _table(3)
    robust = cross_validate_cost(X, y, cost_fp=1.0, cost_fn=20.0, folds=3, groups=groups,
                                 estimator="logistic", baselines=False)
    raw = cross_validate_cost(X, y, cost_fp=1.0, cost_fn=20.0, folds=3, groups=groups,
                              estimator="logistic", robust=False, baselines=False)
    assert robust.baselines == {} and robust.estimator == "logistic"
    assert robust.report["roc_auc"] > raw.report["roc_auc"]


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"estimator": "forest"}, ValueError, "unknown estimator 'forest'"),
    ({"folds": 1}, ValueError, "folds must be at least 2"),
], ids=["unknown-estimator", "one-fold"])
def test_refuses_what_it_cannot_run(kwargs: dict[str, object], error: type[Exception],
                                    message: str) -> None:
    X, y, _ = _table(4, n=200)
    with pytest.raises(error, match=message):
        cross_validate_cost(X, y, cost_fp=1.0, cost_fn=1.0, **kwargs)  # type: ignore[arg-type]


def test_one_failing_row_is_too_little_to_fold() -> None:
    with pytest.raises(InsufficientDataError, match="at least 2"):
        fold_splits(np.r_[1, np.zeros(199, dtype=int)], None, folds=5, seed=0)
    with pytest.raises(InsufficientDataError, match="exactly two values"):
        fold_splits(np.zeros(200, dtype=int), None, folds=5, seed=0)


def test_uncalibrated_boosted_keeps_the_weighted_trees_probabilities() -> None:
    X, y, groups = _table(6)
    model = BoostedWarningClassifier(calibrate=False).fit(X, y, groups=groups)
    assert (model.platt_slope_, model.platt_intercept_) == (1.0, 0.0)
    np.testing.assert_allclose(model.oof_proba_, expit(model.oof_raw_))
    calibrated = BoostedWarningClassifier().fit(X, y, groups=groups)
    np.testing.assert_array_equal(calibrated.oof_raw_, model.oof_raw_)
    assert model.oof_proba_.mean() > calibrated.oof_proba_.mean()

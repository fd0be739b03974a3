"""FaultWarningClassifier: the scikit-learn contract and its cost-tuned threshold."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.utils.estimator_checks import parametrize_with_checks

from models import FaultWarningClassifier, cost_optimal_threshold
from models.errors import InsufficientDataError

_THRESHOLD = (
    "predict warns at the cost-tuned threshold_, not at the argmax of predict_proba, "
    "by design (a missed failure costs more than a needless inspection)"
)
EXPECTED_FAILED: dict[str, str] = {
    "check_classifiers_train": _THRESHOLD,
    "check_class_weight_classifiers": (
        "threshold_ is re-tuned on the weighted model's probabilities, so it undoes the "
        "shift in predictions a class_weight makes; class_weight still reaches the regression"
    ),
}


@parametrize_with_checks(
    [FaultWarningClassifier()],
    expected_failed_checks=lambda est: EXPECTED_FAILED,
)
def test_sklearn_estimator_checks(estimator, check):  # type: ignore[no-untyped-def]
    check(estimator)


def _data(seed: int = 0, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + 0.5 * rng.normal(size=n) > 1.2).astype(int)
    return X, y


def test_threshold_minimises_cost_on_out_of_fold_predictions() -> None:
    X, y = _data()
    cheap_misses = FaultWarningClassifier(cost_fn=1.0, cost_fp=10.0).fit(X, y)
    dear_misses = FaultWarningClassifier(cost_fn=10.0, cost_fp=1.0).fit(X, y)
    assert dear_misses.threshold_ < cheap_misses.threshold_
    assert dear_misses.predict(X).sum() > cheap_misses.predict(X).sum()


def test_cost_optimal_threshold_separable_case() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.7, 0.9])
    cut = cost_optimal_threshold(y, p, 1.0, 10.0)
    assert 0.2 < cut <= 0.7


def test_handles_nan_and_keeps_polars_feature_names() -> None:
    X, y = _data()
    X[::7, 1] = np.nan
    frame = pl.DataFrame(X, schema=["soh", "crank_dip_min", "pad_wear_max"])
    model = FaultWarningClassifier().fit(frame, y)
    assert list(model.feature_names_in_) == ["soh", "crank_dip_min", "pad_wear_max"]
    proba = model.predict_proba(frame)
    assert proba.shape == (300, 2)
    assert np.all(np.isfinite(proba))


def test_one_class_is_insufficient_data() -> None:
    X, _ = _data()
    with pytest.raises(InsufficientDataError, match="class"):
        FaultWarningClassifier().fit(X, np.zeros(len(X), dtype=int))


def test_reproducible_with_fixed_seed() -> None:
    X, y = _data(1)
    a = FaultWarningClassifier(random_state=3).fit(X, y)
    b = clone(a).fit(X, y)
    assert a.threshold_ == b.threshold_


def test_grouped_folds_tune_the_threshold_on_unseen_vehicles() -> None:
    """With groups, each fold's probabilities come from a model that never saw that vehicle."""
    rng = np.random.default_rng(4)
    vehicles = np.repeat(np.arange(40), 30)
    offset = rng.normal(0, 1.0, 40)[vehicles]
    fails = np.isin(vehicles, np.arange(8)) & (np.tile(np.arange(30), 40) >= 20)
    X = np.column_stack([offset + 1.5 * fails + rng.normal(0, 0.05, vehicles.size)])
    model = FaultWarningClassifier(random_state=0).fit(X, fails, groups=vehicles)
    folds = StratifiedGroupKFold(3, shuffle=True, random_state=0)
    for train, test in folds.split(X, fails, vehicles):
        assert not set(vehicles[train]) & set(vehicles[test])
    oof = cross_val_predict(model._new_pipeline(), X, fails.astype(int), cv=folds,
                            groups=vehicles, method="predict_proba")[:, 1]
    assert model.threshold_ == cost_optimal_threshold(fails.astype(int), oof, 1.0, 10.0)
    rowwise = FaultWarningClassifier(random_state=0).fit(X, fails)
    np.testing.assert_allclose(model.predict_proba(X), rowwise.predict_proba(X))

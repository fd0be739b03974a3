"""BoostedWarningClassifier: the scikit-learn contract, calibration, exact explanations."""

from __future__ import annotations

import json
import pickle

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
import skops.io as sio
from hand_trees import two_trees
from scipy.special import expit, logit
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from models import (
    BoostedWarningClassifier,
    FaultWarningClassifier,
    SignedLog1p,
    cost_optimal_threshold,
    platt_scaling,
)
from models._boosted import PathTables
from models.errors import InsufficientDataError

EXPECTED_FAILED: dict[str, str] = {
    "check_classifiers_train": (
        "predict warns at the cost-tuned threshold_, not at the argmax of predict_proba, "
        "by design (a missed failure costs more than a needless inspection)"),
    "check_class_weight_classifiers": (
        "calibration and threshold_ are fitted after the weighted trees, so they undo the "
        "shift in predictions a class_weight makes; class_weight still reaches the trees"),
}


@parametrize_with_checks(
    [BoostedWarningClassifier(n_estimators=30), SignedLog1p()],
    expected_failed_checks=lambda est: (
        EXPECTED_FAILED if isinstance(est, BoostedWarningClassifier) else {}),
)
def test_sklearn_estimator_checks(estimator, check):  # type: ignore[no-untyped-def]
    check(estimator)


def _heavy_tailed(seed: int = 0, n: int = 1500, missing: float = 0.2
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lognormal counters with missing cells; failures follow the first two; 60 vehicles."""
    rng = np.random.default_rng(seed)
    X = rng.lognormal(mean=3.0, sigma=1.5, size=(n, 6))
    signal = np.log(X[:, 0]) - 0.5 * np.log(X[:, 1]) + rng.normal(0, 0.7, n)
    y = (signal > 4.2).astype(int)
    X[rng.random(X.shape) < missing] = np.nan
    return X, y, rng.integers(0, 60, n)


def test_contributions_add_up_exactly_to_the_calibrated_log_odds() -> None:
    X, y, groups = _heavy_tailed()
    model = BoostedWarningClassifier(random_state=1).fit(X, y, groups=groups)
    rng = np.random.default_rng(9)
    fresh = rng.normal(3.0, 4.0, size=(400, 6))
    fresh[rng.random(fresh.shape) < 0.3] = np.nan
    contrib, values = model.contributions(fresh)
    proba = model.predict_proba(fresh)[:, 1]
    np.testing.assert_allclose(contrib.sum(axis=1) + model.expected_log_odds_, logit(proba),
                               atol=1e-6, rtol=0)
    np.testing.assert_array_equal(values, fresh)
    assert np.abs(contrib).sum() > 0


def test_calibrated_on_out_of_fold_scores_and_threshold_tuned_on_them() -> None:
    X, y, groups = _heavy_tailed(2)
    model = BoostedWarningClassifier(class_weight="balanced").fit(X, y, groups=groups)
    assert model.oof_folds_ == 3
    assert model.oof_proba_.shape == (y.size,)
    assert roc_auc_score(y, model.oof_proba_) > 0.8
    # Platt's fit leaves the expected number of failures equal to its (smoothed) targets; on
    # new vehicles the calibrated probabilities beat the (fully) class-weighted trees' own.
    n_pos = int(y.sum())
    smoothed = n_pos * (n_pos + 1) / (n_pos + 2) + (y.size - n_pos) / (y.size - n_pos + 2)
    assert model.oof_proba_.sum() == pytest.approx(smoothed, rel=1e-6)
    fresh, fails, _ = _heavy_tailed(20, n=5000)
    calibrated = model.predict_proba(fresh)[:, 1]
    weighted_trees = expit(model.booster_.predict(fresh, raw_score=True))
    assert brier_score_loss(fails, calibrated) < 0.9 * brier_score_loss(fails, weighted_trees)
    assert abs(calibrated.mean() - fails.mean()) < abs(weighted_trees.mean() - fails.mean())
    assert model.threshold_ == cost_optimal_threshold(y, model.oof_proba_, 1.0, 10.0)


def test_default_weighting_is_the_square_root_of_the_class_ratio() -> None:
    X, y, _ = _heavy_tailed(12, n=600)
    weights = BoostedWarningClassifier().fit(X, y)._weights(y)
    assert weights is not None
    ratio = (y == 0).sum() / (y == 1).sum()
    assert np.unique(weights).tolist() == pytest.approx([1.0, np.sqrt(ratio)])
    with pytest.raises(ValueError, match="class_weight must be"):
        BoostedWarningClassifier(class_weight="heavy").fit(X, y)


def test_grouped_out_of_fold_scores_never_see_the_vehicle() -> None:
    """Rows of a vehicle share a fingerprint and a label: only grouped folds are not fooled."""
    rng = np.random.default_rng(5)
    vehicles = np.repeat(np.arange(80), 25)
    fingerprint = rng.normal(size=(80, 4))[vehicles] + rng.normal(0, 0.01, (vehicles.size, 4))
    fails = (rng.random(80) < 0.3)[vehicles].astype(int)
    grouped = BoostedWarningClassifier(n_estimators=60).fit(fingerprint, fails, groups=vehicles)
    rowwise = BoostedWarningClassifier(n_estimators=60).fit(fingerprint, fails)
    assert roc_auc_score(fails, rowwise.oof_proba_) > 0.95
    assert roc_auc_score(fails, grouped.oof_proba_) < 0.75


def test_fewer_folds_with_few_failing_vehicles_and_in_sample_with_one() -> None:
    X, _, _ = _heavy_tailed(3, n=400)
    vehicles = np.repeat(np.arange(20), 20)
    two = np.isin(vehicles, [0, 1]).astype(int)
    assert BoostedWarningClassifier(cv=5).fit(X, two, groups=vehicles).oof_folds_ == 2
    one = (vehicles == 0).astype(int)
    lonely = BoostedWarningClassifier(cv=5).fit(X, one, groups=vehicles)
    assert lonely.oof_folds_ == 0
    assert np.all(np.isfinite(lonely.oof_proba_))


def test_explain_matches_a_row_by_row_ranking_and_shows_missing_as_none() -> None:
    X, y, groups = _heavy_tailed(4)
    names = ["starts", "hours_hot", "faults", "km", "idle_h", "regen"]
    frame = pl.DataFrame(X, schema=names, orient="row")
    model = BoostedWarningClassifier().fit(frame, y, groups=groups)
    assert model.design_names() == names
    why = model.explain(frame[:200], top=3)
    contrib, values = model.contributions(frame[:200])
    for row, reasons in enumerate(why):
        ranked = sorted(range(6), key=lambda j: (-abs(contrib[row, j]), j))[:3]
        assert [r["feature"] for r in reasons] == [names[j] for j in ranked]
        for reason, j in zip(reasons, ranked, strict=True):
            assert reason["contribution"] == round(float(contrib[row, j]), 4)
            v = values[row, j]
            assert reason["value"] == (None if np.isnan(v) else round(float(v), 4))
    assert any(r["value"] is None for reasons in why for r in reasons)
    legacy = FaultWarningClassifier().fit(frame, y).explain(frame[:1])
    assert [set(r) for r in why[0]] == [set(r) for r in legacy[0]]


def test_monotone_constraint_by_column_name() -> None:
    rng = np.random.default_rng(6)
    wear = rng.uniform(0, 100, 3000)
    # The label falls with wear above 70 in this (wrong) sample; the constraint forbids that.
    y = ((wear > 50) & (wear < 70) | (rng.random(3000) < 0.02)).astype(int)
    frame = pl.DataFrame({"pad_wear": wear, "noise": rng.normal(size=3000)})
    free = BoostedWarningClassifier().fit(frame, y)
    held = BoostedWarningClassifier(monotone={"pad_wear": 1}).fit(frame, y)
    grid = pl.DataFrame({"pad_wear": np.linspace(0, 100, 101), "noise": np.zeros(101)})
    assert np.all(np.diff(held.predict_proba(grid)[:, 1]) >= -1e-12)
    assert np.any(np.diff(free.predict_proba(grid)[:, 1]) < -1e-3)


@pytest.mark.parametrize(("monotone", "message"), [
    ({"pad_wear_pct": 1}, "does not have"),
    ({"pad_wear": 2}, "-1, 0 or \\+1"),
], ids=["unknown-column", "bad-direction"])
def test_monotone_refuses_what_it_cannot_apply(monotone: dict[str, int], message: str) -> None:
    frame = pl.DataFrame({"pad_wear": np.arange(40.0), "noise": np.ones(40)})
    with pytest.raises(ValueError, match=message):
        BoostedWarningClassifier(monotone=monotone).fit(frame, np.arange(40) % 2)


def test_one_class_is_insufficient_data() -> None:
    X, _, _ = _heavy_tailed(n=100)
    with pytest.raises(InsufficientDataError, match="class"):
        BoostedWarningClassifier().fit(X, np.zeros(100, dtype=int))


def test_pickled_model_predicts_identically_and_stores_no_native_handle() -> None:
    X, y, groups = _heavy_tailed(7)
    model = BoostedWarningClassifier().fit(X, y, groups=groups)
    assert "booster_" not in model.__getstate__()
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(again.contributions(X)[0], model.contributions(X)[0])


def test_platt_scaling_recovers_a_known_slope_and_stays_finite_when_separable() -> None:
    rng = np.random.default_rng(8)
    score = rng.normal(0, 2, 20000)
    y = rng.random(score.size) < expit(0.7 * score - 1.5)
    a, b = platt_scaling(score, y)
    assert a == pytest.approx(0.7, abs=0.05) and b == pytest.approx(-1.5, abs=0.07)
    separable = np.array([-2.0, -1.0, 1.0, 2.0])
    a, b = platt_scaling(separable, separable > 0)
    assert 0 < a < 10 and np.isfinite(b)


def test_signed_log1p_transforms_heavy_tailed_columns_only() -> None:
    rng = np.random.default_rng(10)
    X = np.column_stack([rng.lognormal(4, 2, 2000), rng.normal(0, 1, 2000),
                         -rng.lognormal(2, 1.5, 2000), rng.uniform(0, 0.01, 2000)])
    X[::9, 0] = np.nan
    step = SignedLog1p().fit(X)
    assert step.columns_.tolist() == [True, False, True, False]
    out = step.transform(X)
    assert np.isnan(out[::9, 0]).all()
    np.testing.assert_allclose(out[1:9, 0], np.log1p(X[1:9, 0]))
    np.testing.assert_allclose(out[:, 2], -np.log1p(-X[:, 2]))
    np.testing.assert_array_equal(out[:, [1, 3]], X[:, [1, 3]])


def test_robust_logistic_explains_exactly_with_the_values_as_given() -> None:
    X, y, groups = _heavy_tailed(11)
    model = FaultWarningClassifier(robust=True).fit(X, y, groups=groups)
    assert isinstance(model.pipeline_[0], SignedLog1p)
    contrib, values = model.contributions(X)
    proba = model.predict_proba(X)[:, 1]
    np.testing.assert_allclose(contrib.sum(axis=1) + model.pipeline_[-1].intercept_[0],
                               logit(proba), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(values, X)
    plain = FaultWarningClassifier().fit(X, y, groups=groups)
    assert roc_auc_score(y, proba) > roc_auc_score(y, plain.predict_proba(X)[:, 1])


TWO_TREES = two_trees((2, 2), (0.1, 0.5))
"""Two hand-written trees. Tree 0: ``a <= 0.5`` (value 0.1) to a leaf of -1, else
``b <= 0.5`` (value 0.5) to 0.2 or 1.4. Tree 1: ``c <= 0.5`` (value 0) to ``c <= 0.25``
(value -0.2, leaves -0.5 and 0.1), else a leaf of 0.3: column c is split twice on a path."""


def test_path_shares_of_hand_built_trees_are_the_value_changes_along_each_path() -> None:
    booster = lgb.Booster(model_str=TWO_TREES)
    X = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.3], [1.0, 1.0, 0.9], [np.nan, 0.0, 0.1]])
    tables = PathTables.of(booster)
    # By hand: tree 0 credits a with -1 - 0.1 (left) or 0.5 - 0.1 (right), then b with
    # 0.2 - 0.5 or 1.4 - 0.5; tree 1 credits c with (-0.2 - 0) + (-0.5 + 0.2) = -0.5,
    # (-0.2 - 0) + (0.1 + 0.2) = 0.1, or 0.3 - 0; the bias is the roots' 0.1 + 0.
    expected = np.array([[-1.1, 0.0, -0.5], [0.4, -0.3, 0.1], [0.4, 0.9, 0.3],
                         [-1.1, 0.0, -0.5]])
    assert tables.bias == pytest.approx(0.1)
    shares = tables.shares(booster, X)
    np.testing.assert_allclose(shares, expected, atol=1e-12)
    np.testing.assert_allclose(shares.sum(axis=1) + tables.bias,
                               booster.predict(X, raw_score=True), atol=1e-12)


def test_path_contributions_add_up_exactly_to_the_raw_score_and_the_log_odds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    X, y, groups = _heavy_tailed(3)
    model = BoostedWarningClassifier(random_state=2, attribution="path").fit(X, y, groups=groups)
    rng = np.random.default_rng(4)
    fresh = rng.lognormal(3.0, 1.5, size=(700, 6))
    fresh[rng.random(fresh.shape) < 0.3] = np.nan
    tables = model.path_tables()
    raw = model.booster_.predict(fresh, raw_score=True)
    monkeypatch.setattr("models._boosted.PATH_CHUNK_ROWS", 64)  # chunks and a remainder
    np.testing.assert_allclose(tables.shares(model.booster_, fresh).sum(axis=1) + tables.bias,
                               raw, atol=1e-6, rtol=0)
    contrib, values = model.contributions(fresh)
    np.testing.assert_allclose(contrib.sum(axis=1) + model.baseline_log_odds(),
                               logit(model.predict_proba(fresh)[:, 1]), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(values, fresh)
    assert np.abs(contrib).sum() > 0
    treeshap = model.set_params(attribution="treeshap")
    assert treeshap.baseline_log_odds() == treeshap.expected_log_odds_


def test_path_explanations_keep_the_json_format() -> None:
    X, y, groups = _heavy_tailed(5)
    model = BoostedWarningClassifier(n_estimators=40, attribution="path").fit(X, y, groups)
    why = model.explain(X[:50], top=3)
    assert all([r["feature"] for r in row] and len(row) == 3 for row in why)
    assert model.explain_json(X[:50], top=3).to_list() == [json.dumps(row) for row in why]
    contrib, _ = model.contributions(X[:50])
    first = [row[0]["feature"] for row in why]
    assert first == [model.design_names()[j] for j in np.argmax(np.abs(contrib), axis=1)]


def test_unknown_attribution_is_refused() -> None:
    X, y, _ = _heavy_tailed(n=300)
    with pytest.raises(ValueError, match="attribution"):
        BoostedWarningClassifier(n_estimators=5, attribution="gain").fit(X, y)
    model = BoostedWarningClassifier(n_estimators=5).fit(X, y)
    with pytest.raises(ValueError, match="attribution"):
        model.set_params(attribution="saabas").contributions(X)


def test_models_saved_before_path_attribution_load_and_explain_as_they_did() -> None:
    X, y, groups = _heavy_tailed(6)
    model = BoostedWarningClassifier(n_estimators=40).fit(X, y, groups=groups)
    before = model.explain_json(X[:100]).to_list()
    model.path_tables()  # a cache, never stored
    state = model.__getstate__()
    assert "_path_tables_" not in state
    del state["attribution"]  # what an artifact of the former class holds
    old = BoostedWarningClassifier.__new__(BoostedWarningClassifier)
    old.__setstate__(state)
    assert old.get_params()["attribution"] == "treeshap"
    assert old.explain_json(X[:100]).to_list() == before
    legacy = pickle.loads(pickle.dumps(model))
    del legacy.__dict__["attribution"]  # a skops artifact of the former class, saved as it was
    artifact = sio.dumps(legacy)
    untrusted = sio.get_untrusted_types(data=artifact)
    assert set(untrusted) <= {"models._boosted.BoostedWarningClassifier", "numpy.dtype"}
    loaded = sio.loads(artifact, trusted=untrusted)
    assert loaded.explain_json(X[:100]).to_list() == before
    contrib, _ = loaded.set_params(attribution="path").contributions(X[:100])
    np.testing.assert_allclose(contrib.sum(axis=1) + loaded.baseline_log_odds(),
                               logit(loaded.predict_proba(X[:100])[:, 1]), atol=1e-6, rtol=0)

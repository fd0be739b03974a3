"""TreeSHAP by table lookup: the same values as LightGBM's ``pred_contrib``, exactly."""

from __future__ import annotations

import json
import pickle
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from hand_trees import two_trees
from scipy.special import logit

from models import BoostedWarningClassifier
from models._shape_tables import ZERO_THRESHOLD, ShapeTables

PAIR_TREES = two_trees((8, 10), (0.2, 0.8))
"""Tree 0 reads a pair: ``a <= 0.5`` (a missing ``a`` goes right) to a leaf of -1, else
``b <= 0.5`` (a missing ``b`` goes left) to 0.2 or 1.4. Tree 1 reads ``c`` twice on a path
(``c <= 0.5``, then ``c <= 0.25``: leaves -0.5 and 0.1; else 0.3), fitted without missing
values, so a missing ``c`` reads as 0."""


def _pred_contrib(booster: lgb.Booster, X: np.ndarray) -> np.ndarray:
    """LightGBM's own TreeSHAP values, the expected score in the last column."""
    return np.asarray(booster.predict(X, pred_contrib=True), dtype=float)


def test_hand_built_pair_and_single_column_trees_by_hand_and_as_lightgbm_says() -> None:
    booster = lgb.Booster(model_str=PAIR_TREES)
    tables = ShapeTables.of(booster)
    assert tables is not None
    assert [g.columns for g in tables.groups] == [(0,), (0, 1), (2,)]
    # Row (0, 1, 0). Tree 0's leaves: -1 (a left, cover 1/3), 0.2 (a right 2/3, b left 1/2),
    # 1.4 (a right, b right). a: -1 * (1 - 1/3) + 0.2 * (0 - 2/3) * (0 + 1/2) / 2
    # + 1.4 * (0 - 2/3) * (1 + 1/2) / 2 = -1.4; b: 0.2 * (0 - 1/2) * (0 + 2/3) / 2
    # + 1.4 * (1 - 1/2) * (0 + 2/3) / 2 = 0.2. Tree 1 gives c its leaf -0.5 minus the
    # expectation -1/30. Expected: 6/30 - 1/30.
    X = np.array([[0.0, 1.0, 0.0], [np.nan, 0.0, np.nan], [0.7, np.nan, 0.4],
                  [1.0, 0.5, 0.25], [0.5, 0.2, 0.9]])
    shares = tables.shares(X)
    np.testing.assert_allclose(shares[0], [-1.4, 0.2, -0.5 + 1 / 30], atol=1e-12)
    assert tables.expected == pytest.approx(5 / 30, abs=1e-12)
    reference = _pred_contrib(booster, X)
    np.testing.assert_allclose(shares, reference[:, :-1], atol=1e-12, rtol=0)
    np.testing.assert_allclose(reference[:, -1], tables.expected, atol=1e-12)


def _table(seed: int, n: int, d: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Failures from an interaction and a main effect; the first half of the columns has
    missing values when fitted (LightGBM sends NaN by each split's default), the other half
    none (it reads NaN as 0); column 3 is rounded, so that many values sit on 0."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:, 3] = np.round(X[:, 3])
    y = (X[:, 0] + X[:, 1] * X[:, 2] - 0.5 * X[:, 5] + rng.normal(0, 0.7, n) > 1.8).astype(int)
    X[:, : d // 2][rng.random((n, d // 2)) < 0.15] = np.nan
    return X, y


def _fresh(seed: int, n: int, d: int = 8) -> np.ndarray:
    """Rows to explain: missing values in every column, zeros and values within LightGBM's
    zero threshold of 0, on and beside the fitted thresholds."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * 1.5
    X[rng.random(X.shape) < 0.2] = np.nan
    X[: n // 8] = 0.0
    X[n // 8: n // 4] = rng.choice([ZERO_THRESHOLD, -ZERO_THRESHOLD, 1e-40, -1e-40],
                                   size=(n // 4 - n // 8, d))
    X[n // 4: n // 4 + 5, 3] = [-0.5, 0.5, 1.5, -1.5, 1e300]
    return X


@pytest.mark.parametrize("interactions", [1, 2, 3])
def test_tables_equal_pred_contrib_with_missing_values_and_monotone_constraints(
        interactions: int, monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _table(0, 3000)
    model = BoostedWarningClassifier(n_estimators=60, interactions=interactions,
                                     monotone={"x0": 1, "x5": -1}, random_state=3).fit(X, y)
    tables = model.shape_tables()
    assert tables is not None
    assert max(len(g.columns) for g in tables.groups) == interactions
    fresh = _fresh(1, 2000)
    on_cuts = np.column_stack([np.resize(t if t.size else [0.0], 2000)
                               for t in tables.thresholds])
    for rows in (fresh, on_cuts, X):
        monkeypatch.setattr("models._shape_tables.TABLE_CHUNK_ROWS", 333)  # a remainder too
        reference = _pred_contrib(model.booster_, rows)
        np.testing.assert_allclose(tables.shares(rows), reference[:, :-1], atol=1e-9, rtol=0)
        assert tables.expected == pytest.approx(reference[0, -1], abs=1e-9)
        contrib, values = model.contributions(rows)
        np.testing.assert_allclose(contrib, model.platt_slope_ * reference[:, :-1],
                                   atol=1e-9, rtol=0)
        np.testing.assert_allclose(contrib.sum(axis=1) + model.baseline_log_odds(),
                                   logit(model.predict_proba(rows)[:, 1]), atol=1e-9, rtol=0)
        np.testing.assert_array_equal(values, rows)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_depth_limited_trees_get_tables_equal_to_pred_contrib(depth: int) -> None:
    X, y = _table(6, 3000)
    model = BoostedWarningClassifier(n_estimators=60, max_depth=depth, num_leaves=2**depth,
                                     monotone={"x0": 1}, random_state=2).fit(X, y)
    for info in model.booster_.dump_model()["tree_info"]:
        assert _widest_path(info["tree_structure"]) <= depth
    tables = model.shape_tables()
    assert tables is not None
    fresh = _fresh(7, 2000)
    reference = _pred_contrib(model.booster_, fresh)
    np.testing.assert_allclose(tables.shares(fresh), reference[:, :-1], atol=1e-9, rtol=0)


def test_a_model_saved_before_max_depth_existed_has_no_depth_limit() -> None:
    X, y = _table(8, 1000)
    model = BoostedWarningClassifier(n_estimators=10, random_state=0).fit(X, y)
    state = model.__getstate__()
    del state["max_depth"]
    old = BoostedWarningClassifier.__new__(BoostedWarningClassifier)
    old.__setstate__(state)
    assert old.get_params()["max_depth"] == -1
    np.testing.assert_array_equal(old.predict_proba(X), model.predict_proba(X))


def test_interaction_limits_hold_on_every_path_and_monotone_directions_still_hold() -> None:
    X, y = _table(2, 3000)
    for limit in (1, 2, 3):
        model = BoostedWarningClassifier(n_estimators=60, interactions=limit,
                                         monotone={"x0": 1}, random_state=0).fit(X, y)
        for info in model.booster_.dump_model()["tree_info"]:
            assert _widest_path(info["tree_structure"]) <= limit
        sweep = np.tile(np.nanmedian(X, axis=0), (200, 1))
        sweep[:, 0] = np.linspace(-3, 3, 200)
        assert np.all(np.diff(model.predict_proba(sweep)[:, 1]) >= -1e-12)


def _widest_path(node: dict[str, Any], seen: frozenset[int] = frozenset()) -> int:
    if "split_index" not in node:
        return len(seen)
    seen = seen | {int(node["split_feature"])}
    return max(_widest_path(node["left_child"], seen), _widest_path(node["right_child"], seen))


def test_unconstrained_trees_have_no_tables_and_explain_by_pred_contrib() -> None:
    X, y = _table(4, 2000)
    model = BoostedWarningClassifier(n_estimators=40, random_state=0).fit(X, y)
    assert model.shape_tables() is None
    fresh = _fresh(5, 300)
    contrib, _ = model.contributions(fresh)
    reference = _pred_contrib(model.booster_, fresh)[:, :-1]
    np.testing.assert_array_equal(contrib, model.platt_slope_ * reference)


def test_explanations_from_tables_keep_the_ranking_and_json_of_pred_contrib() -> None:
    X, y = _table(6, 3000)
    model = BoostedWarningClassifier(n_estimators=60, interactions=2, random_state=1).fit(X, y)
    fresh = _fresh(7, 500)
    why = model.explain(fresh, top=3)
    assert model.explain_json(fresh, top=3).to_list() == [json.dumps(row) for row in why]
    reference = model.platt_slope_ * _pred_contrib(model.booster_, fresh)[:, :-1]
    order = np.argsort(-np.abs(np.round(reference, 9)), axis=1, kind="stable")[:, :3]
    names = model.design_names()
    assert [[r["feature"] for r in row] for row in why] == [[names[j] for j in o]
                                                           for o in order]


def test_pickled_model_rebuilds_its_tables_and_explains_identically() -> None:
    X, y = _table(8, 2000)
    model = BoostedWarningClassifier(n_estimators=40, interactions=2, random_state=0).fit(X, y)
    before = model.explain_json(X[:200]).to_list()
    assert "_shape_tables_" not in model.__getstate__()
    loaded = pickle.loads(pickle.dumps(model))
    assert loaded.get_params()["interactions"] == 2
    assert loaded.explain_json(X[:200]).to_list() == before
    state = model.__getstate__()
    del state["interactions"]  # an artifact of the class before ``interactions`` existed
    old = BoostedWarningClassifier.__new__(BoostedWarningClassifier)
    old.__setstate__(state)
    assert old.get_params()["interactions"] is None


@pytest.mark.parametrize("limit", [0, 4, "pairs"])
def test_unknown_interaction_limit_is_refused(limit: object) -> None:
    X, y = _table(9, 300)
    with pytest.raises(ValueError, match="interactions"):
        BoostedWarningClassifier(n_estimators=5, interactions=limit).fit(X, y)  # type: ignore[arg-type]

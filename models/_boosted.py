"""A boosted fault warning: gradient-boosted trees, Platt-calibrated, exactly explained.

Heavy-tailed counters, interactions (cold *and* a weak battery) and missing signals are what a
fleet's tables are made of; a logistic regression needs transforms and luck for them, trees
take them as they come (LightGBM learns which way a missing value should go at each split).
Three choices keep it a drop-in for :class:`models.FaultWarningClassifier`:

- **calibration on vehicle-grouped out-of-fold scores**: the trees' raw scores are mapped to
  probabilities by Platt scaling (``a * raw + b``) fitted on scores of vehicles each fold's
  booster never saw, so a probability of 0.2 means one vehicle in five, and the class
  weighting that helps the trees find rare failures does not inflate it;
- **exact explanations**: TreeSHAP splits each raw score into one additive share per column
  plus the expected score; Platt's map is affine in the raw score, so the shares times ``a``
  add up exactly to the calibrated log-odds. Isotonic calibration would have broken that sum.
  LightGBM's ``pred_contrib`` computes them by walking every tree for every row; a booster
  fitted with ``interactions=1``, ``2`` or ``3`` (no root-to-leaf path reads more than that
  many columns) gets the same values from lookup tables per set of columns
  (:class:`models._shape_tables.ShapeTables`), several times cheaper than the prediction.
  ``attribution="path"`` offers a cheaper split of any booster that adds up just as exactly
  (each tree's root-to-leaf value changes, credited to the split's column; see
  :class:`PathTables`), at the price of ranking columns differently from TreeSHAP
  (docs/benchmarks.md, "Explanations");
- **the cost-tuned threshold** is chosen on those calibrated out-of-fold probabilities, as the
  logistic classifier does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.utils.validation import check_is_fitted, validate_data

from models._explanations import TopContributions, pick_top
from models._fault_warning import FaultWarningClassifier, cost_optimal_threshold
from models._shape_tables import ShapeTables

MIN_SLOPE = 1e-3
"""Floor of the Platt slope: scores that rank nothing out of fold keep their order, no more."""

ATTRIBUTIONS = ("treeshap", "path")
"""What :meth:`BoostedWarningClassifier.contributions` may split the raw score by."""

PATH_CHUNK_ROWS = 16_384
"""Rows whose leaves are looked up and whose path shares are summed at a time: LightGBM's
``pred_leaf`` output and the share matrix of one chunk stay a few tens of MB."""


@dataclass(frozen=True)
class PathTables:
    """Path attribution ("Saabas") of a LightGBM model, one row per (tree, column) pair.

    Every node of a tree has a value (LightGBM's ``internal_value``; a leaf's is its
    ``leaf_value``). Going from a node to the child a row takes changes the tree's output by
    ``child value - node value``; that change is credited to the column the node splits on.
    A leaf's output is its root's value plus the changes along its path, so the credits of
    all trees plus ``bias`` (the sum of the roots' values) add up exactly to the raw score.
    ``delta[e, leaf]`` is the credit pair ``e`` gives column ``feature[e]`` in tree
    ``tree[e]`` for a row that lands in ``leaf`` (0 where the path does not split on it).
    """

    tree: NDArray[np.intp]
    feature: NDArray[np.intp]
    delta: NDArray[np.float64]
    bias: float

    @classmethod
    def of(cls, booster: lgb.Booster) -> PathTables:
        """The tables of every tree of ``booster`` (from its ``dump_model``)."""
        trees: list[int] = []
        features: list[int] = []
        rows: list[NDArray[np.float64]] = []
        bias = 0.0
        dump = booster.dump_model()
        widest = max([int(t["num_leaves"]) for t in dump["tree_info"]] + [1])
        for number, info in enumerate(dump["tree_info"]):
            root = info["tree_structure"]
            bias += float(root["internal_value"] if "split_index" in root else root["leaf_value"])
            credit: dict[int, NDArray[np.float64]] = {}
            stack: list[tuple[dict[str, Any], dict[int, float]]] = [(root, {})]
            while stack:
                node, path = stack.pop()
                if "split_index" not in node:
                    for column, change in path.items():
                        credit.setdefault(column, np.zeros(widest))[
                            int(node.get("leaf_index", 0))] = change
                    continue
                column, value = int(node["split_feature"]), float(node["internal_value"])
                for side in ("left_child", "right_child"):
                    child = node[side]
                    reached = float(child["internal_value"] if "split_index" in child
                                    else child["leaf_value"])
                    stack.append((child, {**path, column: path.get(column, 0.0)
                                          + (reached - value)}))
            for column in sorted(credit):
                trees.append(number)
                features.append(column)
                rows.append(credit[column])
        delta = np.vstack(rows) if rows else np.zeros((0, widest))
        return cls(np.asarray(trees, dtype=np.intp), np.asarray(features, dtype=np.intp),
                   delta, bias)

    def shares(self, booster: lgb.Booster, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """``(n_rows, n_columns)`` raw-score credits of each row (``bias`` not included)."""
        n, d = X.shape
        out = np.empty((n, d))
        for start in range(0, n, PATH_CHUNK_ROWS):
            stop = min(n, start + PATH_CHUNK_ROWS)
            leaves = np.asarray(booster.predict(X[start:stop], pred_leaf=True), dtype=np.intp)
            by_tree = np.ascontiguousarray(leaves.reshape(stop - start, -1).T)
            acc = np.zeros((d, stop - start))
            for e in range(self.tree.size):
                acc[self.feature[e]] += self.delta[e].take(by_tree[self.tree[e]])
            out[start:stop] = acc.T
        return out


class BoostedWarningClassifier(FaultWarningClassifier):
    """LightGBM fault warning with Platt calibration on grouped out-of-fold scores.

    It subclasses :class:`FaultWarningClassifier` so that everything that trains, holds out,
    promotes and scores one takes this one unchanged (``predict``, ``threshold_``,
    ``explain``, ``design_names``, the registry's type check); none of the logistic parts is
    used. Missing values need no imputation, and heavy-tailed columns no transform: a split
    only asks "above or below", which any monotone transform leaves unchanged.

    Args:
        n_estimators: boosting rounds (trees); no early stopping, the rounds are few.
        learning_rate: shrinkage of each tree's contribution.
        num_leaves: leaves per tree (15: interactions of a few signals, not memorised rows).
        max_depth: the most splits on one root-to-leaf path (-1: no limit but
            ``num_leaves``). At 3 or less no path reads more than three columns, so TreeSHAP
            comes from lookup tables (:class:`models._shape_tables.ShapeTables`), as with
            ``interactions``.
        min_child_samples: fewest training rows in a leaf.
        reg_lambda: L2 penalty on leaf values.
        colsample_bytree: share of the columns each tree may use (1.0: all of them).
        class_weight: "sqrt" (the default: a failing row weighs the square root of the
            healthy-to-failing ratio, so rare failures count without a few of them deciding
            whole leaves), "balanced" (each class weighs as much as the other in total), a
            dict of class label to weight, or None. Calibration undoes any weighting's shift
            of the probabilities; the weighting only steers which splits the trees learn.
            Fully balanced weights at 1.5 % failures ranked worse on the benchmark's table
            (ROC AUC 0.836 against 0.850, docs/benchmarks.md).
        monotone: optional ``{column name: +1 or -1}``: the warning may only rise (+1) or
            fall (-1) with that column, e.g. ``{"pad_wear_pct": 1}``. Names are those of
            :meth:`design_names` (the DataFrame's columns, or ``x0``, ``x1``, ...).
        cost_fp: cost of warning about a component that does not fail.
        cost_fn: cost of missing a component that does fail.
        cv: folds for the out-of-fold scores calibration and threshold are fitted on (fewer
            when there are fewer positive groups; in-sample when fewer than two folds are
            possible, which makes both over-confident: such a model has too little evidence).
        n_jobs: LightGBM threads (1: test and CI machines are shared).
        random_state: seed of the fold shuffling and of LightGBM.
        calibrate: fit Platt scaling (the default); False keeps the class-weighted trees'
            own ``sigmoid(raw)`` (slope 1, intercept 0), only to measure what calibration
            buys (``bench/evaluate_tabular.py``): those probabilities are inflated.
        attribution: how :meth:`contributions` splits the log-odds: "treeshap" (the
            default: LightGBM's exact Shapley values, ``pred_contrib``) or "path" (each tree's
            value changes along the row's root-to-leaf path, :class:`PathTables`: as exact a
            sum, some 40 times cheaper on 200 trees, but it credits the columns split on near
            the roots more: it picked another top column than TreeSHAP for 28 % of the
            benchmark table's rows and 19-89 % of a simulated fleet's, so it is not the
            default; docs/benchmarks.md, "Explanations").
        interactions: None (the default: a tree's paths may read any columns), 1 (LightGBM's
            ``interaction_constraints`` with every column alone: each tree reads one column,
            an additive model), 2 (every pair: each root-to-leaf path reads at most two
            columns; a tree may read more on different paths) or 3 (every triple). With a
            limit, TreeSHAP is read from lookup tables
            (:class:`models._shape_tables.ShapeTables`) instead of ``pred_contrib``: the
            same values (to rounding), at a fraction of a prediction's cost.

    Attributes:
        classes_: the two class labels; the second is the "fails" class.
        threshold_: calibrated probability at or above which ``predict`` warns.
        oof_proba_: calibrated out-of-fold probability of each training row, in input order
            (in-sample when no folds were possible; see ``oof_folds_``).
        oof_folds_: folds the out-of-fold scores came from (0: in-sample fallback).
        oof_raw_: the raw (uncalibrated) booster score behind each ``oof_proba_``.
        platt_slope_, platt_intercept_: the calibration ``logit(p) = a * raw + b``.
        expected_log_odds_: the calibrated log-odds of the average training row; with
            TreeSHAP's :meth:`contributions` it adds up exactly to each row's log-odds
            (:meth:`baseline_log_odds` gives the start of either attribution's sum).
        booster_: the fitted LightGBM booster (rebuilt from ``model_text_`` on unpickling).
        model_text_: the booster in LightGBM's text format (what is stored).
        n_features_in_: number of features seen in ``fit``.
        feature_names_in_: column names seen in ``fit`` (only when X had string names).
    """

    def __init__(
        self,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        max_depth: int = -1,
        min_child_samples: int = 20,
        reg_lambda: float = 1.0,
        colsample_bytree: float = 1.0,
        class_weight: str | dict[Any, float] | None = "sqrt",
        monotone: dict[str, int] | None = None,
        cost_fp: float = 1.0,
        cost_fn: float = 10.0,
        cv: int = 3,
        n_jobs: int = 1,
        random_state: int | None = 0,
        calibrate: bool = True,
        attribution: str = "treeshap",
        interactions: int | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.colsample_bytree = colsample_bytree
        self.class_weight = class_weight
        self.monotone = monotone
        self.cost_fp = cost_fp
        self.cost_fn = cost_fn
        self.cv = cv
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.calibrate = calibrate
        self.attribution = attribution
        self.interactions = interactions

    def fit(self, X: ArrayLike, y: ArrayLike, groups: ArrayLike | None = None
            ) -> BoostedWarningClassifier:
        """Fit the booster, calibrate on out-of-fold scores, tune ``threshold_`` on them.

        Args:
            X: features (NaN allowed).
            y: binary labels.
            groups: optional group of each row, e.g. the vehicle: no fold splits a group, so
                calibration and threshold are fitted on vehicles each booster never saw.

        Raises:
            InsufficientDataError: ``y`` holds one class only (a ValueError too).
            ValueError: ``y`` is not binary, a cost is not positive, ``monotone`` names
                a column X does not have or a direction other than -1, 0 or +1,
                ``attribution`` is not one of :data:`ATTRIBUTIONS`, or ``interactions`` is
                not None, 1, 2 or 3.
        """
        Xv, yv = validate_data(self, X, y, ensure_all_finite="allow-nan")
        target = self._binary_target(yv)
        self._attribution()
        self.__dict__.pop("_path_tables_", None)
        self.__dict__.pop("_shape_tables_", None)
        Xf = np.asarray(Xv, dtype=float)
        params = self._params(self._monotone_vector())
        weights = self._weights(target)
        self.booster_ = self._train(params, Xf, target, weights)
        self.model_text_ = self.booster_.model_to_string()
        raw, self.oof_folds_ = self._out_of_fold_raw(
            params, Xf, target, weights, None if groups is None else np.asarray(groups))
        slope, intercept = platt_scaling(raw, target) if self.calibrate else (1.0, 0.0)
        self.platt_slope_, self.platt_intercept_ = max(slope, MIN_SLOPE), intercept
        self.oof_raw_ = raw
        self.oof_proba_ = expit(self.platt_slope_ * raw + self.platt_intercept_)
        self.threshold_ = cost_optimal_threshold(target, self.oof_proba_, self.cost_fp,
                                                 self.cost_fn)
        shares = np.asarray(self.booster_.predict(Xf[:1], pred_contrib=True), dtype=float)
        bias = float(shares[0, -1])
        self.expected_log_odds_ = self.platt_slope_ * bias + self.platt_intercept_
        return self

    def _input_names(self) -> list[str]:
        if hasattr(self, "feature_names_in_"):
            return [str(n) for n in self.feature_names_in_]
        return [f"x{i}" for i in range(self.n_features_in_)]

    def _monotone_vector(self) -> list[int] | None:
        """``monotone`` as LightGBM's one direction per column, checked against X's names."""
        if not self.monotone:
            return None
        names = self._input_names()
        unknown = sorted(set(self.monotone) - set(names))
        if unknown:
            raise ValueError(f"monotone names columns X does not have: {unknown}; "
                             f"its columns are {names[:20]}")
        bad = {k: v for k, v in self.monotone.items() if v not in (-1, 0, 1)}
        if bad:
            raise ValueError(f"monotone directions must be -1, 0 or +1, got {bad}")
        return [int(self.monotone.get(n, 0)) for n in names]

    def _params(self, monotone: list[int] | None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "objective": "binary", "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves, "max_depth": self.max_depth,
            "min_data_in_leaf": self.min_child_samples,
            "lambda_l2": self.reg_lambda, "feature_fraction": self.colsample_bytree,
            "num_threads": self.n_jobs, "deterministic": True, "force_col_wise": True,
            "verbosity": -1,
        }
        if self.random_state is not None:
            params["seed"] = int(self.random_state)
        if monotone is not None:
            params["monotone_constraints"] = monotone
        constraints = self._interaction_sets()
        if constraints is not None:
            params["interaction_constraints"] = constraints
        return params

    def _interaction_sets(self) -> list[list[int]] | None:
        """LightGBM's ``interaction_constraints`` for ``interactions``: every set of that many
        columns (1: each tree reads one column; 2 or 3: each root-to-leaf path reads at most
        two or three, a tree may read more on different paths)."""
        limit = getattr(self, "interactions", None)
        if limit is None:
            return None
        if limit not in (1, 2, 3):
            raise ValueError(f"interactions must be None, 1, 2 or 3, got {limit!r}")
        d = self.n_features_in_
        return [list(c) for c in itertools.combinations(range(d), min(limit, d))]

    def _weights(self, target: NDArray[np.int_]) -> NDArray[np.float64] | None:
        """Per-row weights from ``class_weight`` (None: every row weighs 1)."""
        if self.class_weight is None:
            return None
        counts = np.bincount(target, minlength=2).astype(float)
        if self.class_weight == "balanced":
            per_class = target.size / (2.0 * counts)
        elif self.class_weight == "sqrt":
            per_class = np.array([1.0, np.sqrt(counts[0] / counts[1])])
        elif isinstance(self.class_weight, dict):
            per_class = np.asarray([float(self.class_weight.get(c, 1.0))
                                    for c in self.classes_])
        else:
            raise ValueError(f"class_weight must be 'sqrt', 'balanced', a dict or None, "
                             f"got {self.class_weight!r}")
        return np.asarray(per_class[target], dtype=float)

    def _train(self, params: dict[str, Any], X: NDArray[np.float64],
               target: NDArray[np.int_], weights: NDArray[np.float64] | None) -> lgb.Booster:
        data = lgb.Dataset(X, label=target, weight=weights, params={"verbosity": -1},
                           free_raw_data=True)
        return lgb.train(params, data, num_boost_round=self.n_estimators)

    def _out_of_fold_raw(self, params: dict[str, Any], X: NDArray[np.float64],
                         target: NDArray[np.int_], weights: NDArray[np.float64] | None,
                         groups: NDArray[Any] | None) -> tuple[NDArray[np.float64], int]:
        """Raw scores of each row from a booster that did not train on its fold (its group's).

        Falls back to the full booster's in-sample scores (0 folds) when the positive class
        has fewer than two members (or groups), so a tiny first training still yields a model.
        """
        folds = _fold_count(self.cv, target, groups)
        if folds < 2:
            return np.asarray(self.booster_.predict(X, raw_score=True), dtype=float), 0
        splitter = (StratifiedKFold if groups is None else StratifiedGroupKFold)(
            folds, shuffle=True, random_state=self.random_state)
        raw = np.empty(target.size)
        for train, test in splitter.split(X, target, groups):
            booster = self._train(params, X[train], target[train],
                                  None if weights is None else weights[train])
            raw[test] = booster.predict(X[test], raw_score=True)
        return raw, folds

    def _raw(self, X: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        check_is_fitted(self)
        Xv = np.asarray(validate_data(self, X, reset=False, ensure_all_finite="allow-nan"),
                        dtype=float)
        return np.asarray(self.booster_.predict(Xv, raw_score=True), dtype=float), Xv

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Calibrated probabilities of ``classes_`` (columns in that order)."""
        raw, _ = self._raw(X)
        p = expit(self.platt_slope_ * raw + self.platt_intercept_)
        return np.column_stack([1.0 - p, p])

    def contributions(self, X: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Each column's exact additive share of the calibrated log-odds, and its value.

        For every row ``contrib.sum() + baseline_log_odds() == logit(predict_proba)[1]``
        (to rounding): shares of the raw score, times the Platt slope. With
        ``attribution="treeshap"`` the shares are LightGBM's TreeSHAP values (``pred_contrib``)
        and the baseline is ``expected_log_odds_``; with "path" they are the value changes
        along each tree's root-to-leaf path (:class:`PathTables`) and the baseline is the
        calibrated sum of the trees' root values.

        Returns:
            ``(contributions, values)``, both ``(n_rows, n_features)``; values are the inputs
            as given (NaN where the vehicle did not report).

        Raises:
            ValueError: ``attribution`` is not one of :data:`ATTRIBUTIONS`.
        """
        check_is_fitted(self)
        method = self._attribution()
        Xv = np.asarray(validate_data(self, X, reset=False, ensure_all_finite="allow-nan"),
                        dtype=float)
        if method == "path":
            path_shares = self.path_tables().shares(self.booster_, Xv)
            path_shares *= self.platt_slope_  # in place: the matrix is ours, and 320 MB at 1M
            return path_shares, Xv
        tables = self.shape_tables()
        if tables is not None:
            table_shares = tables.shares(Xv)
            table_shares *= self.platt_slope_  # in place: a view of our own matrix
            return table_shares, Xv
        shares = np.asarray(self.booster_.predict(Xv, pred_contrib=True), dtype=float)
        return self.platt_slope_ * shares[:, :-1], Xv

    def baseline_log_odds(self) -> float:
        """The calibrated log-odds :meth:`contributions` add up from (see there)."""
        check_is_fitted(self)
        if self._attribution() == "path":
            return float(self.platt_slope_ * self.path_tables().bias + self.platt_intercept_)
        return float(self.expected_log_odds_)

    def path_tables(self) -> PathTables:
        """The fitted booster's :class:`PathTables`, built on first use and kept (not stored:
        models registered before path attribution existed get them the same way)."""
        check_is_fitted(self)
        tables = self.__dict__.get("_path_tables_")
        if tables is None:
            tables = self._path_tables_ = PathTables.of(self.booster_)
        return tables

    def shape_tables(self) -> ShapeTables | None:
        """The fitted booster's TreeSHAP lookup tables, or None when some path of it reads
        more than three columns (then ``pred_contrib`` explains). Built on first use and kept,
        never stored, so a model saved before the tables existed gets them too."""
        check_is_fitted(self)
        if "_shape_tables_" not in self.__dict__:
            self._shape_tables_ = ShapeTables.of(self.booster_)
        tables: ShapeTables | None = self.__dict__["_shape_tables_"]
        return tables

    def _attribution(self) -> str:
        method = getattr(self, "attribution", "treeshap")
        if method not in ATTRIBUTIONS:
            raise ValueError(f"attribution must be one of {ATTRIBUTIONS}, got {method!r}")
        return str(method)

    def explain_top(self, X: ArrayLike, top: int = 3) -> TopContributions:
        """The ``top`` contributions per row as arrays (column numbers, rounded figures)."""
        contrib, values = self.contributions(X)
        return pick_top(contrib, values, top)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle (and skops) the booster as its text, not as a native handle."""
        state = dict(super().__getstate__())
        state.pop("booster_", None)
        state.pop("_path_tables_", None)
        state.pop("_shape_tables_", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild the booster from its text, so predictions match the saved model exactly.

        Models saved before ``attribution`` or ``interactions`` existed explain by TreeSHAP
        and have unconstrained trees, as they did.
        """
        state = {"attribution": "treeshap", "interactions": None, "max_depth": -1, **state}
        super().__setstate__(state)
        if "model_text_" in state:
            self.booster_ = lgb.Booster(model_str=state["model_text_"])


def _fold_count(cv: int, target: NDArray[np.int_], groups: NDArray[Any] | None) -> int:
    """Folds possible: at most ``cv``, one positive member (or group) per fold at least."""
    if groups is None:
        return min(cv, int(np.bincount(target, minlength=2).min()))
    positive_groups = np.unique(groups[target == 1]).size
    return min(cv, positive_groups, np.unique(groups).size - positive_groups + 1)


def platt_scaling(score: NDArray[np.float64], target: NDArray[Any]) -> tuple[float, float]:
    """``(a, b)`` with ``P(fail) = sigmoid(a * score + b)``, fitted by Platt's method.

    Platt's targets are ``(n+ + 1) / (n+ + 2)`` for positives and ``1 / (n- + 2)`` for
    negatives rather than 1 and 0, so perfectly separated scores still get a finite slope
    (a probability of exactly 0 or 1 would make the log-odds, and the explanation, infinite).
    Newton's method with a backtracking line search on that convex log-loss.
    """
    s = np.asarray(score, dtype=float)
    y = np.asarray(target).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    theta = np.array([0.0, np.log((n_pos + 1.0) / (n_neg + 1.0))])
    design = np.column_stack([s, np.ones_like(s)])
    for _ in range(100):
        p = expit(design @ theta)
        grad = design.T @ (p - t)
        hess = (design * (p * (1.0 - p))[:, None]).T @ design + 1e-12 * np.eye(2)
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        theta, moved = _backtrack(design, t, theta, step, grad)
        if moved < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def _log_loss(design: NDArray[np.float64], t: NDArray[np.float64],
              theta: NDArray[np.float64]) -> float:
    z = design @ theta
    return float(np.sum(t * np.logaddexp(0.0, -z) + (1.0 - t) * np.logaddexp(0.0, z)))


def _backtrack(design: NDArray[np.float64], t: NDArray[np.float64], theta: NDArray[np.float64],
               step: NDArray[np.float64], grad: NDArray[np.float64]
               ) -> tuple[NDArray[np.float64], float]:
    """The Newton step, halved until the loss drops enough (Armijo); and how far it moved."""
    before, scale = _log_loss(design, t, theta), 1.0
    while scale > 1e-10:
        candidate = theta - scale * step
        if _log_loss(design, t, candidate) <= before - 1e-4 * scale * float(grad @ step):
            return candidate, float(np.abs(scale * step).max())
        scale /= 2.0
    return theta, 0.0


"""A cost-aware binary classifier: "will this component fail within the horizon?".

A missed failure (a stranded customer, a tow) costs far more than an unnecessary inspection, so
the decision threshold is not 0.5: it is the one that minimises
``cost_fp * false_positives + cost_fn * false_negatives`` on out-of-fold predictions of the
training data. The model itself is deliberately simple (impute, scale, logistic regression):
it is calibrated enough to rank vehicles and explainable enough for a service advisor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from models._explanations import TopContributions, as_dicts, as_json, pick_top
from models._transforms import SignedLog1p
from models.errors import InsufficientDataError


class FaultWarningClassifier(ClassifierMixin, BaseEstimator):
    """Logistic fault warning with a decision threshold chosen by misclassification cost.

    Missing values (a signal the vehicle did not report that day) are imputed with the
    training median, so rows with NaN can be scored. With ``robust``, heavy-tailed columns
    (counters, histogram bins) pass through a signed ``log1p`` first
    (:class:`models.SignedLog1p`), chosen on the training data by their skewness.

    Args:
        C: inverse regularisation strength of the logistic regression.
        class_weight: passed to the logistic regression; "balanced" because failures are rare.
        cost_fp: cost of warning about a component that does not fail.
        cost_fn: cost of missing a component that does fail.
        cv: folds for the out-of-fold predictions the threshold is tuned on (fewer when a
            class has fewer members; in-sample when a class has a single member).
        random_state: seed for the fold shuffling.
        robust: signed ``log1p`` of the heavy-tailed columns before imputing; explanations
            still report each column's value as given.

    Attributes:
        classes_: the two class labels; the second is the "fails" class.
        threshold_: probability of the second class at or above which ``predict`` warns.
        pipeline_: the fitted imputer, scaler and logistic regression.
        n_features_in_: number of features seen in ``fit``.
        feature_names_in_: column names seen in ``fit`` (only when X had string names).
    """

    def __init__(
        self,
        C: float = 1.0,
        class_weight: str | dict[Any, float] | None = "balanced",
        cost_fp: float = 1.0,
        cost_fn: float = 10.0,
        cv: int = 3,
        random_state: int | None = 0,
        robust: bool = False,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.cost_fp = cost_fp
        self.cost_fn = cost_fn
        self.cv = cv
        self.random_state = random_state
        self.robust = robust

    def __sklearn_tags__(self) -> Any:
        """Declare NaN support and binary-only targets to the estimator checks."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags

    def fit(self, X: ArrayLike, y: ArrayLike, groups: ArrayLike | None = None
            ) -> FaultWarningClassifier:
        """Fit the pipeline, then tune ``threshold_`` on out-of-fold probabilities.

        Args:
            X: features (NaN allowed).
            y: binary labels.
            groups: optional group of each row, e.g. the vehicle. The out-of-fold folds then
                never split a group, so the threshold is tuned on vehicles each fold did not
                see; without it, a vehicle's neighbouring days leak into the folds and the
                threshold is tuned on over-confident probabilities.

        Raises:
            InsufficientDataError: ``y`` holds one class only (a ValueError too).
            ValueError: ``y`` is not binary, or the costs are not positive.
        """
        Xv, yv = validate_data(self, X, y, ensure_all_finite="allow-nan")
        target = self._binary_target(yv)
        self.pipeline_ = self._new_pipeline().fit(Xv, target)
        oof = self._out_of_fold(Xv, target, None if groups is None else np.asarray(groups))
        self.threshold_ = cost_optimal_threshold(target, oof, self.cost_fp, self.cost_fn)
        return self

    def _binary_target(self, yv: NDArray[Any]) -> NDArray[np.int_]:
        """Check y and set ``classes_``; 1 where the row is of the second ("fails") class."""
        check_classification_targets(yv)
        kind = type_of_target(yv, input_name="y", raise_unknown=True)
        if kind != "binary":
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {kind}.")
        self.classes_ = np.unique(yv)
        if self.classes_.size < 2:
            raise InsufficientDataError(
                "need both classes to fit: y holds only one class "
                f"({self.classes_.tolist()}); gather failing and healthy examples")
        if self.cost_fp <= 0 or self.cost_fn <= 0:
            raise ValueError("cost_fp and cost_fn must be positive")
        return np.asarray(yv == self.classes_[1], dtype=int)

    def _new_pipeline(self) -> Pipeline:
        return make_pipeline(
            *([SignedLog1p()] if self.robust else []),
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=1000),
        )

    def _out_of_fold(self, X: NDArray[Any], target: NDArray[Any],
                     groups: NDArray[Any] | None) -> NDArray[np.float64]:
        if groups is None:
            folds = min(self.cv, int(np.bincount(target).min()))
        else:
            positive_groups = np.unique(groups[target == 1]).size
            folds = min(self.cv, positive_groups, np.unique(groups).size - positive_groups + 1)
        if folds < 2:
            return np.asarray(self.pipeline_.predict_proba(X)[:, 1], dtype=float)
        splitter = (StratifiedKFold if groups is None else StratifiedGroupKFold)(
            folds, shuffle=True, random_state=self.random_state)
        proba = cross_val_predict(self._new_pipeline(), X, target, cv=splitter, groups=groups,
                                  method="predict_proba")
        return np.asarray(proba[:, 1], dtype=float)

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Probabilities of ``classes_`` (columns in that order)."""
        check_is_fitted(self)
        Xv = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        return np.asarray(self.pipeline_.predict_proba(Xv), dtype=float)

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        """The second class where its probability reaches ``threshold_``, else the first."""
        warn = self.predict_proba(X)[:, 1] >= self.threshold_
        return np.asarray(self.classes_[warn.astype(int)])

    def design_names(self) -> list[str]:
        """Names of the columns the regression sees (input names, then derived ones)."""
        check_is_fitted(self)
        if hasattr(self, "feature_names_in_"):
            return [str(n) for n in self.feature_names_in_]
        return [f"x{i}" for i in range(self.n_features_in_)]

    def contributions(self, X: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Each design column's additive share of the log-odds, and the value it came from.

        For a logistic regression on scaled, imputed inputs the log-odds are exactly
        ``intercept + sum(coef_j * z_j)``, so ``coef_j * z_j`` is column j's contribution
        (positive: pushes towards a warning), measured against the training mean.

        Returns:
            ``(contributions, values)``, both ``(n_rows, n_design_columns)``; values are the
            inputs before imputation and before any robust transform (NaN where the vehicle
            did not report).
        """
        check_is_fitted(self)
        Xv = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        head = [step for _, step in self.pipeline_.steps[:-3]]
        raw = np.asarray(Xv, dtype=float)
        for step in head:
            if not isinstance(step, SignedLog1p):
                raw = np.asarray(step.transform(raw), dtype=float)
        design = raw
        for step in head:
            if isinstance(step, SignedLog1p):
                design = step.transform(design)
        # Impute into a fresh array, then scale and weigh it in place, as StandardScaler
        # does on its own copy: the same operations and figures as the pipeline's, without
        # its validation passes and two matrix-sized allocations per call.
        z = _imputed(self.pipeline_[-3], np.asarray(design, dtype=float))
        scaler = self.pipeline_[-2]
        z -= scaler.mean_
        z /= scaler.scale_
        z *= np.asarray(self.pipeline_[-1].coef_[0], dtype=float)
        return z, raw

    def explain_top(self, X: ArrayLike, top: int = 3) -> TopContributions:
        """The ``top`` contributions per row as arrays (column numbers, rounded figures)."""
        contrib, raw = self.contributions(X)
        return pick_top(contrib, raw, top, python_rounding=True)

    def explain(self, X: ArrayLike, top: int = 3) -> list[list[dict[str, Any]]]:
        """The ``top`` contributions per row, largest magnitude first, JSON-ready."""
        return as_dicts(self.explain_top(X, top), self.design_names())

    def explain_json(self, X: ArrayLike, top: int = 3) -> pl.Series:
        """``json.dumps`` of each row's :meth:`explain`, built without a dict per row."""
        return as_json(self.explain_top(X, top), self.design_names())


def _imputed(imputer: Any, design: NDArray[np.float64]) -> NDArray[np.float64]:
    """``imputer.transform(design)`` as a new array; a NaN-filling ``SimpleImputer`` that keeps
    every column (ours) is applied directly: each NaN becomes its column's statistic."""
    if (isinstance(imputer, SimpleImputer) and not imputer.add_indicator
            and imputer.keep_empty_features and isinstance(imputer.missing_values, float)
            and np.isnan(imputer.missing_values)
            and np.shape(imputer.statistics_) == (design.shape[1],)):
        return np.where(np.isnan(design), np.asarray(imputer.statistics_, dtype=float), design)
    return np.array(imputer.transform(design), dtype=float, copy=None)


def cost_optimal_threshold(
    y: NDArray[Any], proba: NDArray[np.float64], cost_fp: float, cost_fn: float
) -> float:
    """The probability cut (warn when ``proba >= cut``) with the lowest total cost on (y, proba).

    Every cut between two neighbouring distinct probabilities classifies alike, so the
    candidates are the distinct probabilities; the cut returned is the midpoint below the best
    one, which leaves a margin on both sides.
    """
    y = np.asarray(y).astype(bool)
    cand = np.unique(np.concatenate([proba, [0.0, 1.0 + 1e-9]]))
    neg, pos = np.sort(proba[~y]), np.sort(proba[y])
    false_pos = neg.size - np.searchsorted(neg, cand, side="left")
    false_neg = np.searchsorted(pos, cand, side="left")
    cost = cost_fp * false_pos + cost_fn * false_neg
    best = int(np.argmin(cost))
    if best == 0:
        return 0.0
    return float(min(1.0, (cand[best] + cand[best - 1]) / 2.0))

"""Cross-validated cost of a fault warning on any labelled table, against baselines.

Each fold's model tunes its own threshold on its own training part (inner out-of-fold
predictions) and then warns on the fold it never saw, so the confusion counts and the cost
are what a fleet would have experienced, not what the training data flatters. Every
candidate sees the *same* folds, so their costs compare like for like:

- ``all_negative``: never warn; its cost is every failure missed (the price of doing nothing);
- ``plain_gbm``: what one tries first, scikit-learn's ``HistGradientBoostingClassifier`` with
  its defaults and ``class_weight="balanced"``, warning at its own decision (probability
  0.5): no cost-tuned threshold, no calibration, no grouped inner folds;
- the estimator under test (``boosted`` or ``logistic``, see :data:`ESTIMATORS`).

The spread of the fold thresholds says how far the cost-tuned threshold can be trusted: a
threshold that moves a lot between folds moves as much when the model is retrained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from threadpoolctl import threadpool_limits

from models._boosted import BoostedWarningClassifier
from models._fault_warning import FaultWarningClassifier
from models.errors import InsufficientDataError
from models.evaluate import calibration, classification_report

ESTIMATORS: Final = ("boosted", "logistic")
"""Estimators ``cross_validate_cost`` can evaluate: LightGBM with Platt calibration
(:class:`models.BoostedWarningClassifier`), or the logistic fault warning
(:class:`models.FaultWarningClassifier`, with the robust transform unless told otherwise)."""

Scorer = Callable[[NDArray[np.float64]], NDArray[np.float64]]
Candidate = Callable[[NDArray[np.float64], NDArray[Any], NDArray[Any] | None],
                     tuple[Scorer, float]]
"""Fits on one fold's training rows (X, 0/1 y, groups) and returns the fitted model's
probability of a failure for new rows, and the probability at or above which it warns."""

Split = tuple[NDArray[np.intp], NDArray[np.intp]]


@dataclass(frozen=True, slots=True)
class FoldedCost:
    """One candidate's outcome over the shared folds.

    Attributes:
        report: pooled out-of-fold warning metrics (tp, fp, tn, fn, precision, recall,
            roc_auc, brier, cost) as :func:`models.evaluate.classification_report`, threshold
            None (each fold had its own).
        fold_thresholds: the threshold each fold's model chose.
        fold_costs: each fold's cost on its held-out rows.
        calibration_ece: expected calibration error of the out-of-fold probabilities.
    """

    report: dict[str, Any]
    fold_thresholds: list[float]
    fold_costs: list[float]
    calibration_ece: float

    @property
    def threshold_spread(self) -> dict[str, float]:
        """:func:`threshold_spread` of the fold thresholds."""
        return threshold_spread(self.fold_thresholds)


@dataclass(frozen=True, slots=True)
class CrossValidation:
    """The outcome of :func:`cross_validate_cost`.

    Attributes:
        report: pooled out-of-fold warning metrics (tp, fp, tn, fn, precision, recall,
            roc_auc, brier, cost), as :func:`models.evaluate.classification_report`.
        fold_thresholds: the threshold each fold's model chose.
        threshold: the threshold of the model refitted on all rows (what it would deploy).
        calibration_ece: expected calibration error of the out-of-fold probabilities.
        folds: folds actually used.
        estimator: which of :data:`ESTIMATORS` was evaluated.
        threshold_spread: min, max, interquartile range and standard deviation of the fold
            thresholds.
        fold_costs: each fold's cost on its held-out rows.
        baselines: ``all_negative`` and ``plain_gbm`` (see the module) under the same folds,
            each ``{"cost", "tp", "fp", "tn", "fn", "precision", "recall", "roc_auc",
            "brier"}`` (empty when not asked for).
    """

    report: dict[str, Any]
    fold_thresholds: list[float]
    threshold: float
    calibration_ece: float
    folds: int
    estimator: str = "logistic"
    threshold_spread: dict[str, float] = field(default_factory=dict)
    fold_costs: list[float] = field(default_factory=list)
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)


def make_estimator(name: str, *, cost_fp: float, cost_fn: float, seed: int,
                   robust: bool = True) -> FaultWarningClassifier:
    """A fresh estimator of :data:`ESTIMATORS` (``robust`` applies to the logistic one).

    Raises:
        ValueError: ``name`` is not one of :data:`ESTIMATORS`.
    """
    if name == "boosted":
        return BoostedWarningClassifier(cost_fp=cost_fp, cost_fn=cost_fn, random_state=seed)
    if name == "logistic":
        return FaultWarningClassifier(cost_fp=cost_fp, cost_fn=cost_fn, random_state=seed,
                                      robust=robust)
    raise ValueError(f"unknown estimator {name!r}: use one of {', '.join(ESTIMATORS)}")


def fold_splits(y: NDArray[Any], groups: NDArray[Any] | None, *, folds: int, seed: int
                ) -> list[Split]:
    """Stratified (and, with ``groups``, group-keeping) folds every candidate shares.

    Raises:
        InsufficientDataError: one class only, or fewer positives (positive groups) than
            two folds need.
        ValueError: ``folds`` below 2.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    classes = np.unique(y)
    if classes.size != 2:
        raise InsufficientDataError(
            f"the label must have exactly two values, found {classes.tolist()[:5]}")
    smallest = int(min((y == c).sum() if groups is None else np.unique(groups[y == c]).size
                       for c in classes))
    k = min(folds, smallest)
    if k < 2:
        raise InsufficientDataError(
            f"the rarer class has {smallest} row(s) or groups; cross-validation needs at least 2")
    splitter = (StratifiedKFold if groups is None else StratifiedGroupKFold)(
        k, shuffle=True, random_state=seed)
    return [(train, test) for train, test in splitter.split(np.zeros(y.size), y, groups)]


def warning_candidate(factory: Callable[[], FaultWarningClassifier]) -> Candidate:
    """A fault warning (cost-tuned on its own inner, grouped folds) as a :data:`Candidate`."""
    def fit(X: NDArray[np.float64], y: NDArray[Any], groups: NDArray[Any] | None
            ) -> tuple[Scorer, float]:
        model = factory().fit(X, y, groups=groups)
        return (lambda rows: model.predict_proba(rows)[:, 1]), float(model.threshold_)
    return fit


def plain_gbm_candidate(seed: int, n_jobs: int = 1) -> Candidate:
    """scikit-learn's gradient boosting as one tries it first: defaults, balanced, at 0.5.

    Its OpenMP threads are held to ``n_jobs``: on a shared, loaded machine a thread per core
    spin-waiting for the others made it five times slower than one thread.
    """
    def fit(X: NDArray[np.float64], y: NDArray[Any], groups: NDArray[Any] | None
            ) -> tuple[Scorer, float]:
        model = HistGradientBoostingClassifier(class_weight="balanced", random_state=seed)
        with threadpool_limits(limits=n_jobs, user_api="openmp"):
            model.fit(X, y)

        def score(rows: NDArray[np.float64]) -> NDArray[np.float64]:
            with threadpool_limits(limits=n_jobs, user_api="openmp"):
                return np.asarray(model.predict_proba(rows)[:, 1], dtype=float)
        return score, 0.5
    return fit


def all_negative_candidate() -> Candidate:
    """Never warn: every failure is missed, no false alarm is raised."""
    def fit(X: NDArray[np.float64], y: NDArray[Any], groups: NDArray[Any] | None
            ) -> tuple[Scorer, float]:
        return (lambda rows: np.zeros(rows.shape[0])), np.inf
    return fit


def folded_cost(candidate: Candidate, X: NDArray[np.float64], y: NDArray[Any],
                splits: list[Split], *, cost_fp: float, cost_fn: float,
                groups: NDArray[Any] | None = None) -> FoldedCost:
    """Fit ``candidate`` on each fold's training part, warn on its held-out part, pool."""
    proba = np.zeros(y.size)
    warned = np.zeros(y.size, dtype=bool)
    thresholds, costs = [], []
    for train, test in splits:
        score, cut = candidate(X[train], y[train], None if groups is None else groups[train])
        proba[test] = score(X[test])
        warned[test] = proba[test] >= cut
        thresholds.append(float(cut))
        fp = int(np.sum(warned[test] & (y[test] == 0)))
        fn = int(np.sum(~warned[test] & (y[test] == 1)))
        costs.append(float(cost_fp * fp + cost_fn * fn))
    positive = y == 1
    report = classification_report(positive, warned.astype(float), 0.5, cost_fp, cost_fn)
    scored = classification_report(positive, proba, 0.5, cost_fp, cost_fn)
    report.update(roc_auc=scored["roc_auc"], brier=scored["brier"], threshold=None)
    ece = float(calibration(positive, proba)["ece"])
    return FoldedCost(report, thresholds, costs, ece)


def threshold_spread(thresholds: list[float]) -> dict[str, float]:
    """``min``, ``max``, ``iqr`` (75th minus 25th percentile) and ``std`` of thresholds."""
    t = np.asarray(thresholds, dtype=float)
    q1, q3 = np.percentile(t, [25, 75])
    return {"min": float(t.min()), "max": float(t.max()), "iqr": float(q3 - q1),
            "std": float(t.std())}


def _baseline_summary(folded: FoldedCost) -> dict[str, Any]:
    keys = ("cost", "tp", "fp", "tn", "fn", "precision", "recall", "roc_auc", "brier")
    return {k: folded.report[k] for k in keys}


def cross_validate_cost(X: ArrayLike, y: ArrayLike, *, cost_fp: float, cost_fn: float,
                        folds: int = 5, seed: int = 0, groups: ArrayLike | None = None,
                        estimator: str = "boosted", robust: bool = True,
                        baselines: bool = True) -> CrossValidation:
    """Stratified k-fold cost of ``estimator`` on (X, y), and of the baselines, same folds.

    With ``groups`` (e.g. the vehicle of each row) no group is split across folds, neither
    the outer ones nor those the threshold is tuned on: rows of one vehicle on neighbouring
    days are near copies, and a row-wise split would flatter the model.

    Raises:
        InsufficientDataError: one class only, or fewer positives than two folds need.
        ValueError: an unknown estimator or fewer than two folds.
    """
    def factory() -> FaultWarningClassifier:
        return make_estimator(estimator, cost_fp=cost_fp, cost_fn=cost_fn, seed=seed,
                              robust=robust)

    Xa = np.asarray(X, dtype=float)
    ya = np.asarray(y)
    ga = None if groups is None else np.asarray(groups)
    factory()  # an unknown estimator fails before any fitting
    splits = fold_splits(ya, ga, folds=folds, seed=seed)
    target = (ya == np.unique(ya)[1]).astype(int)
    ours = folded_cost(warning_candidate(factory), Xa, target, splits, cost_fp=cost_fp,
                       cost_fn=cost_fn, groups=ga)
    others: dict[str, dict[str, Any]] = {}
    if baselines:
        for name, candidate in (("all_negative", all_negative_candidate()),
                                ("plain_gbm", plain_gbm_candidate(seed))):
            others[name] = _baseline_summary(folded_cost(
                candidate, Xa, target, splits, cost_fp=cost_fp, cost_fn=cost_fn, groups=ga))
    final = factory().fit(Xa, ya, groups=ga)
    return CrossValidation(ours.report, ours.fold_thresholds, float(final.threshold_),
                           ours.calibration_ece, len(splits), estimator,
                           ours.threshold_spread, ours.fold_costs, others)

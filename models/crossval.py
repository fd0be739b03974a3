"""Cross-validated cost of the fault-warning classifier on any labelled table.

Each fold's model tunes its own threshold on its own training part (inner out-of-fold
predictions) and then warns on the fold it never saw, so the confusion counts and the cost
are what a fleet would have experienced, not what the training data flatters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from models._fault_warning import FaultWarningClassifier
from models.errors import InsufficientDataError
from models.evaluate import calibration, classification_report


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
    """

    report: dict[str, Any]
    fold_thresholds: list[float]
    threshold: float
    calibration_ece: float
    folds: int


def cross_validate_cost(X: ArrayLike, y: ArrayLike, *, cost_fp: float, cost_fn: float,
                        folds: int = 5, seed: int = 0, groups: ArrayLike | None = None
                        ) -> CrossValidation:
    """Stratified k-fold cost of :class:`FaultWarningClassifier` on (X, y).

    With ``groups`` (e.g. the vehicle of each row) no group is split across folds, neither
    the outer ones nor those the threshold is tuned on: rows of one vehicle on neighbouring
    days are near copies, and a row-wise split would flatter the model.

    Raises:
        InsufficientDataError: one class only, or fewer positives than two folds need.
    """
    Xa = np.asarray(X, dtype=float)
    ya = np.asarray(y)
    classes = np.unique(ya)
    if classes.size != 2:
        raise InsufficientDataError(
            f"the label must have exactly two values, found {classes.tolist()[:5]}")
    ga = None if groups is None else np.asarray(groups)
    smallest = int(min((ya == c).sum() if ga is None else np.unique(ga[ya == c]).size
                       for c in classes))
    k = min(folds, smallest)
    if k < 2:
        raise InsufficientDataError(
            f"the rarer class has {smallest} row(s) or groups; cross-validation needs at least 2")
    proba = np.empty(ya.size)
    warned = np.zeros(ya.size, dtype=bool)
    thresholds = []
    splitter = (StratifiedKFold if ga is None else StratifiedGroupKFold)(
        k, shuffle=True, random_state=seed)
    for train, test in splitter.split(Xa, ya, ga):
        model = FaultWarningClassifier(cost_fp=cost_fp, cost_fn=cost_fn, random_state=seed)
        model.fit(Xa[train], ya[train], groups=None if ga is None else ga[train])
        proba[test] = model.predict_proba(Xa[test])[:, 1]
        warned[test] = proba[test] >= model.threshold_
        thresholds.append(float(model.threshold_))
    positive = ya == classes[1]
    report = classification_report(positive, warned.astype(float), 0.5, cost_fp, cost_fn)
    scored = classification_report(positive, proba, 0.5, cost_fp, cost_fn)
    report.update(roc_auc=scored["roc_auc"], brier=scored["brier"], threshold=None)
    final = FaultWarningClassifier(cost_fp=cost_fp, cost_fn=cost_fn, random_state=seed)
    final.fit(Xa, ya, groups=ga)
    return CrossValidation(report, thresholds, float(final.threshold_),
                           float(calibration(positive, proba)["ece"]), k)

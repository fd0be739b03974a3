"""Robust input transforms: tame heavy-tailed columns before a linear model sees them.

Fleet tables are full of counters and histogram bins (hours in a temperature band, starts,
fault counts) whose values span orders of magnitude: most vehicles read a few hundred, some a
few million. A logistic regression on standardised raw counters spends its coefficients on
those few extreme rows. A signed ``log1p`` turns a multiplicative spread into an additive one,
so a vehicle that reads ten times more moves the log-odds by a step, not off the scale.

Which columns to transform is decided on the training data alone, by a skew rule, so the same
rule applied to a new table picks its own columns and a scored row is transformed exactly as
the training rows were. Tree models need none of this: a split only asks "above or below",
which any monotone transform leaves unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

_MIN_VALUES = 3
"""Fewest observed values in a column for its skewness to mean anything."""


def signed_log1p(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """``sign(x) * log1p(|x|)``: monotone, zero at zero, defined for negatives, NaN stays NaN."""
    return np.sign(values) * np.log1p(np.abs(values))


def nan_skewness(X: NDArray[np.float64]) -> NDArray[np.float64]:
    """Sample skewness of each column over its observed (non-NaN) values.

    Columns with fewer than three observed values or no spread get 0: nothing to correct.
    """
    observed = ~np.isnan(X)
    count = observed.sum(axis=0)
    safe = np.where(observed, X, 0.0)
    mean = safe.sum(axis=0) / np.maximum(count, 1)
    centred = np.where(observed, X - mean, 0.0)
    var = (centred**2).sum(axis=0) / np.maximum(count, 1)
    third = (centred**3).sum(axis=0) / np.maximum(count, 1)
    usable = (count >= _MIN_VALUES) & (var > 0)
    skew = np.zeros(X.shape[1])
    skew[usable] = third[usable] / var[usable] ** 1.5
    return skew


class SignedLog1p(TransformerMixin, BaseEstimator):
    """Signed ``log1p`` of the columns whose training values are heavy-tailed.

    A column is transformed when the skewness of its observed training values exceeds
    ``skew_limit`` in magnitude *and* the transform reduces it (a column of small fractions
    barely changes under ``log1p`` and is left alone). Missing values stay missing, so an
    imputer after this step fills them on the transformed scale.

    Args:
        skew_limit: skewness magnitude above which a column counts as heavy-tailed (1 is a
            common rule of thumb; a normal column has 0, an exponential one 2).

    Attributes:
        columns_: boolean mask, one entry per input column: transformed or not.
        skewness_: skewness of each column's training values before the transform.
        n_features_in_: number of input columns seen in ``fit``.
        feature_names_in_: column names seen in ``fit`` (only when X had string names).
    """

    def __init__(self, skew_limit: float = 1.0) -> None:
        self.skew_limit = skew_limit

    def __sklearn_tags__(self) -> Any:
        """Declare NaN support to the estimator checks (NaN passes through untouched)."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> SignedLog1p:
        """Choose the heavy-tailed columns of X (y is ignored; it is there for pipelines).

        Raises:
            ValueError: ``skew_limit`` is negative, or X is not a numeric 2-D table.
        """
        if self.skew_limit < 0:
            raise ValueError(f"skew_limit must be at least 0, got {self.skew_limit}")
        Xv = np.asarray(validate_data(self, X, ensure_all_finite="allow-nan"), dtype=float)
        before = nan_skewness(Xv)
        after = nan_skewness(signed_log1p(Xv))
        self.skewness_ = before
        self.columns_ = (np.abs(before) > self.skew_limit) & (np.abs(after) < np.abs(before))
        return self

    def transform(self, X: ArrayLike) -> NDArray[np.float64]:
        """X with the chosen columns replaced by their signed ``log1p`` (a new array)."""
        check_is_fitted(self)
        Xv = np.array(validate_data(self, X, reset=False, ensure_all_finite="allow-nan"),
                      dtype=float, copy=True)
        Xv[:, self.columns_] = signed_log1p(Xv[:, self.columns_])
        return Xv

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> NDArray[Any]:
        """The input names unchanged: a transformed column keeps its name (and meaning)."""
        check_is_fitted(self)
        if input_features is not None:
            return np.asarray(input_features, dtype=object)
        if hasattr(self, "feature_names_in_"):
            return np.asarray(self.feature_names_in_, dtype=object)
        return np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object)

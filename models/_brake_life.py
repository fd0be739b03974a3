"""Brake-pad remaining life per wheel: km and days until the pad reaches its wear limit.

Pads wear with braking energy, and over a vehicle's normal use braking energy grows about in
proportion to distance, so wear is close to linear in odometer km for one driver and one
wheel. The forecaster fits that line (with the standard error of its slope for the interval),
then turns the km left into days with the vehicle's own distance per day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from models.errors import InsufficientDataError


@dataclass(frozen=True, slots=True)
class PadLife:
    """Distance and time left for one pad, with the interval on the distance.

    Attributes:
        wear_now: fitted wear at the last odometer reading (% of the usable pad).
        km_left, km_low, km_high: km to the wear limit (point, and the interval's ends;
            ``inf`` when the pad shows no wear trend).
        days_left: ``km_left`` at the vehicle's distance per day (``inf`` when parked).
    """

    wear_now: float
    km_left: float
    km_low: float
    km_high: float
    days_left: float


class BrakePadLifeForecaster(RegressorMixin, BaseEstimator):
    """Pad wear as a linear function of usage columns; remaining life along the first one.

    Args:
        wear_limit: wear (same unit as y, e.g. % of usable pad) at which the pad is replaced.
        coverage: two-sided coverage of the interval on the wear rate (0.8: 10 % each side).

    Attributes:
        coef_: wear per unit of each usage column (column 0: wear per km).
        intercept_: wear at zero usage.
        coef_se_: standard errors of ``coef_`` (ordinary least squares).
        n_features_in_: number of usage columns seen in ``fit``.
    """

    def __init__(self, wear_limit: float = 100.0, coverage: float = 0.8) -> None:
        self.wear_limit = wear_limit
        self.coverage = coverage

    def fit(self, X: ArrayLike, y: ArrayLike) -> BrakePadLifeForecaster:
        """Least-squares wear line and its coefficient standard errors.

        Raises:
            ValueError: ``coverage`` outside (0, 1).
        """
        if not 0.0 < self.coverage < 1.0:
            raise ValueError(f"coverage must be in (0, 1), got {self.coverage}")
        Xv, yv = validate_data(self, X, y, y_numeric=True)
        design = np.column_stack([np.ones(len(Xv)), Xv])
        beta, *_ = np.linalg.lstsq(design, yv, rcond=None)
        resid = yv - design @ beta
        dof = max(len(yv) - design.shape[1], 1)
        cov = np.linalg.pinv(design.T @ design) * float(resid @ resid) / dof
        self.intercept_ = float(beta[0])
        self.coef_ = np.asarray(beta[1:], dtype=float)
        self.coef_se_ = np.sqrt(np.clip(np.diag(cov)[1:], 0.0, None))
        self.dof_ = dof
        return self

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Fitted wear at the given usage."""
        check_is_fitted(self)
        Xv = validate_data(self, X, reset=False)
        return np.asarray(Xv @ self.coef_ + self.intercept_, dtype=float)

    def remaining(self, odometer_km: float, km_per_day: float) -> PadLife:
        """Km and days to ``wear_limit`` from ``odometer_km`` (a model fitted on km alone).

        Raises:
            ValueError: the model was fitted on more than one usage column.
        """
        check_is_fitted(self)
        if self.n_features_in_ != 1:
            raise ValueError("remaining() needs a model fitted on odometer km alone")
        wear_now = float(self.intercept_ + self.coef_[0] * odometer_km)
        left = max(self.wear_limit - wear_now, 0.0)
        z = float(stats.t.ppf(0.5 + self.coverage / 2.0, self.dof_))
        rate, se = float(self.coef_[0]), float(self.coef_se_[0])

        def km_at(r: float) -> float:
            return left / r if r > 1e-9 else float("inf")

        km_left = km_at(rate)
        days = km_left / km_per_day if km_per_day > 0 else float("inf")
        return PadLife(wear_now, km_left, km_at(rate + z * se), km_at(rate - z * se), days)


def pad_life(odometer_km: ArrayLike, wear: ArrayLike, days: ArrayLike,
             wear_limit: float = 100.0) -> PadLife:
    """One wheel's remaining life from its history (odometer, wear and day number per row).

    Raises:
        InsufficientDataError: fewer than three readings or no distance driven.
    """
    km = np.asarray(odometer_km, dtype=float)
    d = np.asarray(days, dtype=float)
    ok = ~(np.isnan(km) | np.isnan(np.asarray(wear, dtype=float)))
    if ok.sum() < 3 or np.ptp(km[ok]) <= 0:
        raise InsufficientDataError("a pad forecast needs three readings over some distance")
    model = BrakePadLifeForecaster(wear_limit=wear_limit).fit(km[ok, None],
                                                               np.asarray(wear)[ok])
    per_day = np.ptp(km[ok]) / max(np.ptp(d[ok]), 1.0)
    return model.remaining(float(km[ok].max()), float(per_day))

"""When will a battery's capacity (or state of health) fall to a threshold?

A cell's own history says how fast it fades now; other cells, run to the end, say how that
naive straight-line extrapolation errs (fade slows down or speeds up, capacity regenerates
after rests). So the forecaster is a regressor from *snapshot features* of a history cut at
"now" (:func:`snapshot_features`) to the remaining life (cycles, days or km: whatever unit
the history's axis has), trained on every cut point of histories that did cross the
threshold, with an interval from the relative errors it made on them.

The axis can be cycles (NASA cells), days or km: nothing here assumes which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from models.errors import InsufficientDataError

FEATURES = ("naive_remaining", "fade_fraction")
"""What :func:`snapshot_features` returns, in column order."""
History = tuple[ArrayLike, ArrayLike]
"""A history: its axis (cycle, day or km; increasing) and the capacity or SoH on it."""


@dataclass(frozen=True, slots=True)
class LifeForecast:
    """Where a history's capacity is expected to reach the threshold.

    Attributes:
        now: the last axis value seen (cycle, day or km).
        remaining: predicted axis units from ``now`` to the crossing.
        crossing: ``now + remaining``; ``low``/``high`` bound it with the model's coverage.
    """

    now: float
    remaining: float
    crossing: float
    low: float
    high: float


def _prefix_fits(t: NDArray[np.float64], y: NDArray[np.float64], window: int
                 ) -> tuple[NDArray[np.float64], ...]:
    """Least-squares (level at t_i, slope) over each prefix and over each trailing window."""
    def fit(n: NDArray[np.float64], st: NDArray[np.float64], sy: NDArray[np.float64],
            stt: NDArray[np.float64], sty: NDArray[np.float64]
            ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        den = n * stt - st * st
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(np.abs(den) > 1e-12, (n * sty - st * sy) / den, 0.0)
        level = (sy - slope * st) / n + slope * t
        return level, slope

    sums = [np.cumsum(v) for v in (np.ones_like(t), t, y, t * t, t * y)]
    all_level, all_slope = fit(*sums)
    lagged = [np.concatenate([np.zeros(window), s[:-window]])[: s.size] for s in sums]
    recent = [s - lag for s, lag in zip(sums, lagged, strict=True)]
    rec_level, rec_slope = fit(*recent)
    return all_level, all_slope, rec_level, rec_slope


def _naive_remaining(level: NDArray[np.float64], slope: NDArray[np.float64],
                     threshold: float, cap: NDArray[np.float64]) -> NDArray[np.float64]:
    """Straight-line axis units to the threshold; ``cap`` when the line does not fall."""
    with np.errstate(divide="ignore", invalid="ignore"):
        naive = np.where(slope < 0, (level - threshold) / -slope, cap)
    return np.clip(naive, 0.0, cap)


def snapshot_features(history: History, threshold: float, window: int = 20,
                      horizon_factor: float = 5.0) -> NDArray[np.float64]:
    """One row of :data:`FEATURES` per cut point: row i uses rows 0..i of the history only.

    ``naive_remaining`` is the straight line through the whole prefix, extended to the
    threshold; ``fade_fraction`` is how much of the way from the first level to the threshold
    the recent level has come (smoothed over ``window`` rows, so one regenerated cycle does not
    swing it). Elapsed time is deliberately not a feature: with few training cells it would
    let the model learn their end-of-life cycle instead of the fade.

    Args:
        history: axis and capacity (or SoH) values, axis increasing.
        threshold: the end-of-life level.
        window: rows in the "recent" straight-line fit.
        horizon_factor: a non-falling line is capped at this many times the elapsed axis.

    Raises:
        ValueError: axis and values differ in length, or the axis does not increase.
    """
    t = np.asarray(history[0], dtype=float)
    y = np.asarray(history[1], dtype=float)
    if t.shape != y.shape or t.ndim != 1:
        raise ValueError(f"axis and values must be 1-D of equal length, got {t.shape}, {y.shape}")
    if t.size and np.any(np.diff(t) <= 0):
        raise ValueError("the history's axis must increase strictly (sort it, drop repeats)")
    all_level, all_slope, rec_level, _ = _prefix_fits(t, y, window)
    elapsed = t - t[0] + (t[1] - t[0] if t.size > 1 else 1.0)
    cap = horizon_factor * elapsed
    first = np.median(y[: min(5, y.size)]) if y.size else 0.0
    span = max(first - threshold, 1e-9)
    return np.column_stack([
        _naive_remaining(all_level, all_slope, threshold, cap),
        (first - rec_level) / span,
    ])


def crossing_index(values: ArrayLike, threshold: float) -> int | None:
    """Index of the first value at or below ``threshold`` (None: never reached)."""
    hits = np.flatnonzero(np.asarray(values, dtype=float) <= threshold)
    return int(hits[0]) if hits.size else None


def training_snapshots(histories: Sequence[History], threshold: float, *, window: int = 20,
                       min_points: int = 10) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Features and remaining life at every cut point before each history's crossing.

    Histories that never reach the threshold are left out: their remaining life is unknown
    (censored), and guessing it would teach the model our guess.

    Raises:
        InsufficientDataError: no history crosses the threshold after ``min_points`` rows.
    """
    xs, ys = [], []
    for hist in histories:
        t = np.asarray(hist[0], dtype=float)
        end = crossing_index(hist[1], threshold)
        if end is None or end < min_points:
            continue
        feats = snapshot_features(hist, threshold, window)
        cut = np.arange(min_points - 1, end)
        xs.append(feats[cut])
        ys.append(t[end] - t[cut])
    if not xs:
        raise InsufficientDataError(
            f"no training history falls to {threshold} after its first {min_points} rows; "
            "train on histories that reach end of life")
    return np.vstack(xs), np.concatenate(ys)


class BatteryLifeForecaster(RegressorMixin, BaseEstimator):
    """Remaining life to a capacity threshold, learnt from histories that reached it.

    ``fit``/``predict`` follow scikit-learn on snapshot features (:func:`snapshot_features`) and
    remaining life; :meth:`fit_histories` and :meth:`forecast` work on raw histories.

    Args:
        threshold: end-of-life capacity or SoH (e.g. 1.4 Ah, or 70 %).
        window: rows in the recent straight-line fit.
        min_points: shortest history prefix used as a training snapshot.
        alpha: ridge penalty of the linear correction.
        coverage: share of training errors the interval covers (0.8: 10th to 90th percentile).

    Attributes:
        model_: the scaler and ridge regression.
        error_quantiles_: low and high relative errors ``(y - pred) / pred`` on the training set.
        n_features_in_: number of features seen in ``fit``.
    """

    def __init__(self, threshold: float = 1.4, window: int = 20, min_points: int = 10,
                 alpha: float = 1.0, coverage: float = 0.8) -> None:
        self.threshold = threshold
        self.window = window
        self.min_points = min_points
        self.alpha = alpha
        self.coverage = coverage

    def fit(self, X: ArrayLike, y: ArrayLike) -> BatteryLifeForecaster:
        """Fit the correction of the naive extrapolations, and the interval's error quantiles.

        Raises:
            ValueError: ``coverage`` outside (0, 1).
        """
        if not 0.0 < self.coverage < 1.0:
            raise ValueError(f"coverage must be in (0, 1), got {self.coverage}")
        Xv, yv = validate_data(self, X, y, y_numeric=True)
        self.model_: Pipeline = make_pipeline(StandardScaler(), Ridge(alpha=self.alpha))
        self.model_.fit(Xv, yv)
        pred = self.model_.predict(Xv)
        rel = (yv - pred) / np.maximum(np.abs(pred), 1e-9)
        tail = (1.0 - self.coverage) / 2.0
        self.error_quantiles_ = np.quantile(rel, [tail, 1.0 - tail])
        return self

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Remaining life (axis units) for each snapshot row."""
        check_is_fitted(self)
        Xv = validate_data(self, X, reset=False)
        return np.asarray(self.model_.predict(Xv), dtype=float)

    def fit_histories(self, histories: Sequence[History]) -> BatteryLifeForecaster:
        """Fit on every cut point of the histories that reach the threshold.

        With two or more such histories the interval comes from leave-one-history-out
        errors (what a cell the model never saw experiences); with one, from in-sample
        errors, which understate the spread between cells.
        """
        X, y = training_snapshots(histories, self.threshold, window=self.window,
                                  min_points=self.min_points)
        self.fit(X, y)
        rel = self._held_out_errors(histories)
        if rel.size:
            tail = (1.0 - self.coverage) / 2.0
            self.error_quantiles_ = np.quantile(rel, [tail, 1.0 - tail])
        return self

    def _held_out_errors(self, histories: Sequence[History]) -> NDArray[np.float64]:
        """Relative errors on each crossing history by a model fitted on the others."""
        snaps = []
        for hist in histories:
            try:
                snaps.append(training_snapshots([hist], self.threshold, window=self.window,
                                                min_points=self.min_points))
            except InsufficientDataError:
                continue
        errors = []
        for i, (Xi, yi) in enumerate(snaps if len(snaps) >= 2 else []):
            others = [s for j, s in enumerate(snaps) if j != i]
            Xo, yo = np.vstack([s[0] for s in others]), np.concatenate([s[1] for s in others])
            model = make_pipeline(StandardScaler(), Ridge(alpha=self.alpha)).fit(Xo, yo)
            pred = model.predict(Xi)
            errors.append((yi - pred) / np.maximum(np.abs(pred), 1e-9))
        return np.concatenate(errors) if errors else np.empty(0)

    def forecast(self, history: History) -> LifeForecast:
        """Where ``history`` (all of it is "so far") reaches the threshold, with the interval."""
        t = np.asarray(history[0], dtype=float)
        if t.size < 2:
            raise InsufficientDataError("a forecast needs at least two points of history")
        row = snapshot_features(history, self.threshold, self.window)[-1:]
        remaining = max(0.0, float(self.predict(row)[0]))
        low, high = (remaining * (1.0 + q) for q in self.error_quantiles_)
        now = float(t[-1])
        return LifeForecast(now, remaining, now + remaining, now + max(0.0, low),
                            now + max(remaining, high))

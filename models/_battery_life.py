"""When will a battery's capacity (or state of health) fall to a threshold?

A cell's own history says how fast it fades now; other cells, run to the end, say how that
straight-line extrapolation errs (fade slows down or speeds up). So the forecaster is a
regressor from *snapshot features* of a history cut at "now" (:func:`snapshot_features`) to
the remaining life (cycles, days or km: whatever unit the history's axis has), trained on
every cut point of histories that did cross the threshold.

Two things real cells do shape it:

- **Regeneration.** After a rest a cell's capacity jumps up and fades back within a few
  cycles. A least-squares line through the history lets that one high point at its end lift
  the level and flatten the slope, so the forecast jumps later by tens of cycles and falls
  back a few cycles on. The trend is fitted instead by a regression that gives points far
  *above* it little weight (:func:`robust_trend`): a regenerated point is above the trend by
  construction, and a low glitch is only down-weighted as any outlier is.
- **Few cells.** With two or three cells run to the end, one threshold gives one or two
  crossings to learn from and none left over to check an interval on. While fewer than
  ``min_histories`` cross it, each history is also used at earlier levels on its way to the
  threshold (``levels``: fractions of its fade from its first level to the threshold), which
  multiplies the crossings.

The interval is calibrated conformal-style on leave-one-history-out errors over every cut
point, by horizon (bins of predicted remaining life), so its width is what histories the
model had not seen showed at that distance from the threshold, not a constant.

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
Floats = NDArray[np.float64]

_ABOVE = 1.0
"""Residuals above the trend beyond this many robust scales lose weight fast (regeneration)."""
_BELOW = 3.0
"""Residuals below it beyond this many scales lose weight slowly (a glitch, not the trend)."""
_BLOCK = 256
"""Cut points fitted at once: memory is a block times the history's length."""


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


def _weighted_lines(tau: Floats, y: Floats, w: Floats) -> tuple[Floats, Floats]:
    """Weighted least-squares line per row: its level at ``tau == 0`` and its slope.

    ``tau`` is each row's axis relative to its own cut point, which keeps the sums well
    conditioned on a km axis in the hundreds of thousands.
    """
    n, st, sy = w.sum(1), (w * tau).sum(1), w @ y
    stt, sty = (w * tau * tau).sum(1), (w * tau) @ y
    den = n * stt - st * st
    ok = den > 1e-12 * np.maximum(n * stt, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(ok, (n * sty - st * sy) / np.where(ok, den, 1.0), 0.0)
        level = (sy - slope * st) / np.maximum(n, 1e-300)
    return level, slope


def _row_medians(values: Floats, counts: NDArray[np.intp]) -> Floats:
    """Median of the first ``counts[i]`` sorted entries of each row (the rest are +inf)."""
    ordered = np.sort(values, axis=1)
    lo = np.take_along_axis(ordered, ((counts - 1) // 2)[:, None], axis=1)
    hi = np.take_along_axis(ordered, (counts // 2)[:, None], axis=1)
    return np.asarray(0.5 * (lo + hi), dtype=float)


def _reweight(r: Floats, mask: NDArray[np.bool_], counts: NDArray[np.intp],
              floor: float) -> Floats:
    """Weights from residuals: full within the band, falling off outside it, faster above.

    The scale is the MAD of the residuals *below* the line: a regeneration puts several
    points above it at once, and a scale taken from both sides would widen with them.
    """
    below = mask & (r <= 0)
    n_below = below.sum(1)
    side = np.where(n_below[:, None] > 0, below, mask)
    scale = np.maximum(1.4826 * _row_medians(np.where(side, np.abs(r), np.inf),
                                             np.where(n_below > 0, n_below, counts)), floor)
    u = r / scale
    w = np.ones_like(u)
    above, below = u > _ABOVE, u < -_BELOW
    w[above] = (_ABOVE / u[above]) ** 2
    w[below] = _BELOW / -u[below]
    return np.where(mask, w, 0.0)


def _trend_block(t: Floats, y: Floats, rows: NDArray[np.intp], window: int | None,
                 iterations: int, floor: float) -> tuple[Floats, Floats]:
    """:func:`robust_trend` for some cut points, on just the columns they reach."""
    first = np.zeros_like(rows) if window is None else np.maximum(rows - window + 1, 0)
    cols = np.arange(int(first.min()), int(rows.max()) + 1)
    mask = (cols[None, :] <= rows[:, None]) & (cols[None, :] >= first[:, None])
    counts = mask.sum(1)
    tau, yy = t[cols][None, :] - t[rows][:, None], y[cols]
    w = mask.astype(float)
    for _ in range(iterations):
        level, slope = _weighted_lines(tau, yy, w)
        w = _reweight(yy[None, :] - level[:, None] - slope[:, None] * tau, mask, counts, floor)
    return _weighted_lines(tau, yy, w)


def robust_trend(history: History, window: int | None = None, iterations: int = 4,
                 rows: ArrayLike | None = None) -> tuple[Floats, Floats]:
    """Level at each cut point and slope of a regeneration-aware line through what came before.

    Row i fits rows ``0..i`` (or the last ``window`` of them) by iteratively reweighted least
    squares: points more than about one robust scale (MAD) above the line lose weight with
    the square of their distance, points below it only beyond three scales and linearly. So a
    capacity that regenerates after a rest barely moves the line, while a real change of
    slope, which moves most points, still does.

    Args:
        history: axis and values, axis increasing.
        window: fit only the last ``window`` rows of each cut (None: all of them).
        iterations: reweighting rounds.
        rows: the cut points to fit (default: every row).

    Returns:
        the fitted level at each cut point's own axis value, and the slope there.
    """
    t = np.asarray(history[0], dtype=float)
    y = np.asarray(history[1], dtype=float)
    cuts = np.arange(t.size) if rows is None else np.asarray(rows, dtype=np.intp)
    floor = 1e-9 * max(1.0, float(np.max(np.abs(y)))) if y.size else 1e-9
    levels, slopes = np.empty(cuts.size), np.empty(cuts.size)
    for start in range(0, cuts.size, _BLOCK):
        part = slice(start, start + _BLOCK)
        levels[part], slopes[part] = _trend_block(t, y, cuts[part], window, iterations, floor)
    return levels, slopes


def _naive_remaining(level: Floats, slope: Floats, threshold: float, cap: Floats) -> Floats:
    """Straight-line axis units to the threshold; ``cap`` when the line does not fall."""
    with np.errstate(divide="ignore", invalid="ignore"):
        naive = np.where(slope < 0, (level - threshold) / -slope, cap)
    return np.clip(naive, 0.0, cap)


def _check_history(history: History) -> tuple[Floats, Floats]:
    t = np.asarray(history[0], dtype=float)
    y = np.asarray(history[1], dtype=float)
    if t.shape != y.shape or t.ndim != 1:
        raise ValueError(f"axis and values must be 1-D of equal length, got {t.shape}, {y.shape}")
    if t.size and np.any(np.diff(t) <= 0):
        raise ValueError("the history's axis must increase strictly (sort it, drop repeats)")
    return t, y


def _first_level(y: Floats) -> float:
    """Where the history started: the median of its first five values."""
    return float(np.median(y[: min(5, y.size)])) if y.size else 0.0


def snapshot_features(history: History, threshold: float, window: int = 20,
                      horizon_factor: float = 5.0, rows: ArrayLike | None = None) -> Floats:
    """One row of :data:`FEATURES` per cut point: row i uses rows 0..i of the history only.

    ``naive_remaining`` is the regeneration-aware line (:func:`robust_trend`) through the
    whole prefix, extended to the threshold; ``fade_fraction`` is how much of the way from the
    first level to the threshold the recent level (the same kind of line over the last
    ``window`` rows) has come. Elapsed time is deliberately not a feature: with few training
    cells it would let the model learn their end-of-life cycle instead of the fade.

    Args:
        history: axis and capacity (or SoH) values, axis increasing.
        threshold: the end-of-life level.
        window: rows in the "recent" line.
        horizon_factor: a non-falling line is capped at this many times the elapsed axis.
        rows: only these cut points (default: every row); a forecast needs the last one only.

    Raises:
        ValueError: axis and values differ in length, or the axis does not increase.
    """
    t, y = _check_history(history)
    cuts = np.arange(t.size) if rows is None else np.asarray(rows, dtype=np.intp)
    if not cuts.size:
        return np.empty((0, len(FEATURES)))
    all_level, all_slope = robust_trend((t, y), rows=cuts)
    rec_level, _ = robust_trend((t, y), window, rows=cuts)
    elapsed = t[cuts] - t[0] + (t[1] - t[0] if t.size > 1 else 1.0)
    first = _first_level(y)
    span = max(first - threshold, 1e-9)
    return np.column_stack([
        _naive_remaining(all_level, all_slope, threshold, horizon_factor * elapsed),
        (first - rec_level) / span,
    ])


def crossing_index(values: ArrayLike, threshold: float) -> int | None:
    """Index of the first value at or below ``threshold`` (None: never reached)."""
    hits = np.flatnonzero(np.asarray(values, dtype=float) <= threshold)
    return int(hits[0]) if hits.size else None


def _level_thresholds(y: Floats, threshold: float, levels: Sequence[float]) -> list[float]:
    """Thresholds a history is used at: ``levels`` of its way from its start to ``threshold``."""
    first = _first_level(y)
    return [first - f * (first - threshold) for f in levels]


def _snapshots(history: History, threshold: float, window: int, min_points: int,
               levels: Sequence[float]) -> tuple[Floats, Floats]:
    """Features and remaining life at every cut before the crossing of each level reached."""
    t, y = _check_history(history)
    xs, ys = [np.empty((0, len(FEATURES)))], [np.empty(0)]
    for level in _level_thresholds(y, threshold, levels):
        end = crossing_index(y, level)
        if end is None or end < min_points:
            continue
        cut = np.arange(min_points - 1, end)
        xs.append(snapshot_features((t, y), level, window, rows=cut))
        ys.append(t[end] - t[cut])
    return np.vstack(xs), np.concatenate(ys)


def _nothing_crosses(threshold: float, min_points: int) -> InsufficientDataError:
    return InsufficientDataError(
        f"no training history falls to {threshold} after its first {min_points} rows; "
        "train on histories that reach end of life")


def training_snapshots(histories: Sequence[History], threshold: float, *, window: int = 20,
                       min_points: int = 10, levels: Sequence[float] = (1.0,)
                       ) -> tuple[Floats, Floats]:
    """Features and remaining life at every cut point before each history's crossing.

    Histories that never reach the threshold are left out: their remaining life is unknown
    (censored), and guessing it would teach the model our guess. With ``levels`` below 1, a
    history also counts at each of those fractions of its fade towards the threshold, where
    its crossing is known even if it never reached the threshold itself.

    Raises:
        InsufficientDataError: no history crosses the threshold after ``min_points`` rows.
    """
    parts = [_snapshots(h, threshold, window, min_points, levels) for h in histories]
    if not any(p[1].size for p in parts):
        raise _nothing_crosses(threshold, min_points)
    return np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _quantiles(scores: Floats, weights: Floats, coverage: float) -> Floats:
    """Weighted tail quantiles of the scores, a conformal step wider than the plain ones.

    Each point weighs ``weights`` (each history the same in total), and the tails are pulled
    out by one point's share, the finite-sample correction of split conformal prediction.
    """
    order = np.argsort(scores)
    s, w = scores[order], weights[order] / weights.sum()
    cum = np.cumsum(w) - w / 2
    tail = (1.0 - coverage) / 2.0
    pad = 1.0 / s.size
    return np.interp([max(tail - pad, 0.0), min(1.0 - tail + pad, 1.0)], cum, s)


def _by_horizon(pred: Floats, scores: Floats, weights: Floats, coverage: float, bins: int
                ) -> tuple[Floats, Floats]:
    """Bins of predicted remaining life (their medians) and the scores' quantiles in each.

    Errors far from the threshold and near it differ in kind (the trend's uncertainty there,
    the noise around the crossing here): one quantile scaled by the horizon was too wide far
    out and too narrow close in. Bins hold equal weight, at least 50 points each.
    """
    order = np.argsort(pred)
    pred, scores, weights = pred[order], scores[order], weights[order]
    k = max(1, min(bins, pred.size // 50))
    cum = np.cumsum(weights) / weights.sum()
    which = np.minimum((cum * k - 1e-12).astype(int), k - 1)
    bins_used = [b for b in range(k) if np.any(which == b)]
    centres = np.array([np.median(pred[which == b]) for b in bins_used])
    quantiles = np.array([_quantiles(scores[which == b], weights[which == b], coverage)
                          for b in bins_used])
    return centres, quantiles


class BatteryLifeForecaster(RegressorMixin, BaseEstimator):
    """Remaining life to a capacity threshold, learnt from histories that reached it.

    ``fit``/``predict`` follow scikit-learn on snapshot features (:func:`snapshot_features`) and
    remaining life; :meth:`fit_histories` and :meth:`forecast` work on raw histories.

    Args:
        threshold: end-of-life capacity or SoH (e.g. 1.4 Ah, or 70 %).
        window: rows in the recent line.
        min_points: shortest history prefix used as a training snapshot.
        alpha: ridge penalty of the linear correction.
        coverage: share of held-out errors the interval covers (0.8: 10th to 90th percentile).
        levels: fractions of each training history's fade towards ``threshold`` it is also
            trained and calibrated at when few histories reach the threshold itself;
            ``(1.0,)`` uses the threshold alone.
        min_histories: with at least this many histories reaching the threshold, ``levels``
            are not used (a fade does not repeat itself exactly at every level, so the
            threshold's own crossings teach better once there are enough of them).
        max_folds: held-out errors come from leave-one-history-out up to this many
            histories, and from this many folds of whole histories beyond.
        horizon_bins: the interval's errors are taken in up to this many bins of predicted
            remaining life (at least 50 cut points each).

    Attributes:
        model_: the scaler and ridge regression.
        horizons_: the median predicted remaining life in each bin (axis units).
        horizon_reach_: the farthest prediction the interval was calibrated on.
        error_quantiles_: per bin, the low and high error ``y - pred`` (axis units): held
            out when :meth:`fit_histories` had two or more histories to learn from, else
            in-sample.
        calibrated_on_: histories the interval's errors were held out from (0: in-sample).
        levels_used_: the levels :meth:`fit_histories` trained and calibrated at.
        n_features_in_: number of features seen in ``fit``.
    """

    def __init__(self, threshold: float = 1.4, window: int = 20, min_points: int = 10,
                 alpha: float = 1.0, coverage: float = 0.8,
                 levels: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9, 1.0),
                 min_histories: int = 3, max_folds: int = 10, horizon_bins: int = 4) -> None:
        self.threshold = threshold
        self.window = window
        self.min_points = min_points
        self.alpha = alpha
        self.coverage = coverage
        self.levels = levels
        self.min_histories = min_histories
        self.max_folds = max_folds
        self.horizon_bins = horizon_bins

    def _new_model(self) -> Pipeline:
        return make_pipeline(StandardScaler(), Ridge(alpha=self.alpha))

    def _calibrate(self, y: Floats, pred: Floats, weights: Floats) -> None:
        """Interval quantiles by horizon from (held-out or in-sample) predictions."""
        self.horizons_, self.error_quantiles_ = _by_horizon(
            pred, y - pred, weights, self.coverage, self.horizon_bins)
        self.horizon_reach_ = float(pred.max())

    def _error_band(self, remaining: float) -> tuple[float, float]:
        """Low and high error at this predicted remaining life.

        Between the bins' medians the quantiles are interpolated, so the interval does not
        jump when a forecast crosses from one bin into the next; beyond the farthest
        prediction calibrated on they grow in proportion to the horizon (an error in the
        slope grows with the distance it is extended over).
        """
        grow = remaining / self.horizon_reach_ if remaining > self.horizon_reach_ > 0 else 1.0
        low, high = (grow * float(np.interp(remaining, self.horizons_, q))
                     for q in self.error_quantiles_.T)
        return low, high

    def fit(self, X: ArrayLike, y: ArrayLike) -> BatteryLifeForecaster:
        """Fit the correction of the naive extrapolations, and in-sample error quantiles.

        Raises:
            ValueError: ``coverage`` outside (0, 1).
        """
        if not 0.0 < self.coverage < 1.0:
            raise ValueError(f"coverage must be in (0, 1), got {self.coverage}")
        Xv, yv = validate_data(self, X, y, y_numeric=True)
        self.model_: Pipeline = self._new_model().fit(Xv, yv)
        self._calibrate(yv, self.model_.predict(Xv), np.ones(yv.size))
        self.calibrated_on_ = 0
        return self

    def predict(self, X: ArrayLike) -> Floats:
        """Remaining life (axis units) for each snapshot row."""
        check_is_fitted(self)
        Xv = validate_data(self, X, reset=False)
        return np.asarray(self.model_.predict(Xv), dtype=float)

    def fit_histories(self, histories: Sequence[History]) -> BatteryLifeForecaster:
        """Fit on every cut point of the histories that reach the threshold.

        When fewer than ``min_histories`` of them reach it, each history is also used at
        ``levels`` of its fade (see :attr:`levels_used_`). With two or more histories to
        learn from, the interval comes from held-out errors: each history predicted by a
        model fitted on the others (what a cell the model never saw experiences); with one,
        from in-sample errors, which understate the spread between cells.

        Raises:
            InsufficientDataError: no history reaches the threshold (or a level) after
                ``min_points`` rows.
        """
        crossing = sum((end := crossing_index(h[1], self.threshold)) is not None
                       and end >= self.min_points for h in histories)
        self.levels_used_ = (1.0,) if crossing >= self.min_histories else tuple(self.levels)
        snaps = [s for h in histories
                 if (s := _snapshots(h, self.threshold, self.window, self.min_points,
                                     self.levels_used_))[1].size]
        if not snaps:
            raise _nothing_crosses(self.threshold, self.min_points)
        X, y = np.vstack([s[0] for s in snaps]), np.concatenate([s[1] for s in snaps])
        self.fit(X, y)  # calibrates in-sample: all there is with one history
        if len(snaps) >= 2:
            self._calibrate(*self._held_out(snaps))
            self.calibrated_on_ = len(snaps)
        return self

    def _held_out(self, snaps: list[tuple[Floats, Floats]]) -> tuple[Floats, Floats, Floats]:
        """Truth and prediction for each history by a model fitted on the other folds.

        The weights give each history the same total, however many cut points it has.
        """
        folds = np.arange(len(snaps)) % min(len(snaps), max(self.max_folds, 2))
        ys, preds, weights = [], [], []
        for fold in np.unique(folds):
            held = [s for s, f in zip(snaps, folds, strict=True) if f == fold]
            rest = [s for s, f in zip(snaps, folds, strict=True) if f != fold]
            model = self._new_model().fit(np.vstack([s[0] for s in rest]),
                                          np.concatenate([s[1] for s in rest]))
            for Xi, yi in held:
                ys.append(yi)
                preds.append(model.predict(Xi))
                weights.append(np.full(yi.size, 1.0 / yi.size))
        return np.concatenate(ys), np.concatenate(preds), np.concatenate(weights)

    def forecast(self, history: History) -> LifeForecast:
        """Where ``history`` (all of it is "so far") reaches the threshold, with the interval."""
        t = np.asarray(history[0], dtype=float)
        if t.size < 2:
            raise InsufficientDataError("a forecast needs at least two points of history")
        row = snapshot_features(history, self.threshold, self.window, rows=[t.size - 1])
        remaining = max(0.0, float(self.predict(row)[0]))
        low, high = (remaining + e for e in self._error_band(remaining))
        now = float(t[-1])
        return LifeForecast(now, remaining, now + remaining, now + min(max(0.0, low), remaining),
                            now + max(remaining, high))

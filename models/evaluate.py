"""Honest evaluation of fault-warning models: split by vehicle, report what a fleet sees.

Rows of one vehicle on neighbouring days are nearly identical, so a row-wise split would let
the model recognise vehicles instead of failures. Held-out vehicles are never seen in training.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import brier_score_loss, roc_auc_score

from models.errors import InsufficientDataError


def split_by_vehicle(
    vehicle_ids: ArrayLike,
    test_fraction: float,
    seed: int,
    *,
    stratify: ArrayLike | None = None,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Split rows into train and test masks so that no vehicle lands in both.

    Args:
        vehicle_ids: the vehicle of each row.
        test_fraction: share of vehicles (not rows) to hold out, in (0, 1).
        seed: makes the split reproducible.
        stratify: optional per-row labels; vehicles with any positive row are then spread
            over both sides in proportion (at least one each way when there are two), so the
            held-out set sees failures whenever it can.

    Within each group, vehicles are ordered by a hash of (seed, vehicle id) and the first
    ones are held out. A vehicle's side therefore does not depend on the rest of the fleet
    (beyond where the cut falls): as the fleet grows, the vehicles held out before mostly stay
    held out, so models trained months apart can be compared on vehicles neither saw.

    Returns:
        ``(train_mask, test_mask)``, boolean arrays as long as ``vehicle_ids``.

    Raises:
        InsufficientDataError: fewer than two vehicles.
        ValueError: ``test_fraction`` outside (0, 1).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    ids = np.asarray(vehicle_ids)
    vehicles = np.unique(ids)
    if vehicles.size < 2:
        raise InsufficientDataError(f"need at least 2 vehicles to split, got {vehicles.size}")
    groups = _vehicle_groups(ids, vehicles, stratify)
    test: list[Any] = []
    for group in groups:
        shuffled = sorted(group, key=lambda v: _rank(seed, v))
        test.extend(shuffled[: _n_test(len(shuffled), test_fraction)])
    if not test:
        test = [min(vehicles, key=lambda v: _rank(seed, v))]
    if len(test) == vehicles.size:
        test = test[1:]
    test_mask = np.isin(ids, np.asarray(test))
    return ~test_mask, test_mask


def _rank(seed: int, vehicle: Any) -> bytes:
    """A stable pseudo-random sort key of a vehicle under ``seed``."""
    return hashlib.blake2b(f"{seed}:{vehicle}".encode(), digest_size=8).digest()


def _n_test(size: int, test_fraction: float) -> int:
    """Vehicles of a group to hold out: at least one and never all, when the group has two."""
    if size < 2:
        return 0
    return min(size - 1, max(1, round(test_fraction * size)))


def _vehicle_groups(
    ids: NDArray[Any], vehicles: NDArray[Any], stratify: ArrayLike | None
) -> list[NDArray[Any]]:
    if stratify is None:
        return [vehicles]
    labels = np.asarray(stratify).astype(bool)
    positive = np.unique(ids[labels])
    return [positive, np.setdiff1d(vehicles, positive)]


def classification_report(
    y_true: ArrayLike,
    proba: ArrayLike,
    threshold: float,
    cost_fp: float,
    cost_fn: float,
) -> dict[str, Any]:
    """Metrics of warnings issued at ``threshold`` (warn when ``proba >= threshold``).

    Returns:
        A JSON-ready dict: ``n``, ``n_positive``, ``tp``, ``fp``, ``tn``, ``fn``,
        ``precision`` (None without warnings), ``recall`` (None without positives),
        ``roc_auc`` (None when only one class is present), ``brier``, ``cost`` and
        ``threshold``.

    Raises:
        InsufficientDataError: no rows.
    """
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(proba, dtype=float)
    if y.size == 0:
        raise InsufficientDataError("cannot evaluate on zero rows")
    warn = p >= threshold
    tp, fp = int(np.sum(warn & y)), int(np.sum(warn & ~y))
    fn, tn = int(np.sum(~warn & y)), int(np.sum(~warn & ~y))
    both = 0 < int(y.sum()) < y.size
    return {
        "n": int(y.size),
        "n_positive": int(y.sum()),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "brier": float(brier_score_loss(y, p)),
        "cost": float(cost_fp * fp + cost_fn * fn),
        "threshold": float(threshold),
    }


def calibration(y_true: ArrayLike, proba: ArrayLike, bins: int = 10) -> dict[str, Any]:
    """How far predicted probabilities are from observed failure rates.

    Rows are grouped into equal-width probability bins; per bin the mean prediction is set
    against the observed share of failures. ``ece`` (expected calibration error) is the
    row-weighted mean gap: 0.1 means the probabilities are off by ten points on average.

    Returns:
        ``{"ece": float, "bins": [{"lo", "hi", "n", "mean_predicted", "observed"}, ...]}``
        (empty bins left out).
    """
    y = np.asarray(y_true).astype(float)
    p = np.clip(np.asarray(proba, dtype=float), 0.0, 1.0)
    if y.size == 0:
        raise InsufficientDataError("cannot measure calibration on zero rows")
    which = np.minimum((p * bins).astype(int), bins - 1)
    out, gap = [], 0.0
    for b in np.unique(which):
        sel = which == b
        mean_p, observed = float(p[sel].mean()), float(y[sel].mean())
        gap += sel.sum() * abs(mean_p - observed)
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "n": int(sel.sum()),
                    "mean_predicted": round(mean_p, 4), "observed": round(observed, 4)})
    return {"ece": gap / y.size, "bins": out}


def lead_times(vehicle_ids: ArrayLike, days: ArrayLike, warned: ArrayLike,
               failure_days: dict[Any, float]) -> dict[str, Any]:
    """Warning lead time: days from the first warning to the failure, per failing vehicle.

    Only warnings on or before the failure day count; a failing vehicle never warned about
    before it failed is a miss.

    Args:
        vehicle_ids, days, warned: one entry per scored row (days as numbers).
        failure_days: the failure day of each vehicle that failed (others are absent).

    Returns:
        ``n_failures``, ``n_warned_in_time``, ``median_lead_days`` and ``min_lead_days``
        (None when no failure was warned about) and ``per_vehicle`` lead days (None: missed).
    """
    ids = np.asarray(vehicle_ids)
    d = np.asarray(days, dtype=float)
    w = np.asarray(warned).astype(bool)
    failing = np.asarray(list(failure_days), dtype=ids.dtype if ids.size else object)
    fail_at = np.asarray(list(failure_days.values()), dtype=float)
    order = np.argsort(failing, kind="stable")
    failing, fail_at = failing[order], fail_at[order]
    first = np.full(failing.size, np.inf)
    if failing.size and w.any():
        pos = np.clip(np.searchsorted(failing, ids[w]), 0, failing.size - 1)
        hit = (failing[pos] == ids[w]) & (d[w] <= fail_at[pos])
        np.minimum.at(first, pos[hit], d[w][hit])
    per_vehicle: dict[str, float | None] = {
        str(v): (float(f - s) if np.isfinite(s) else None)
        for v, f, s in zip(failing, fail_at, first, strict=True)}
    leads = [v for v in per_vehicle.values() if v is not None]
    return {
        "n_failures": len(per_vehicle), "n_warned_in_time": len(leads),
        "median_lead_days": float(np.median(leads)) if leads else None,
        "min_lead_days": float(min(leads)) if leads else None,
        "per_vehicle": per_vehicle,
    }


def time_to_failure_error(predicted: ArrayLike, actual: ArrayLike) -> dict[str, Any]:
    """Error of predicted times to failure (same unit as given: days, km or cycles).

    Returns:
        ``n``, ``mae``, ``median_abs`` and ``bias`` (mean of predicted minus actual: positive
        means failures come earlier than forecast, the dangerous direction); None when empty.
    """
    p = np.asarray(predicted, dtype=float)
    a = np.asarray(actual, dtype=float)
    ok = np.isfinite(p) & np.isfinite(a)
    err = p[ok] - a[ok]
    if err.size == 0:
        return {"n": 0, "mae": None, "median_abs": None, "bias": None}
    return {"n": int(err.size), "mae": float(np.abs(err).mean()),
            "median_abs": float(np.median(np.abs(err))), "bias": float(err.mean())}


def split_by_vehicle_and_time(
    vehicle_ids: ArrayLike, days: ArrayLike, test_vehicles: ArrayLike, cutoff: float,
    horizon: float,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Train on other vehicles' past, test on the held-out vehicles' future.

    A training row on day D is labelled by what happens up to D + horizon, so rows whose
    horizon reaches past ``cutoff`` are purged: otherwise the label would carry the future
    the test is about.

    Returns:
        ``(train_mask, test_mask)``: train = not a test vehicle and ``D + horizon < cutoff``;
        test = a test vehicle and ``D >= cutoff``.
    """
    ids = np.asarray(vehicle_ids)
    d = np.asarray(days, dtype=float)
    held = np.isin(ids, np.asarray(test_vehicles))
    return ~held & (d + horizon < cutoff), held & (d >= cutoff)

"""What a model did on vehicles it never saw: warnings, calibration, lead time, time to failure.

Failures are what the workshop recorded: the first ``unscheduled`` or ``roadside`` repair
order of the component (:func:`pipeline.features.labels.first_failures`), the same evidence
the labels come from. Lead time is the days between the first warning and that order, and the
life forecasters' time to failure is set against its day. The simulator's ground truth is not
read here; :mod:`pipeline.ml.referee` scores against it outside training.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import duckdb
import numpy as np
import polars as pl
from sklearn.base import clone

from models import BatteryLifeForecaster, FaultWarningClassifier, pad_life
from models.errors import InsufficientDataError
from models.evaluate import (
    calibration,
    classification_report,
    lead_times,
    split_by_vehicle_and_time,
    time_to_failure_error,
)
from pipeline.features.labels import first_failures, label_column, label_events
from pipeline.ml.events import EPOCH, day_numbers

Failures = dict[str, dt.date]
"""Recorded failure day per vehicle for one component (vehicles that did not fail are absent)."""
SOH_FAILED: Final = 70.0
"""Traction-pack SoH (%) at which the simulator counts the pack as failed."""
PAD_WEAR_LIMIT: Final = 100.0
"""Pad wear (%) at the wear limit."""


def load_failures(con: duckdb.DuckDBPyConnection, component: str) -> Failures:
    """First recorded failure day of ``component`` per vehicle, from the repair orders."""
    return first_failures(label_events(con), component)


def held_out_report(model: FaultWarningClassifier, test: pl.DataFrame, names: list[str],
                    component: str, failures: Failures) -> dict[str, Any]:
    """``held_out`` (warning metrics), ``calibration`` and ``lead_time`` on the test rows.

    Lead time counts the failures the model was asked to anticipate: held-out vehicles with
    at least one day labelled "fails within the horizon" (a failure long after the data ends
    is neither caught nor missed).
    """
    X = test.select(pl.col(names).cast(pl.Float64))
    y = test[label_column(component)].to_numpy().astype(bool)
    proba = model.predict_proba(X)[:, 1]
    ids = test["vehicle_id"].to_numpy()
    asked = set(ids[y])
    failing = {v: float((d - EPOCH).days) for v, d in failures.items() if v in asked}
    return {
        "held_out": classification_report(y, proba, model.threshold_, model.cost_fp,
                                          model.cost_fn),
        "calibration": calibration(y, proba),
        "lead_time": lead_times(ids, day_numbers(test["day"]), proba >= model.threshold_,
                                failing),
    }


FUTURE_CUTOFF: Final = 0.6
"""The time split's cutoff, as a share of the labelled date range."""


def held_out_future(model: FaultWarningClassifier, rows: pl.DataFrame, names: list[str],
                    component: str, test_ids: set[str], horizon_days: int
                    ) -> dict[str, Any] | None:
    """Split by vehicle *and* time: fit on the training vehicles' past, judge the held-out
    vehicles' future (:func:`models.evaluate.split_by_vehicle_and_time`).

    The cutoff is 60 % into the labelled date range, or later when the training vehicles'
    first failure label would otherwise be purged (chosen from training vehicles only).

    Returns None when either side lacks what it needs (one class in training, no test rows).
    """
    day = day_numbers(rows["day"])
    if day.size == 0:
        return None
    y = rows[label_column(component)].to_numpy().astype(bool)
    ids = rows["vehicle_id"].to_numpy()
    positives = day[y & ~np.isin(ids, sorted(test_ids))]
    cutoff = day.min() + FUTURE_CUTOFF * (day.max() - day.min())
    if positives.size:
        cutoff = max(cutoff, positives.min() + horizon_days + 1)
    train, test = split_by_vehicle_and_time(ids, day, sorted(test_ids), cutoff, horizon_days)
    if not test.any() or np.unique(y[train]).size < 2:
        return None
    X = rows.select(pl.col(names).cast(pl.Float64))
    try:
        fitted = clone(model).fit(X.filter(pl.Series(train)), y[train], groups=ids[train])
    except InsufficientDataError:
        return None
    proba = fitted.predict_proba(X.filter(pl.Series(test)))[:, 1]
    report = classification_report(y[test], proba, fitted.threshold_, fitted.cost_fp,
                                   fitted.cost_fn)
    cut = EPOCH + dt.timedelta(days=float(cutoff))
    return {**report, "cutoff": cut.isoformat(), "n_train_rows": int(train.sum())}


def time_to_failure(rows: pl.DataFrame, train_ids: set[str], test_ids: set[str],
                    component: str, failures: Failures, horizon_days: int) -> dict[str, Any] | None:
    """Error of the life forecast made ``horizon_days`` before each held-out failure (days).

    ``rows`` are the vehicles' feature rows, labelled or not, up to their first failure.
    Only failures whose cut day lies within the vehicle's data count: a forecast from the
    last day seen towards a failure far past the data would not be made ``horizon_days`` ahead.

    The traction battery uses :class:`models.BatteryLifeForecaster` on daily SoH (trained on
    the training vehicles' histories down to 70 %); brakes use the worst pad's wear against
    odometer (:func:`models.pad_life`). Other components have no life forecaster (None).
    """
    if component not in ("traction_battery", "brakes"):
        return None
    by_vehicle = rows.sort("vehicle_id", "day").partition_by("vehicle_id", as_dict=True)
    histories = {str(k[0]): v for k, v in by_vehicle.items()}
    predicted, actual = [], []
    forecaster = (_soh_forecaster(histories, train_ids) if component == "traction_battery"
                  else None)
    for vehicle in sorted(test_ids & set(failures) & set(histories)):
        cut = failures[vehicle] - dt.timedelta(days=horizon_days)
        if histories[vehicle]["day"].max() < cut:  # type: ignore[operator]
            continue
        hist = histories[vehicle].filter(pl.col("day") <= cut)
        days_left = _days_left(hist, component, forecaster)
        if days_left is not None:
            predicted.append(days_left)
            last = hist["day"].max()
            assert isinstance(last, dt.date)
            actual.append(float((failures[vehicle] - last).days))
    return {"cut_days_before_failure": horizon_days,
            **time_to_failure_error(predicted, actual)}


def _soh_history(hist: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    ok = hist.filter(pl.col("soh").is_not_null())
    return day_numbers(ok["day"]), ok["soh"].to_numpy()


def _soh_forecaster(by_vehicle: dict[str, pl.DataFrame], train_ids: set[str]
                    ) -> BatteryLifeForecaster | None:
    histories = [_soh_history(by_vehicle[v]) for v in sorted(train_ids & set(by_vehicle))]
    try:
        return BatteryLifeForecaster(threshold=SOH_FAILED, window=14).fit_histories(histories)
    except InsufficientDataError:
        return None


def _days_left(hist: pl.DataFrame, component: str,
               forecaster: BatteryLifeForecaster | None) -> float | None:
    try:
        if component == "traction_battery":
            return None if forecaster is None else forecaster.forecast(
                _soh_history(hist)).remaining
        life = pad_life(hist["odometer_km"].to_numpy(), hist["pad_wear_max"].to_numpy(),
                        day_numbers(hist["day"]), wear_limit=PAD_WEAR_LIMIT)
    except (InsufficientDataError, ValueError):
        return None
    return life.days_left if np.isfinite(life.days_left) else None

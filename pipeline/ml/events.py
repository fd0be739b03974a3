"""A model's warnings counted per phone call, from the workshop's records.

:mod:`models.warnings` defines onsets and what makes one true; this module feeds it from the
store: the life-ending events of a component are its repair orders and lead outcomes (the
same records the labels come from, :mod:`pipeline.features.labels`), the scores are a model's
probabilities on feature rows. The threshold a model deploys is tuned here on these figures,
on vehicle-grouped out-of-fold probabilities of its training vehicles, so it is chosen by the
calls it would have made on vehicles its fit did not see.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import duckdb
import numpy as np
import polars as pl
from numpy.typing import NDArray
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

from models import FaultWarningClassifier
from models.warnings import LifeEvents, WarningFigures, tune_event_threshold, warning_events
from pipeline.features.labels import CONFIRMED, FAILURE, RENEWAL, label_events

__all__ = ["EPOCH", "MIN_EVIDENCE_FAILURES", "ONSET_PRECISION_FLOOR", "day_numbers",
           "held_out_events", "life_events", "out_of_fold", "tune_threshold"]

MIN_EVIDENCE_FAILURES: Final = 5
"""Failures of its component a hold-out must hold before it can justify a promotion: with
fewer, one lucky or unlucky vehicle swings the figures by 20 points or more."""
EPOCH: Final = dt.date(2000, 1, 1)
"""Day 0 of the day numbers :mod:`models` works in."""
ONSET_PRECISION_FLOOR: Final[float | None] = None
"""Out-of-fold onset precision a deployed threshold must reach when any threshold does; None
tunes on cost alone. None is what ``bench/quality.py`` measured best: a 0.8 floor raised the
held-out precision to 0.79-0.93 but warned 43 % to 88 % of failures and cost more than the
one-feature rule in five of nine part-seeds (the 12 V battery in all three), because the
false onsets are early calls on parts that did fail, later than the horizon
(docs/benchmarks.md)."""
_FOLDS: Final = 3


def day_numbers(days: pl.Series) -> NDArray[np.float64]:
    """Days as numbers (days since 2000-01-01), the unit :mod:`models` works in."""
    return np.asarray((days - EPOCH).dt.total_days().to_numpy(), dtype=float)


def life_events(con: duckdb.DuckDBPyConnection, component: str) -> LifeEvents:
    """The component's failures, renewals and confirmed worn parts, per vehicle and day."""
    events = label_events(con).filter(
        (pl.col("component") == component)
        & pl.col("event").is_in([FAILURE, CONFIRMED, RENEWAL]))
    return LifeEvents.of(events["vehicle_id"].to_numpy(), day_numbers(events["day"]),
                         events["event"].to_numpy())


def out_of_fold(model: FaultWarningClassifier, X: pl.DataFrame, y: NDArray[np.bool_],
                groups: NDArray[Any], seed: int) -> NDArray[np.float64]:
    """Probabilities of each training row from a fit that did not see its vehicle.

    A model that kept its own vehicle-grouped out-of-fold probabilities (``oof_proba_``)
    gives those; otherwise the model is cloned and refitted on vehicle-grouped folds. With
    fewer than two failing vehicles there are no such folds, and the fitted model's own
    (in-sample, over-confident) probabilities stand in.
    """
    kept = getattr(model, "oof_proba_", None)
    if kept is not None and len(kept) == y.size:
        return np.asarray(kept, dtype=float)
    positive_groups = np.unique(groups[y]).size
    folds = min(_FOLDS, positive_groups, np.unique(groups).size - positive_groups + 1)
    if folds < 2:
        return np.asarray(model.predict_proba(X)[:, 1], dtype=float)
    splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    proba = cross_val_predict(clone(model), X, y, cv=splitter, groups=groups,
                              method="predict_proba", params={"groups": groups})
    return np.asarray(proba[:, 1], dtype=float)


def tune_threshold(model: FaultWarningClassifier, rows: pl.DataFrame, names: list[str],
                   y: NDArray[np.bool_], events: LifeEvents, horizon_days: int,
                   seed: int, min_precision: float | None = ONSET_PRECISION_FLOOR
                   ) -> dict[str, Any]:
    """Set ``model.threshold_`` to the cut whose onsets cost least on out-of-fold scores,
    among those whose out-of-fold onset precision reaches ``min_precision`` if any does.

    ``rows`` are the training vehicles' labelled feature rows the model was fitted on (in
    the same order as ``y``). Returns the chosen threshold, the row-wise one it replaces and
    the out-of-fold per-warning figures at the chosen one.
    """
    X = rows.select(pl.col(names).cast(pl.Float64))
    ids = rows["vehicle_id"].to_numpy()
    oof = out_of_fold(model, X, y, ids, seed)
    cut, figures = tune_event_threshold(ids, day_numbers(rows["day"]), oof, events,
                                        horizon_days, cost_fp=model.cost_fp,
                                        cost_fn=model.cost_fn, min_precision=min_precision)
    row_cut = float(model.threshold_)
    model.threshold_ = cut
    return {"threshold": cut, "row_threshold": row_cut, "min_precision": min_precision,
            "out_of_fold": figures.as_json(),
            "out_of_fold_onsets": figures.counts()}


def held_out_events(model: FaultWarningClassifier, rows: pl.DataFrame, names: list[str],
                    events: LifeEvents, horizon_days: int) -> WarningFigures:
    """The per-warning figures of ``model`` at its threshold on ``rows`` (vehicles it never
    saw)."""
    if rows.is_empty():
        return warning_events([], [], [], model.threshold_, events, horizon_days)
    proba = model.predict_proba(rows.select(pl.col(names).cast(pl.Float64)))[:, 1]
    return warning_events(rows["vehicle_id"].to_numpy(), day_numbers(rows["day"]), proba,
                          float(model.threshold_), events, horizon_days)

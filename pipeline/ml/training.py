"""Train one fault-warning model per component, judge it on vehicles it never saw, register it.

Vehicles, not rows, are split (stratified, so failing vehicles land on both sides); the model
is fitted on the training vehicles only and keeps that fit when deployed, so its held-out
vehicles stay unseen and later candidates can be compared with it on them. Every model is
registered with its metadata (:mod:`pipeline.ml.registry`); it is promoted only when it beats
the promoted one on the same hold-out.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Final

import duckdb
import numpy as np
import polars as pl

from edge.wire.contract import COMPONENTS
from models import BoostedWarningClassifier, FaultWarningClassifier
from models.errors import InsufficientDataError
from models.evaluate import split_by_vehicle
from pipeline.errors import NotEnoughDataError
from pipeline.features.daily import (
    attach_labels,
    build_daily_features,
    label_column,
    model_features,
)
from pipeline.features.labels import HorizonOverride, horizons
from pipeline.ml import registry
from pipeline.ml.events import held_out_events, life_events, tune_threshold
from pipeline.ml.holdout import (
    Failures,
    held_out_future,
    held_out_report,
    load_failures,
    time_to_failure,
)
from pipeline.ml.promotion import compare_on_shared_holdout, first_model_decision
from pipeline.ml.provenance import code_version, package_versions
from pipeline.ml.registry import UntrustedArtifactError, load_model

__all__ = ["TrainReport", "UntrustedArtifactError", "estimator_for", "load_model",
           "train_and_register"]

log = logging.getLogger(__name__)
_steps = logging.getLogger("fleetcare.progress.train")
"""Where training reports its steps for a command line's progress bar (``edge.progress``'s
``PROGRESS_LOGGER``: a name, so this module imports nothing of edge)."""

TEST_FRACTION: Final = 0.25


@dataclass(frozen=True, slots=True)
class TrainReport:
    """The outcome of training one component's model.

    Attributes:
        model_id: registry id of the stored model, or None when the component was skipped.
        component: the component the model warns about.
        n_train_vehicles: vehicles the model was fitted on.
        n_test_vehicles: vehicles held out (never seen by the fit).
        metrics: what was stored in the registry (held-out report, calibration, lead times,
            time-to-failure error, threshold, sizes); for a skipped component
            ``{"skipped": reason}``.
        promoted: whether this model now scores the component.
        promotion: why it was (or was not) promoted, with both reports on the shared hold-out.
        events: the per-warning figures on the held-out vehicles
            (:data:`models.warnings.EVENT_KEYS` and onset counts); None when skipped.
    """

    model_id: str | None
    component: str
    n_train_vehicles: int
    n_test_vehicles: int
    metrics: dict[str, Any]
    promoted: bool = False
    promotion: dict[str, Any] | None = None
    events: dict[str, Any] | None = None


MONOTONE: Final[dict[str, dict[str, int]]] = {
    "traction_battery": {"soh_median_30d": -1, "insulation_resistance_mean_30d": -1},
    "lv_battery": {"crank_dip_min": -1, "crank_dip_at_outlook": -1,
                   "crank_margin_at_outlook": -1},
    "brakes": {"pad_wear_max": 1},
}
"""Directions physics vouches for, per component (-1: the lower, the likelier a failure):
they keep a tree model from learning a dent in its risk curve from a few noisy vehicles."""


DEPLOYED_MAX_DEPTH: Final = 3
"""Deepest root-to-leaf path of the deployed trees (3 or less: TreeSHAP from tables)."""
DEPLOYED_NUM_LEAVES: Final = 8
"""Leaves per deployed tree: all that a depth-3 tree can have."""


def estimator_for(component: str, features: list[str], seed: int) -> FaultWarningClassifier:
    """The estimator of a component: gradient-boosted trees, calibrated on vehicle-grouped
    out-of-fold scores, with the monotone directions of :data:`MONOTONE` that apply and
    fully balanced classes (what the fleet benchmark measured; ``models evaluate``'s default
    square-root weighting was chosen on a truck table).

    Trees are at most three splits deep (eight leaves): on the fleet benchmark that cost no
    more than unlimited depth with fifteen leaves (949 against 976 summed over components and
    three seeds) and it lets TreeSHAP come from lookup tables rather than LightGBM's
    per-row ``pred_contrib``, which is what makes explaining every scored row affordable.

    ``bench/quality.py`` compares it with the logistic classifiers it replaced and with a
    one-feature rule on the same held-out vehicles (docs/benchmarks.md).
    """
    monotone = {f: d for f, d in MONOTONE.get(component, {}).items() if f in features}
    return BoostedWarningClassifier(monotone=monotone or None, class_weight="balanced",
                                    max_depth=DEPLOYED_MAX_DEPTH,
                                    num_leaves=DEPLOYED_NUM_LEAVES, random_state=seed)


def train_and_register(
    con: duckdb.DuckDBPyConnection, *, horizon_days: HorizonOverride = None, seed: int = 0
) -> list[TrainReport]:
    """Train, evaluate on held-out vehicles, register and maybe promote one model per component.

    Each component is labelled, tuned and judged at its own horizon
    (:data:`pipeline.features.labels.HORIZON_DAYS`; ``horizon_days`` overrides it for all
    components or, as a mapping, for those it names); the model's metrics record it, and
    scoring hands it to every score and lead of that model.

    Raises:
        HorizonError: ``horizon_days`` is not positive or names an unknown component.
        NotEnoughDataError: the store has no labelled row for any component (no telemetry yet,
            or none that reaches a horizon past its days).

    Labels come from repair orders and lead outcomes only (:mod:`pipeline.features.labels`);
    the simulator's ground truth is never read.
    """
    per = horizons(horizon_days)
    labelled = attach_labels(build_daily_features(con), con, per)
    counts = {c: labelled[label_column(c)].drop_nulls().len() for c in COMPONENTS}
    if not any(counts.values()):
        raise NotEnoughDataError(
            f"no labelled rows to train on ({labelled.height} feature rows): the store needs "
            "telemetry reaching at least "
            f"{min(per.values())} days past some day, and repair orders (fleetcare service import) "
            "or closed leads for the failures")
    reports = []
    for done, component in enumerate(COMPONENTS, start=1):
        rows = labelled.filter(pl.col(label_column(component)).is_not_null())
        failures = load_failures(con, component)
        history = _first_lives(labelled, failures)
        report = _train_component(con, rows, history, failures, component, per[component],
                                  seed)
        log.info("trained %s: %s", component, report.metrics.get("skipped", report.model_id))
        _steps.info("trained %d of %d", done, len(COMPONENTS),
                    extra={"progress": (done, len(COMPONENTS))})
        reports.append(report)
    return reports


def _first_lives(features: pl.DataFrame, failures: Failures) -> pl.DataFrame:
    """Every feature row up to each vehicle's first recorded failure (the life forecasters'
    histories: the failure day itself is unlabelled but is where the history ends)."""
    if not failures:
        return features
    ends = pl.DataFrame({"vehicle_id": list(failures), "_fails": list(failures.values())},
                        schema={"vehicle_id": pl.String, "_fails": pl.Date})
    joined = features.join(ends, on="vehicle_id", how="left")
    return joined.filter(pl.col("_fails").is_null() | (pl.col("day") <= pl.col("_fails"))
                         ).drop("_fails")


def _skip(component: str, reason: str, n_vehicles: int = 0) -> TrainReport:
    log.warning("skipping %s: %s", component, reason)
    return TrainReport(None, component, n_vehicles, 0, {"skipped": reason})


def _train_component(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, history: pl.DataFrame,
    failures: Failures, component: str, horizon_days: int, seed: int,
) -> TrainReport:
    names = model_features(component)
    y = rows[label_column(component)].to_numpy().astype(bool)
    ids = rows["vehicle_id"].to_numpy()
    n_vehicles = int(np.unique(ids).size) if ids.size else 0
    if y.size == 0 or y.all() or not y.any():
        return _skip(component, f"only one class in {y.size} labelled rows", n_vehicles)
    if n_vehicles < 2:
        return _skip(component, "needs at least 2 labelled vehicles", n_vehicles)
    train, test = split_by_vehicle(ids, TEST_FRACTION, seed, stratify=y)
    X = rows.select(pl.col(names).cast(pl.Float64))
    train_rows, test_rows = rows.filter(pl.Series(train)), rows.filter(pl.Series(test))
    try:
        model = estimator_for(component, names, seed).fit(
            X.filter(pl.Series(train)), y[train], groups=ids[train])
    except InsufficientDataError as exc:
        return _skip(component, str(exc), n_vehicles)
    events = life_events(con, component)
    tuning = tune_threshold(model, train_rows, names, y[train], events, horizon_days, seed)
    held = held_out_events(model, test_rows, names, events, horizon_days)
    metrics = {
        "horizon_days": horizon_days, "threshold": float(model.threshold_),
        "cost_fp": model.cost_fp, "cost_fn": model.cost_fn, "threshold_tuning": tuning,
        "events": held.as_json(), "onsets": held.counts(),
        **held_out_report(model, test_rows, names, component, failures),
        "held_out_future": held_out_future(model, rows, names, component, set(ids[test]),
                                           horizon_days),
        "time_to_failure": time_to_failure(history, set(ids[train]), set(ids[test]), component,
                                           failures, horizon_days),
        "n_vehicles": n_vehicles, "n_train_vehicles": int(np.unique(ids[train]).size),
        "n_test_vehicles": int(np.unique(ids[test]).size), "n_rows": int(y.size),
        "n_positive_rows": int(y.sum()), "seed": seed,
    }
    new = registry.NewModel(
        f"{component}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}",
        component, names, metrics, (rows["day"].min(), rows["day"].max()),  # type: ignore[arg-type]
        sorted(np.unique(ids[train]).tolist()), sorted(np.unique(ids[test]).tolist()),
        package_versions(), code_version())
    registry.save_model(con, new, model)
    promotion = _decide(con, new, model, rows)
    return TrainReport(new.model_id, component, metrics["n_train_vehicles"],
                       metrics["n_test_vehicles"], metrics, promotion["promoted"], promotion,
                       metrics["events"])


def _decide(con: duckdb.DuckDBPyConnection, new: registry.NewModel,
            model: FaultWarningClassifier, rows: pl.DataFrame) -> dict[str, Any]:
    """Promote ``new`` when it wins on the shared hold-out, or when there is no promoted
    model and its own hold-out holds enough failures to show what it does."""
    incumbent = registry.promoted_model(con, new.component)
    if incumbent is None:
        decision = first_model_decision(new.component, new.metrics["events"]["failures"])
    else:
        decision = compare_on_shared_holdout(con, new.holdout_vehicles, new.features, model,
                                             incumbent, rows,
                                             int(new.metrics["horizon_days"]))
    if decision["promoted"]:
        registry.set_promoted(con, new.model_id, decision)
    log.info("%s %s: %s", new.model_id, "promoted" if decision["promoted"] else "kept aside",
             decision["reason"])
    return decision

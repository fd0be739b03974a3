"""Train one fault-warning model per component and register it in the store.

Each component's model is first fitted on part of the fleet and judged on vehicles it never
saw (the numbers a data engineer should trust), then refitted on every vehicle and stored with
those held-out metrics. The newest model of a component is the promoted one: scoring uses it.

Artifacts are serialised with ``skops.io`` rather than pickle, and loading accepts only the
types listed in :data:`TRUSTED_TYPES`, so a tampered registry row cannot run code.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Final

import duckdb
import numpy as np
import polars as pl
import sklearn
import skops.io as sio

from edge.contract import COMPONENTS
from models import FaultWarningClassifier
from models.errors import InsufficientDataError
from models.evaluate import classification_report, split_by_vehicle
from pipeline.errors import NotEnoughDataError, TerminalPipelineError
from pipeline.features import attach_labels, build_daily_features, label_column, model_features

log = logging.getLogger(__name__)

TEST_FRACTION: Final = 0.25
TRUSTED_TYPES: Final = ("models._fault_warning.FaultWarningClassifier", "numpy.dtype")
"""Types beyond skops' defaults that a registry artifact may contain."""


class UntrustedArtifactError(TerminalPipelineError):
    """A registry artifact holds types outside :data:`TRUSTED_TYPES`; it is not loaded."""


@dataclass(frozen=True, slots=True)
class TrainReport:
    """The outcome of training one component's model.

    Attributes:
        model_id: registry id of the stored model, or None when the component was skipped.
        component: the component the model warns about.
        n_train_vehicles: vehicles the held-out evaluation trained on.
        n_test_vehicles: vehicles held out (never seen by that fit).
        metrics: what was stored in the registry (held-out report, threshold, sizes); for a
            skipped component ``{"skipped": reason}``.
    """

    model_id: str | None
    component: str
    n_train_vehicles: int
    n_test_vehicles: int
    metrics: dict[str, Any]


def train_and_register(
    con: duckdb.DuckDBPyConnection, *, horizon_days: int = 30, seed: int = 0
) -> list[TrainReport]:
    """Train, evaluate on held-out vehicles, refit on all and register one model per component.

    Raises:
        NotEnoughDataError: the store has no labelled row for any component (no telemetry or
            no ground truth yet).
    """
    labelled = attach_labels(build_daily_features(con), con, horizon_days)
    counts = {c: labelled[label_column(c)].drop_nulls().len() for c in COMPONENTS}
    if not any(counts.values()):
        raise NotEnoughDataError(
            f"no labelled rows to train on ({labelled.height} feature rows): the store needs "
            "telemetry and ground_truth rows whose horizon of "
            f"{horizon_days} days ends before the simulation does")
    reports = []
    for component in COMPONENTS:
        rows = labelled.filter(pl.col(label_column(component)).is_not_null())
        report = _train_component(con, rows, component, horizon_days, seed)
        log.info("trained %s: %s", component, report.metrics.get("skipped", report.model_id))
        reports.append(report)
    return reports


def _skip(component: str, reason: str, n_vehicles: int = 0) -> TrainReport:
    log.warning("skipping %s: %s", component, reason)
    return TrainReport(None, component, n_vehicles, 0, {"skipped": reason})


def _train_component(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, component: str,
    horizon_days: int, seed: int,
) -> TrainReport:
    names = model_features(component)
    X = rows.select(pl.col(names).cast(pl.Float64)).to_numpy()
    y = rows[label_column(component)].to_numpy().astype(bool)
    ids = rows["vehicle_id"].to_numpy()
    n_vehicles = int(np.unique(ids).size) if ids.size else 0
    if y.size == 0 or y.all() or not y.any():
        return _skip(component, f"only one class in {y.size} labelled rows", n_vehicles)
    if n_vehicles < 2:
        return _skip(component, "needs at least 2 labelled vehicles", n_vehicles)
    train, test = split_by_vehicle(ids, TEST_FRACTION, seed, stratify=y)
    held_out = _held_out_metrics(X, y, train, test, seed)
    model = FaultWarningClassifier(random_state=seed).fit(X, y)
    metrics = {
        "horizon_days": horizon_days, "threshold": float(model.threshold_),
        "cost_fp": model.cost_fp, "cost_fn": model.cost_fn, "held_out": held_out,
        "n_vehicles": n_vehicles, "n_train_vehicles": int(np.unique(ids[train]).size),
        "n_test_vehicles": int(np.unique(ids[test]).size), "n_rows": int(y.size),
        "n_positive_rows": int(y.sum()), "seed": seed, "sklearn_version": sklearn.__version__,
    }
    model_id = register_model(con, component, names, metrics, model)
    return TrainReport(model_id, component, metrics["n_train_vehicles"],
                       metrics["n_test_vehicles"], metrics)


def _held_out_metrics(
    X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int
) -> dict[str, Any] | None:
    """Fit on the training vehicles and report on the held-out ones (None if it cannot fit)."""
    try:
        model = FaultWarningClassifier(random_state=seed).fit(X[train], y[train])
    except InsufficientDataError as exc:
        log.warning("no held-out evaluation: %s", exc)
        return None
    proba = model.predict_proba(X[test])[:, 1]
    return classification_report(y[test], proba, model.threshold_, model.cost_fp,
                                  model.cost_fn)


def register_model(
    con: duckdb.DuckDBPyConnection, component: str, features: list[str],
    metrics: dict[str, Any], model: FaultWarningClassifier,
) -> str:
    """Store ``model`` as the promoted model of ``component``; return its registry id."""
    now = dt.datetime.now(dt.UTC)
    model_id = f"{component}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    blob = sio.dumps(model)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("UPDATE model_registry SET promoted = false WHERE component = ?",
                    [component])
        con.execute(
            "INSERT INTO model_registry (model_id, component, created_at, features, metrics,"
            " artifact, promoted) VALUES (?, ?, ?, ?, ?, ?, true)",
            [model_id, component, now, features, json.dumps(metrics), blob],
        )
        con.execute("COMMIT")
    except duckdb.Error:
        con.execute("ROLLBACK")
        raise
    return model_id


def load_model(artifact: bytes) -> FaultWarningClassifier:
    """Deserialise a registry artifact, refusing any type outside :data:`TRUSTED_TYPES`.

    Raises:
        UntrustedArtifactError: the artifact holds a type we did not put there.
    """
    untrusted = sio.get_untrusted_types(data=artifact)
    unknown = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if unknown:
        raise UntrustedArtifactError(f"model artifact holds untrusted types {unknown}")
    model = sio.loads(artifact, trusted=list(untrusted))
    if not isinstance(model, FaultWarningClassifier):
        raise UntrustedArtifactError(f"artifact is a {type(model).__name__}, not a model")
    return model

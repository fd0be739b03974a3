"""Score every vehicle's latest feature row with the promoted model of each component.

Scores are the bridge between models and advice: one row per (vehicle, component, as_of).
Re-running a day replaces that day's rows, so a retried flow never duplicates them.

Each score carries its ``explanation``: the :data:`TOP_FEATURES` inputs that moved the
log-odds most for that vehicle, as JSON ``[{"feature", "value", "contribution"}, ...]``,
largest magnitude first (a positive contribution pushes towards a warning).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Final

import duckdb
import numpy as np
import polars as pl

from pipeline.features.daily import build_daily_features, model_features
from pipeline.ml.registry import load_model
from pipeline.store.connection import transaction

log = logging.getLogger(__name__)

TOP_FEATURES: Final = 3
"""How many contributing features each score's explanation lists."""
LOOKBACK_DAYS: Final = 90
"""Telemetry read when scoring a day: features need 32 days; a vehicle silent for longer
than this is not scored (its latest features would describe a stale state)."""

_PRESENCE = {"traction_battery": "soh"}
"""A component only some vehicles have, and the feature that shows a vehicle has it."""


def score_fleet(con: duckdb.DuckDBPyConnection, *, as_of: dt.date | None = None) -> int:
    """Write ``scores`` for ``as_of`` from each vehicle's latest feature row on or before it.

    Args:
        con: an open store.
        as_of: the day to score for (default: the latest day with telemetry in the store,
            which for replayed or simulated fleets is not today's date). Each vehicle is
            scored on its latest feature row in the :data:`LOOKBACK_DAYS` up to that day.

    Returns:
        The number of score rows written (0 when no model is promoted or no data exists).
    """
    day = as_of or _latest_telemetry_day(con)
    if day is None:
        log.warning("nothing to score: no telemetry")
        return 0
    until = dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)
    since = until - dt.timedelta(days=LOOKBACK_DAYS)
    features = build_daily_features(con, until=until, since=since)
    if features.is_empty():
        log.warning("nothing to score: no telemetry in the %d days up to %s", LOOKBACK_DAYS, day)
        return 0
    latest = _latest_rows(features)
    models = con.execute(
        "SELECT model_id, component, metrics, artifact FROM model_registry WHERE promoted"
    ).fetchall()
    frames = [_score_component(latest, day, *row) for row in models]
    scores = pl.concat(frames) if frames else pl.DataFrame()
    _replace_scores(con, day, [row[1] for row in models], scores)
    log.info("scored %d (vehicle, component) pairs as of %s", scores.height, day)
    return scores.height


def _latest_telemetry_day(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    rows = con.execute("SELECT CAST(timezone('UTC', max(ts)) AS DATE) FROM telemetry").fetchall()
    return rows[0][0] if rows and rows[0][0] is not None else None


def _latest_rows(features: pl.DataFrame) -> pl.DataFrame:
    has = {c: pl.col(f).is_not_null().any().over("vehicle_id").alias(f"has__{c}")
           for c, f in _PRESENCE.items()}
    return (features.with_columns(*has.values())
            .filter(pl.col("day") == pl.col("day").max().over("vehicle_id")))


def _score_component(
    latest: pl.DataFrame, day: dt.date, model_id: str, component: str,
    metrics: str, artifact: bytes,
) -> pl.DataFrame:
    rows = latest
    if component in _PRESENCE:
        rows = latest.filter(pl.col(f"has__{component}"))
    model = load_model(artifact)
    names = [str(n) for n in getattr(model, "feature_names_in_", model_features(component))]
    X = rows.select(pl.col(names).cast(pl.Float64))
    proba = model.predict_proba(X)[:, 1] if rows.height else np.empty(0)
    why = model.explain(X, top=TOP_FEATURES) if rows.height else []
    horizon = int(json.loads(metrics)["horizon_days"])
    return pl.DataFrame({
        "vehicle_id": rows["vehicle_id"], "component": component, "as_of": day,
        "probability": pl.Series(proba, dtype=pl.Float64), "horizon_days": horizon,
        "model_id": model_id, "explanation": [json.dumps(w) for w in why],
    }, schema_overrides={"as_of": pl.Date, "horizon_days": pl.Int32,
                         "explanation": pl.String})


def _replace_scores(
    con: duckdb.DuckDBPyConnection, day: dt.date, components: list[str], scores: pl.DataFrame
) -> None:
    with transaction(con):
        con.execute("DELETE FROM scores WHERE as_of = ? AND list_contains(?, component)",
                    [day, components])
        if scores.height:
            con.register("_new_scores", scores)
            con.execute(
                "INSERT INTO scores (vehicle_id, component, as_of, probability, horizon_days,"
                " model_id, explanation) SELECT vehicle_id, component, as_of, probability,"
                " horizon_days, model_id, explanation::JSON FROM _new_scores")
            con.unregister("_new_scores")

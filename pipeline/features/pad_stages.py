"""Where the most worn brake pad is inside its sensor stage, from the pad readings' whole history.

A pad wear sensor reports stages of 10 % (0, 10, ..., 100), not a percentage, so for months the
reading does not move. The daily build's rolling windows (at most 60 days) are shorter than one
stage of most cars, so they cannot say whether a pad that reads 90 entered
that stage last week or four months ago. The stage before it can: a pad wears about the same
per day of the same driving, so the days the last full stage took are the days each remaining
10 % will take. The days left to the wear limit are then the stages still to go at that pace
minus the days already spent in this one.

This module reads only the pad readings (their daily maximum over the four wheels) back to the
beginning of the data up to ``$until``, ignoring ``$since``: a stage change months before the
build's window must still count, and a ranged build must give the same rows as a full one.
The per-day frame it reads is one number per vehicle and day, so the scan is of the four pad
signals only.

Features (null until the reading has stepped up twice since the data began or since the pads
were renewed, since only then is one whole stage seen):

- ``pad_stage_days``: days the last full stage took (from the step before to the last step);
- ``pad_days_in_stage``: days since the reading last stepped up;
- ``pad_days_left_stage``: ``(100 - reading) / 10`` stages at ``pad_stage_days`` each, minus
  ``pad_days_in_stage`` (negative: the pad is behind its own pace).
"""

from __future__ import annotations

from typing import Final

import duckdb
import polars as pl

from pipeline.features.daily_sql import PAD_WEAR, UTC_DAY
from pipeline.features.query import frame
from pipeline.features.vehicle_order import forward_filled, previous

ODOMETER: Final = "Vehicle.TraveledDistance"

PAD_STAGE_PCT: Final = 10.0
"""The step of the pad wear sensors' readings (%)."""
PAD_LIMIT_PCT: Final = 100.0
"""The reading at the wear limit."""
FEATURES: Final = ("pad_stage_days", "pad_days_in_stage", "pad_days_left_stage",
                   "pad_km_left_stage")
"""The columns :func:`with_pad_stages` adds."""

_PADS = ", ".join(f"'{p}'" for p in PAD_WEAR.values())
PAD_HISTORY: Final = f"""
SELECT vehicle_id, {UTC_DAY} AS day,
  max(value) FILTER (WHERE signal IN ({_PADS})) AS reading,
  max(value) FILTER (WHERE signal = '{ODOMETER}') AS odometer
FROM telemetry
WHERE signal IN ({_PADS}, '{ODOMETER}') AND ts <= $until
  AND vehicle_id >= $first AND vehicle_id <= $last
GROUP BY ALL
"""
"""The most worn pad's reading and the odometer per vehicle and day, from the first day on
(``$since`` unused)."""


def pad_history(con: duckdb.DuckDBPyConnection, params: dict[str, object]) -> pl.DataFrame:
    """:data:`PAD_HISTORY` of the window's ``$until``, ``$first`` and ``$last``."""
    return frame(con, PAD_HISTORY, params)


def stage_changes(history: pl.DataFrame) -> pl.DataFrame:
    """From a :data:`PAD_HISTORY` frame (:func:`pad_history`, or the same columns from any
    source of the same daily maxima), per vehicle, each day its most worn pad's reading
    changed: ``up`` (a step of wear, not a renewal's drop) and the day of the change before it
    (null for the first one in the data).

    Why drops count: after new pads the reading falls to 0, and the first step up after that
    measures the new pads' first stage from the renewal, not from a step of the old pads; until
    that step, no stage of the new pads is known.
    """
    history = history.sort("vehicle_id", "day").with_columns(
        forward_filled(pl.col("reading")), forward_filled(pl.col("odometer")))
    prev = previous(pl.col("reading"))
    changes = (history.with_columns(prev=prev)
               .filter(pl.col("prev").is_not_null() & (pl.col("reading") != pl.col("prev"))))
    return changes.select(
        "vehicle_id", pl.col("day").alias("change_day"),
        (pl.col("reading") > pl.col("prev")).alias("up"),
        previous(pl.col("day")).alias("previous_change"),
        pl.col("odometer").alias("change_km"),
        previous(pl.col("odometer")).alias("previous_change_km"))


def with_pad_stages(feats: pl.LazyFrame, changes: pl.LazyFrame) -> pl.LazyFrame:
    """``feats`` (vehicle, day, ``pad_wear_max``) with :data:`FEATURES` added from ``changes``
    (:func:`stage_changes`): each day takes the last change on or before it, and has stage
    features when that change was a step up whose stage began at a change seen in the data.

    Both frames must be sorted by vehicle and day (``feats``: the daily build's order, which
    the result keeps; ``changes``: :func:`stage_changes`' order). The as-of join needs days
    in order within each vehicle only, not across the frame: sorting the wide feature frame
    by day for it, and back by vehicle after, cost more than the join."""
    joined = feats.join_asof(changes, left_on="day", right_on="change_day", by="vehicle_id",
                             strategy="backward", check_sortedness=False)
    reading = forward_filled(pl.col("pad_wear_max"))
    stage_days = (pl.col("change_day") - pl.col("previous_change")).dt.total_days()
    in_stage = (pl.col("day") - pl.col("change_day")).dt.total_days()
    stages_left = (PAD_LIMIT_PCT - reading) / PAD_STAGE_PCT
    known = pl.col("up").fill_null(False) & stage_days.is_not_null()
    stage_km = pl.col("change_km") - pl.col("previous_change_km")
    km_in = forward_filled(pl.col("odometer_km")) - pl.col("change_km")
    return joined.with_columns(
        pl.when(known).then(stage_days).cast(pl.Float64).alias("pad_stage_days"),
        pl.when(known).then(in_stage).cast(pl.Float64).alias("pad_days_in_stage"),
        pl.when(known).then(stages_left * stage_days - in_stage).cast(pl.Float64)
        .alias("pad_days_left_stage"),
        pl.when(known).then(stages_left * stage_km - km_in).cast(pl.Float64)
        .alias("pad_km_left_stage"),
    ).drop("change_day", "up", "previous_change", "change_km", "previous_change_km")

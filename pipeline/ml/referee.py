"""The simulator's ground truth as referee: how the promoted models did against real failures.

Training never reads ``ground_truth`` (its labels are the workshop's records, see
:mod:`pipeline.features.labels`); this module is the one place that does, for the demo's
printout and the benchmarks. It judges each promoted model on its own held-out vehicles: the
days from its first warning to the failure the simulator says really happened, which is
earlier than the workshop's order by the repair delay.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import polars as pl

from edge.wire.contract import COMPONENTS
from models.evaluate import lead_times
from pipeline.features.daily import build_daily_features
from pipeline.ml import registry
from pipeline.ml.events import EPOCH, day_numbers


def load_truth(con: duckdb.DuckDBPyConnection, component: str) -> dict[str, dt.date]:
    """Real failure days of ``component`` per vehicle (UTC dates), from ``ground_truth``."""
    rows = con.execute(
        "SELECT vehicle_id, CAST(timezone('UTC', failure_ts) AS DATE) FROM ground_truth"
        " WHERE component = ? AND failure_ts IS NOT NULL", [component]).fetchall()
    return {str(v): d for v, d in rows}


def referee_report(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    """Per component with a promoted model: its held-out vehicles' real failures in the data
    window, how many it warned about on or before the day, and the lead times (days)."""
    features = build_daily_features(con)
    out: dict[str, dict[str, Any]] = {}
    for component in COMPONENTS:
        entry = registry.promoted_model(con, component)
        if entry is None:
            continue
        out[component] = _judge(con, features, entry, component)
    return out


def _judge(con: duckdb.DuckDBPyConnection, features: pl.DataFrame,
           entry: registry.ModelEntry, component: str) -> dict[str, Any]:
    rows = features.filter(pl.col("vehicle_id").is_in(entry.holdout_vehicles))
    last = {str(v): d for v, d in rows.group_by("vehicle_id").agg(pl.col("day").max()).rows()}
    truth = {v: d for v, d in load_truth(con, component).items() if v in last and d <= last[v]}
    if rows.is_empty():
        return {"model_id": entry.model_id, "held_out_vehicles": len(entry.holdout_vehicles),
                "real_failures": 0, "warned_in_time": 0, "median_lead_days": None}
    model = registry.load_artifact(con, entry.model_id)
    proba = model.predict_proba(rows.select(pl.col(entry.features).cast(pl.Float64)))[:, 1]
    days = day_numbers(rows["day"])
    leads = lead_times(rows["vehicle_id"].to_numpy(), days, proba >= model.threshold_,
                       {v: float((d - EPOCH).days) for v, d in truth.items()})
    return {"model_id": entry.model_id, "held_out_vehicles": len(entry.holdout_vehicles),
            "real_failures": leads["n_failures"], "warned_in_time": leads["n_warned_in_time"],
            "median_lead_days": leads["median_lead_days"]}

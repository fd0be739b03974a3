"""Daily, point-in-time features per vehicle, and the labels that train on them.

One row per (vehicle_id, day). Every value for day D is computed from data stamped up to and
including D (UTC): per-day aggregates come from DuckDB, trends are backward rolling windows in
polars, so appending later telemetry never changes an earlier day's row. That is what lets a
model trained on history be trusted on today's row.

A fault code counts as active on day D when its latest event up to D did not clear it: edge
agents report a code once per status change (pending, then stored) and do not re-send it while
it stays set.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Final

import duckdb
import polars as pl

from edge.contract import COMPONENTS
from pipeline.dtc_catalog import catalog_frame

log = logging.getLogger(__name__)

TREND_WINDOW: Final = "14d"
"""Backward window of the slope features (the day itself and the 13 before it)."""
SOH = "Vehicle.Powertrain.TractionBattery.StateOfHealth"
_WHEELS = [f"Row{r}.Wheel.{s}" for r in (1, 2) for s in ("Left", "Right")]
PAD_WEAR = tuple(f"Vehicle.Chassis.Axle.{w}.Brake.PadWear" for w in _WHEELS)

_DAILY_SQL: Final = """
SELECT vehicle_id, CAST(timezone('UTC', ts) AS DATE) AS day,
  median(value) FILTER (WHERE signal = 'Vehicle.Powertrain.TractionBattery.StateOfHealth') AS soh,
  median(value) FILTER (WHERE signal = 'Vehicle.Powertrain.TractionBattery.CellVoltage.Max')
    - median(value) FILTER (WHERE signal = 'Vehicle.Powertrain.TractionBattery.CellVoltage.Min')
    AS cell_voltage_spread,
  max(value) FILTER (WHERE signal = 'Vehicle.Powertrain.TractionBattery.Temperature.Max')
    AS cell_temp_max,
  min(value) FILTER (WHERE signal = 'BMS_Health.InsulationResistance')
    AS insulation_resistance_min,
  max(value) FILTER (WHERE signal IN ({pads})) AS pad_wear_max,
  min(value) FILTER (WHERE signal = 'BCM_LowVoltage.CrankMinVoltage') AS crank_dip_min,
  median(value) FILTER (WHERE signal = 'Vehicle.LowVoltageBattery.CurrentVoltage')
    AS rest_voltage,
  max(value) FILTER (WHERE signal = 'Vehicle.TraveledDistance') AS odometer_km,
  median(value) FILTER (WHERE signal = 'Vehicle.Exterior.AirTemperature') AS ambient_temp
FROM telemetry
WHERE ts <= $until
GROUP BY ALL
"""

_DTC_SQL: Final = """
WITH days AS (
  SELECT DISTINCT vehicle_id, CAST(timezone('UTC', ts) AS DATE) AS day
  FROM telemetry WHERE ts <= $until
), ev AS (
  SELECT vehicle_id, code, ts, cleared, CAST(timezone('UTC', ts) AS DATE) AS d
  FROM dtc_events WHERE ts <= $until
)
SELECT days.vehicle_id, days.day, upper(ev.code) AS code,
       arg_max(ev.cleared, ev.ts) AS cleared_last
FROM days JOIN ev ON ev.vehicle_id = days.vehicle_id
  AND ev.d <= days.day
GROUP BY ALL
"""

COMPONENT_FEATURES: Final[dict[str, tuple[str, ...]]] = {
    "traction_battery": ("soh", "soh_slope_14d", "cell_voltage_spread", "cell_temp_max",
                         "insulation_resistance_min", "dtc_count__traction_battery"),
    "lv_battery": ("crank_dip_min", "crank_dip_trend_14d", "rest_voltage",
                   "dtc_count__lv_battery"),
    "brakes": ("pad_wear_max", "pad_wear_rate_per_100km", "dtc_count__brakes"),
}
"""The features that describe each component's own health (also the lead's evidence)."""
CONTEXT_FEATURES: Final = ("distance_km", "ambient_temp", "odometer_km")
"""Usage and climate, which every component's model also sees."""


def model_features(component: str) -> list[str]:
    """The feature columns a component's model is trained and scored on."""
    return [*COMPONENT_FEATURES[component], *CONTEXT_FEATURES]


def build_daily_features(
    con: duckdb.DuckDBPyConnection, *, until: dt.datetime | None = None
) -> pl.DataFrame:
    """One feature row per (vehicle_id, day) from everything in the store up to ``until``.

    Args:
        con: an open store.
        until: ignore telemetry and fault codes stamped after this instant (default: none
            ignored). Rows are point-in-time either way; this only saves work when scoring
            the past.

    Returns:
        Columns ``vehicle_id``, ``day`` (pl.Date), the per-day signals, their trends and
        ``dtc_count__<component>``, sorted by vehicle and day. Values a vehicle does not
        report (an ICE car's battery pack) are null.
    """
    bound = until or dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
    pads = ", ".join(f"'{p}'" for p in PAD_WEAR)
    daily = _query(con, _DAILY_SQL.format(pads=pads), {"until": bound})
    feats = _with_trends(daily.sort("vehicle_id", "day"))
    dtc = _dtc_counts(con, bound)
    out = feats.join(dtc, on=["vehicle_id", "day"], how="left").with_columns(
        pl.col(f"dtc_count__{c}").fill_null(0) for c in COMPONENTS
    )
    return out.sort("vehicle_id", "day").collect()


def _query(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]) -> pl.LazyFrame:
    """Run ``sql`` and hand its result to polars through Arrow."""
    rel = con.sql(sql, params=params or None)
    if rel is None:
        raise ValueError("query returned no relation")
    return rel.pl().lazy()


def _with_trends(daily: pl.LazyFrame) -> pl.LazyFrame:
    x_day = (pl.col("day") - pl.date(2000, 1, 1)).dt.total_days().cast(pl.Float64)
    prev_day = pl.col("day").shift(1).over("vehicle_id")
    prev_odo = pl.col("odometer_km").forward_fill().shift(1).over("vehicle_id")
    gap = (pl.col("day") - prev_day).dt.total_days()
    return daily.with_columns(
        _rolling_slope(pl.col("soh"), x_day).alias("soh_slope_14d"),
        _rolling_slope(pl.col("crank_dip_min"), x_day).alias("crank_dip_trend_14d"),
        (_rolling_slope(pl.col("pad_wear_max"), pl.col("odometer_km")) * 100.0)
        .alias("pad_wear_rate_per_100km"),
        ((pl.col("odometer_km") - prev_odo) / gap).alias("distance_km"),
    )


def _rolling_slope(y: pl.Expr, x: pl.Expr) -> pl.Expr:
    """Least-squares slope of y on x over the backward trend window, per vehicle.

    Written with rolling sums so it stays a vectorised expression; null when fewer than two
    points or no spread in x.
    """
    ok = y.is_not_null() & x.is_not_null()
    xv, yv = pl.when(ok).then(x), pl.when(ok).then(y)

    def rsum(e: pl.Expr) -> pl.Expr:
        return e.fill_null(0.0).rolling_sum_by("day", TREND_WINDOW).over("vehicle_id")

    n = rsum(ok.cast(pl.Float64))
    sx, sy, sxy, sxx = rsum(xv), rsum(yv), rsum(xv * yv), rsum(xv * xv)
    den = n * sxx - sx * sx
    return pl.when((n >= 2) & (den.abs() > 1e-9)).then((n * sxy - sx * sy) / den)


def _dtc_counts(con: duckdb.DuckDBPyConnection, bound: dt.datetime) -> pl.LazyFrame:
    active = _query(con, _DTC_SQL, {"until": bound}).filter(~pl.col("cleared_last"))
    comp = catalog_frame().lazy().select("code", "component")
    joined = active.join(comp, on="code", how="left")
    return joined.group_by("vehicle_id", "day").agg(
        (pl.col("component") == c).sum().cast(pl.Int64).alias(f"dtc_count__{c}")
        for c in COMPONENTS
    )


def label_column(component: str) -> str:
    """Name of the label column :func:`attach_labels` adds for ``component``."""
    return f"fails_within__{component}"


_TRUTH_SQL: Final = """
SELECT vehicle_id, component,
       CAST(timezone('UTC', failure_ts) AS DATE) AS failure_day,
       CAST(timezone('UTC', sim_end_ts) AS DATE) AS end_day
FROM ground_truth
"""


def attach_labels(
    features: pl.DataFrame, con: duckdb.DuckDBPyConnection, horizon_days: int
) -> pl.DataFrame:
    """Add ``fails_within__<component>``: does the component fail within ``horizon_days``?

    True when the failure day lies in [D, D + horizon]. Null (not trainable) where the vehicle
    has no ground truth for the component (an ICE car's traction battery), on days after the
    failure, and on days whose horizon runs past the end of the simulation without a failure
    (we cannot know it stays healthy).
    """
    truth = _query(con, _TRUTH_SQL, {})
    out = features.lazy()
    for comp in COMPONENTS:
        t = truth.filter(pl.col("component") == comp).drop("component")
        out = out.join(t, on="vehicle_id", how="left").with_columns(
            _label(horizon_days).alias(label_column(comp))
        ).drop("failure_day", "end_day")
    return out.sort("vehicle_id", "day").collect()


def _label(horizon_days: int) -> pl.Expr:
    fail, end, day = pl.col("failure_day"), pl.col("end_day"), pl.col("day")
    ahead = (fail - day).dt.total_days()
    known_healthy = (end - day).dt.total_days() >= horizon_days
    return (
        pl.when(end.is_null()).then(None)
        .when(fail.is_not_null() & (ahead < 0)).then(None)
        .when(fail.is_not_null()).then(ahead <= horizon_days)
        .when(known_healthy).then(False)
        .otherwise(None)
    )

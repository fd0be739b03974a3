"""The daily build as it was before its speed-ups, kept as the oracle of their tests.

These are the one-expression forms of the trend, pad-stage and cranking-margin features
(rolling sums inside each slope, ``.over("vehicle_id")`` for every shift and fill, the wide
frame sorted by day for the pad stages' as-of join and back) and the fault-code and outlook
queries that read their days from the telemetry. The build in :mod:`pipeline.features` must
give exactly these frames; only the SQL texts, constants and small helpers that did not change
are imported from it.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

from edge.wire.contract import COMPONENTS
from pipeline.features import daily_sql
from pipeline.features.active_codes import history_cte
from pipeline.features.crank_margin import (
    _GAP,
    COLD_START_C,
    MIN_LEVEL_STARTS,
    MIN_SPREAD_C,
    MIN_STARTS,
    STARTER_NEED_V,
    WINDOW_DAYS,
)
from pipeline.features.daily import (
    _KEY,
    _WHEEL_KEYS,
    EXPOSURE_WINDOW,
    HOT_CELL_C,
    LONG_WINDOW,
    PAD_WEAR_LIMIT,
    SOH_FAILED,
    TREND_WINDOW,
    _backward,
    _by_key,
    _days_to,
    _key,
    _time_window,
)
from pipeline.features.daily_sql import OUTLOOK_DAYS, UTC_DAY
from pipeline.features.fault_codes import catalog_frame
from pipeline.features.pad_stages import PAD_HISTORY, PAD_LIMIT_PCT, PAD_STAGE_PCT
from pipeline.features.query import frame


def _query(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]
           ) -> pl.LazyFrame:
    return frame(con, sql, params).lazy()


# The fault-code and outlook queries as they were: their days from a scan of the telemetry.
_ALL_DAYS = f"""days AS (
  SELECT DISTINCT vehicle_id, {UTC_DAY} AS day
  FROM telemetry WHERE ts <= $until AND ts >= $since
  AND vehicle_id >= $first AND vehicle_id <= $last
)"""
_LAST_DAYS = f"""days AS (
  SELECT vehicle_id, max({UTC_DAY}) AS day
  FROM telemetry WHERE ts <= $until AND ts >= $since
  AND vehicle_id >= $first AND vehicle_id <= $last
  GROUP BY vehicle_id
)"""
"""The (vehicle, day) pairs the fault-code and outlook features are computed for: every day
with telemetry, or each vehicle's latest one only (what scoring reads)."""

_DTC = f"""
WITH {{days}}, {history_cte("$until")}
SELECT days.vehicle_id, days.day, ev.code,
       arg_max(ev.cleared, ev.seq) AS cleared_last,
       arg_max(ev.episode_start, ev.seq) AS first_seen,
       count(*) FILTER (WHERE NOT ev.cleared AND ev.d > days.day - INTERVAL 30 DAY
                        AND (ev.next_repair_day IS NULL OR ev.next_repair_day > days.day))
         AS events_30d
FROM days JOIN dtc_history ev ON ev.vehicle_id = days.vehicle_id
  AND ev.d <= days.day
GROUP BY ALL
"""
"""Per vehicle, day and code: whether its latest event cleared it (a clear the vehicle sent,
or a repair of the code's component: :mod:`pipeline.features.active_codes`), the day the
current episode began (first report after the last clear; every event of an episode is on or
before the latest one, so its start never comes from after the day), and how many times the
code was reported (pending, stored, ...) in the 30 days up to the day since the part was last
repaired: its recurrence (a vehicle's own clear does not reset it, a repair does: the reports
were about the part it replaced)."""
DTC = _DTC.replace("{days}", _ALL_DAYS)
DTC_LATEST = _DTC.replace("{days}", _LAST_DAYS)
"""Both over :data:`_DTC`'s rule: every day with telemetry, or each vehicle's latest."""

_OUTLOOK = f"""
WITH {{days}}
SELECT days.vehicle_id, days.day, min(f.min_temp_c) AS outlook_min_temp_c
FROM days
JOIN vehicles v ON v.vehicle_id = days.vehicle_id
JOIN region_forecasts f ON lower(f.region) = lower(v.region)
  AND f.day > days.day AND f.day <= days.day + INTERVAL {OUTLOOK_DAYS} DAY
GROUP BY ALL
"""
"""The coldest forecast minimum temperature of the vehicle's region in the next
:data:`OUTLOOK_DAYS` days (``region_forecasts``, imported with the master data or by
``fleetcare leads campaigns --forecast``). The table keeps one value per region and day, the
latest forecast; for past days that is close to what happened, so a model trained on it sees
a sharper outlook than a real forecast gives a month ahead."""
OUTLOOK = _OUTLOOK.replace("{days}", _ALL_DAYS)
OUTLOOK_LATEST = _OUTLOOK.replace("{days}", _LAST_DAYS)
"""Both over :data:`_OUTLOOK`'s rule: every day with telemetry, or each vehicle's latest."""


_PER_WHEEL = ",\n  ".join(
    f"max(value) FILTER (WHERE signal = '{sig}') AS pad_wear_{k}"
    for k, sig in daily_sql.PAD_WEAR.items())

DAILY_ONE_PASS = f"""
SELECT vehicle_id, {daily_sql.UTC_DAY} AS day,
  median(value) FILTER (WHERE signal = 'Vehicle.Powertrain.TractionBattery.StateOfHealth') AS soh,
  median(value) FILTER (WHERE signal = 'Vehicle.Powertrain.TractionBattery.CellVoltage.Max')
    - median(value) FILTER (WHERE signal = 'Vehicle.Powertrain.TractionBattery.CellVoltage.Min')
    AS cell_voltage_spread,
  max(value) FILTER (WHERE signal = 'Vehicle.Powertrain.TractionBattery.Temperature.Max')
    AS cell_temp_max,
  min(value) FILTER (WHERE signal = 'BMS_Health.InsulationResistance')
    AS insulation_resistance_min,
  max(value) FILTER (WHERE signal IN ({daily_sql._PADS})) AS pad_wear_max,
  {_PER_WHEEL},
  min(value) FILTER (WHERE signal IN ('BCM_LowVoltage.CrankMinVoltage',
                                      'Event.Crank.MinVoltage')) AS crank_dip_min,
  median(value) FILTER (WHERE signal = 'Vehicle.LowVoltageBattery.CurrentVoltage')
    AS rest_voltage,
  max(value) FILTER (WHERE signal = 'Vehicle.TraveledDistance') AS odometer_km,
  median(value) FILTER (WHERE signal = 'Vehicle.Exterior.AirTemperature') AS ambient_temp
FROM telemetry
WHERE ts <= $until AND ts >= $since AND vehicle_id >= $first AND vehicle_id <= $last
GROUP BY ALL
"""
"""The former single-level form of :data:`pipeline.features.daily_sql.DAILY` (five exact
medians per vehicle-day, two to four times slower): what the two-level form must equal."""

_LAST_ID = "\U0010ffff"
_CRANK_KEY = "_crank_key"


def _crank_key() -> pl.Expr:
    day_number = (pl.col("day") - pl.date(2000, 1, 1)).dt.total_days().cast(pl.Int64)
    return pl.col("vehicle_id").rank("dense").cast(pl.Int64) * _GAP + day_number


def reference_build(
    con: duckdb.DuckDBPyConnection, *, until: dt.datetime | None = None,
    since: dt.datetime | None = None, vehicles: tuple[str, str] | None = None,
    latest_only: bool = False,
) -> pl.DataFrame:
    """One feature row per (vehicle_id, day) from everything in the store up to ``until``.

    Args:
        con: an open store.
        until: ignore telemetry and fault codes stamped after this instant (default: none
            ignored). Rows are point-in-time either way; this only saves work when scoring
            the past.
        since: ignore telemetry before this instant. Rows whose windows reach back past it
            are computed from less data; rows at least :data:`LOOKBACK_DAYS` after it are
            exactly what a full build gives (what scoring the latest day needs).
        vehicles: only the vehicles whose id is in this inclusive ``(first, last)`` range
            (default: all). Every row depends on its own vehicle's data only, so a range's rows
            equal the full build's rows of those vehicles.
        latest_only: only each vehicle's latest day (what scoring reads): the rolling windows
            still read the days before it, but the fault-code and outlook queries and the
            joins run for one day per vehicle. The rows equal the full build's latest rows.

    Returns:
        Columns ``vehicle_id``, ``day`` (pl.Date), the per-day signals, their trends and
        exposures, and the fault-code features per component, sorted by vehicle and day.
        Values a vehicle does not report (an ICE car's battery pack) are null.
    """
    first, last = vehicles or ("", _LAST_ID)
    window: dict[str, object] = {**_time_window(until, since), "first": first, "last": last}
    daily = _query(con, daily_sql.DAILY, window)
    braking = _query(con, daily_sql.BRAKING, window)
    daily = daily.join(braking, on=["vehicle_id", "day"], how="left")
    outlook = _query(con, OUTLOOK_LATEST if latest_only else OUTLOOK, window)
    daily = daily.join(outlook, on=["vehicle_id", "day"], how="left")
    feats = _with_trends(daily.sort("vehicle_id", "day"))
    feats = with_pad_stages(feats, stage_changes(con, window).lazy())
    feats = with_crank_margin(feats)
    if latest_only:
        feats = feats.filter(pl.col("day") == pl.col("day").max().over("vehicle_id"))
    dtc = _dtc_features(con, window, latest_only)
    out = feats.join(dtc, on=["vehicle_id", "day"], how="left").with_columns(
        pl.col(f"dtc_{kind}__{c}").fill_null(0)
        for c in COMPONENTS for kind in ("count", "events_30d", "age_days")
    )
    return out.sort("vehicle_id", "day").collect(engine="streaming")




def _with_trends(daily: pl.LazyFrame) -> pl.LazyFrame:
    x_day = (pl.col("day") - pl.date(2000, 1, 1)).dt.total_days().cast(pl.Float64)
    odo = pl.col("odometer_km")
    prev_day = pl.col("day").shift(1).over("vehicle_id")
    prev_odo = odo.forward_fill().shift(1).over("vehicle_id")
    gap = (pl.col("day") - prev_day).dt.total_days()
    energy = pl.col("braking_energy_kj_per_kg")
    cum_energy = energy.fill_null(0.0).cum_sum().over("vehicle_id")
    first = daily.with_columns(_key()).with_columns(
        _rolling_slope(pl.col("soh"), x_day).alias("soh_slope_14d"),
        _rolling_slope(pl.col("crank_dip_min"), x_day).alias("crank_dip_trend_14d"),
        _rolling_slope(pl.col("crank_dip_min"), pl.col("ambient_temp"), EXPOSURE_WINDOW)
        .alias("crank_dip_per_degree_30d"),
        _rolling_slope(pl.col("rest_voltage"), x_day).alias("rest_voltage_trend_14d"),
        (_rolling_slope(pl.col("pad_wear_max"), odo) * 100.0).alias("pad_wear_rate_per_100km"),
        *((_rolling_slope(pl.col(f"pad_wear_{k}"), odo) * 100.0)
          .alias(f"pad_wear_rate_per_100km_{k}") for k in _WHEEL_KEYS),
        _rolling_slope(pl.col("pad_wear_max"), cum_energy).alias("pad_wear_per_braking_energy"),
        pl.col("soh").rolling_median_by(_KEY, _by_key(EXPOSURE_WINDOW)).alias("soh_median_30d"),
        _rolling_slope(pl.col("soh"), x_day, LONG_WINDOW).alias("soh_slope_60d"),
        _backward(pl.col("insulation_resistance_min"), "mean")
        .alias("insulation_resistance_mean_30d"),
        _rolling_slope(pl.col("cell_voltage_spread"), x_day, LONG_WINDOW)
        .alias("cell_voltage_spread_slope_60d"),
        (_rolling_slope(pl.col("pad_wear_max"), odo, LONG_WINDOW) * 100.0)
        .alias("pad_wear_rate_per_100km_60d"),
        _km_in_stage().alias("pad_km_in_stage"),
        ((odo - prev_odo) / gap).alias("distance_km"),
        _backward(pl.col("cell_temp_max"), "mean").alias("cell_temp_mean_30d"),
        _backward((pl.col("cell_temp_max") >= HOT_CELL_C).cast(pl.Float64), "sum")
        .alias("hot_days_30d"),
        _backward(energy, "sum").alias("braking_energy_30d"),
    )
    km_per_day = _backward(pl.col("distance_km"), "mean")
    km_left = (PAD_WEAR_LIMIT - pl.col("pad_wear_max")) / (pl.col("pad_wear_rate_per_100km")
                                                            / 100.0)
    rate_60d = pl.col("pad_wear_rate_per_100km_60d") / 100.0
    km_left_60d = ((PAD_WEAR_LIMIT - pl.col("pad_wear_max")) / rate_60d
                   - pl.col("pad_km_in_stage")).clip(lower_bound=0.0)
    return first.with_columns(
        _crank_dip_at_outlook().alias("crank_dip_at_outlook"),
        _days_to(pl.col("soh_median_30d") - SOH_FAILED, -pl.col("soh_slope_60d"))
        .alias("soh_days_to_threshold_60d"),
        pl.when(rate_60d > 1e-9).then(km_left_60d).alias("pad_km_left_60d"),
        pl.when(rate_60d > 1e-9).then(
            _days_to(km_left_60d, km_per_day)).alias("pad_days_left_60d"),
        _days_to(pl.col("soh") - SOH_FAILED, -pl.col("soh_slope_14d"))
        .alias("soh_days_to_threshold"),
        pl.when(pl.col("pad_wear_rate_per_100km") > 1e-9).then(km_left)
        .alias("pad_km_to_limit"),
        _days_to(PAD_WEAR_LIMIT - pl.col("pad_wear_max"),
                 pl.col("pad_wear_rate_per_100km") / 100.0 * km_per_day)
        .alias("pad_days_to_limit"),
    ).drop(_KEY)


def _km_in_stage() -> pl.Expr:
    """Kilometres since the most worn pad's reading last changed, at most the long window's.

    A staged pad sensor reads 80 % from the moment the pad reaches 80 % until it reaches 90 %:
    the distance driven since the reading changed says how far into the stage the pad is.
    A change older than the window counts from the window's start, so the value never reaches
    further back than :data:`LOOKBACK_DAYS`.
    """
    odo = pl.col("odometer_km")
    wear = pl.col("pad_wear_max").forward_fill().over("vehicle_id")
    changed = wear != wear.shift(1).over("vehicle_id")
    stage_start = pl.when(changed).then(odo).forward_fill().over("vehicle_id")
    window_start = odo.rolling_min_by(_KEY, _by_key(LONG_WINDOW))
    return (odo - pl.max_horizontal(stage_start, window_start)).clip(lower_bound=0.0)


def _crank_dip_at_outlook() -> pl.Expr:
    """Today's cranking dip moved to the outlook's coldest morning along this battery's own
    dip-per-degree (30 days of its cranks at their air temperatures).

    A weak battery's dip falls faster with the cold (more current through more resistance),
    so the slope is the battery's own, not a fleet constant. A negative slope (warmer days,
    lower dips: ageing outran the season) is not extrapolated; it counts as flat.
    """
    per_degree = pl.col("crank_dip_per_degree_30d").clip(lower_bound=0.0)
    cooling = pl.col("outlook_min_temp_c") - pl.col("ambient_temp")
    return pl.col("crank_dip_min") + per_degree * cooling.clip(upper_bound=0.0)


def _rolling_slope(y: pl.Expr, x: pl.Expr, window: str = TREND_WINDOW) -> pl.Expr:
    """Least-squares slope of y on x over a backward window (the trend window unless given),
    per vehicle.

    Written with rolling sums so it stays a vectorised expression; null when fewer than two
    points or no spread in x.
    """
    ok = y.is_not_null() & x.is_not_null()
    xv, yv = pl.when(ok).then(x), pl.when(ok).then(y)

    def rsum(e: pl.Expr) -> pl.Expr:
        return e.fill_null(0.0).rolling_sum_by(_KEY, _by_key(window))

    n = rsum(ok.cast(pl.Float64))
    sx, sy, sxy, sxx = rsum(xv), rsum(yv), rsum(xv * yv), rsum(xv * xv)
    den = n * sxx - sx * sx
    return pl.when((n >= 2) & (den.abs() > 1e-9)).then((n * sxy - sx * sy) / den)


def _dtc_features(con: duckdb.DuckDBPyConnection, window: dict[str, object],
                  latest_only: bool = False) -> pl.LazyFrame:
    """Active codes, reports in the last 30 days and the oldest active code's age per component
    (of each vehicle's latest day only, when ``latest_only``)."""
    events = _query(con, DTC_LATEST if latest_only else DTC, window)
    comp = catalog_frame().lazy().select("code", "component")
    joined = events.join(comp, on="code", how="left").with_columns(
        active=~pl.col("cleared_last"),
        age=(pl.col("day") - pl.col("first_seen")).dt.total_days().cast(pl.Float64))
    return joined.group_by("vehicle_id", "day").agg(
        expr
        for c in COMPONENTS
        for expr in (
            ((pl.col("component") == c) & pl.col("active")).sum().cast(pl.Int64)
            .alias(f"dtc_count__{c}"),
            pl.col("events_30d").filter(pl.col("component") == c).sum().cast(pl.Int64)
            .alias(f"dtc_events_30d__{c}"),
            pl.col("age").filter((pl.col("component") == c) & pl.col("active")).max()
            .alias(f"dtc_age_days__{c}"),
        )
    )



def with_crank_margin(feats: pl.LazyFrame) -> pl.LazyFrame:
    """``feats`` (``vehicle_id``, ``day``, ``crank_dip_min``, ``ambient_temp``,
    ``outlook_min_temp_c``; one row per vehicle and day with data) plus
    ``crank_margin_at_outlook``: the vehicle's least-squares line of cranking dip against
    morning air temperature, over its starts of the last :data:`WINDOW_DAYS` days below
    :data:`COLD_START_C` that followed a day with data, read at the outlook's coldest minimum
    (capped at :data:`COLD_START_C`), minus :data:`STARTER_NEED_V`.

    A line that rises with the cold (ageing outran the season), or one from fewer than
    :data:`MIN_STARTS` starts or from mornings all alike (:data:`MIN_SPREAD_C`), counts as
    flat: the window's mean dip. Null with fewer than :data:`MIN_LEVEL_STARTS` such starts or
    no outlook.
    """
    gap = (pl.col("day") - pl.col("day").shift(1).over("vehicle_id")).dt.total_days()
    temp, dip = pl.col("ambient_temp"), pl.col("crank_dip_min")
    ok = dip.is_not_null() & temp.is_not_null() & (temp < COLD_START_C) & (gap == 1)
    x, y = pl.when(ok).then(temp), pl.when(ok).then(dip)
    window = f"{WINDOW_DAYS}i"

    def rsum(e: pl.Expr) -> pl.Expr:
        return e.fill_null(0.0).rolling_sum_by(_CRANK_KEY, window)

    n = rsum(ok.cast(pl.Float64))
    sx, sy, sxy, sxx = rsum(x), rsum(y), rsum(x * y), rsum(x * x)
    den = n * sxx - sx * sx  # n² times the temperatures' variance
    trusted = (n >= MIN_STARTS) & (den > (MIN_SPREAD_C ** 2) * n * n)
    slope = pl.when(trusted).then((n * sxy - sx * sy) / den).otherwise(0.0).clip(lower_bound=0.0)
    coldest = pl.min_horizontal(pl.col("outlook_min_temp_c"), pl.lit(COLD_START_C))
    enough = (n >= MIN_LEVEL_STARTS) & pl.col("outlook_min_temp_c").is_not_null()
    predicted = sy / n + slope * (coldest - sx / n)
    return (feats.with_columns(_crank_key().alias(_CRANK_KEY)).sort(_CRANK_KEY)
            .with_columns(pl.when(enough).then(predicted - STARTER_NEED_V)
                          .alias("crank_margin_at_outlook"))
            .drop(_CRANK_KEY))


def stage_changes(con: duckdb.DuckDBPyConnection, params: dict[str, object]) -> pl.DataFrame:
    """Per vehicle, each day its most worn pad's reading changed: ``up`` (a step of wear, not a
    renewal's drop) and the day of the change before it (null for the first one in the data).

    Why drops count: after new pads the reading falls to 0, and the first step up after that
    measures the new pads' first stage from the renewal, not from a step of the old pads; until
    that step, no stage of the new pads is known.
    """
    query = {k: v for k, v in params.items() if k in ("until", "first", "last")}
    rel = con.sql(PAD_HISTORY, params=query)
    if rel is None:
        raise ValueError("query returned no relation")
    history = rel.pl().sort("vehicle_id", "day").with_columns(
        pl.col("reading", "odometer").forward_fill().over("vehicle_id"))
    prev = pl.col("reading").shift(1).over("vehicle_id")
    changes = (history.with_columns(prev=prev)
               .filter(pl.col("prev").is_not_null() & (pl.col("reading") != pl.col("prev"))))
    return changes.select(
        "vehicle_id", pl.col("day").alias("change_day"),
        (pl.col("reading") > pl.col("prev")).alias("up"),
        pl.col("day").shift(1).over("vehicle_id").alias("previous_change"),
        pl.col("odometer").alias("change_km"),
        pl.col("odometer").shift(1).over("vehicle_id").alias("previous_change_km"))


def with_pad_stages(feats: pl.LazyFrame, changes: pl.LazyFrame) -> pl.LazyFrame:
    """``feats`` (vehicle, day, ``pad_wear_max``) with :data:`FEATURES` added from ``changes``
    (:func:`stage_changes`): each day takes the last change on or before it, and has stage
    features when that change was a step up whose stage began at a change seen in the data."""
    joined = (feats.sort("day")
              .join_asof(changes.sort("change_day"), left_on="day", right_on="change_day",
                         by="vehicle_id", strategy="backward",
                         check_sortedness=False)  # both sorted by day just above
              .sort("vehicle_id", "day"))
    reading = pl.col("pad_wear_max").forward_fill().over("vehicle_id")
    stage_days = (pl.col("change_day") - pl.col("previous_change")).dt.total_days()
    in_stage = (pl.col("day") - pl.col("change_day")).dt.total_days()
    stages_left = (PAD_LIMIT_PCT - reading) / PAD_STAGE_PCT
    known = pl.col("up").fill_null(False) & stage_days.is_not_null()
    stage_km = pl.col("change_km") - pl.col("previous_change_km")
    km_in = pl.col("odometer_km").forward_fill().over("vehicle_id") - pl.col("change_km")
    return joined.with_columns(
        pl.when(known).then(stage_days).cast(pl.Float64).alias("pad_stage_days"),
        pl.when(known).then(in_stage).cast(pl.Float64).alias("pad_days_in_stage"),
        pl.when(known).then(stages_left * stage_days - in_stage).cast(pl.Float64)
        .alias("pad_days_left_stage"),
        pl.when(known).then(stages_left * stage_km - km_in).cast(pl.Float64)
        .alias("pad_km_left_stage"),
    ).drop("change_day", "up", "previous_change", "change_km", "previous_change_km")

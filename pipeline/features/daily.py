"""Daily, point-in-time features per vehicle, and the labels that train on them.

Labels come from repair orders and lead outcomes (:mod:`pipeline.features.labels`).

One row per (vehicle_id, day). Every value for day D is computed from data stamped up to and
including D (UTC): per-day aggregates come from DuckDB, trends are backward rolling windows in
polars, so appending later telemetry never changes an earlier day's row. That is what lets a
model trained on history be trusted on today's row.

A fault code counts as active on day D when its latest event up to D did not clear it: edge
agents report a code once per status change (pending, then stored) and do not re-send it while
it stays set. A repair order of the code's component opened after the report clears it too
(:mod:`pipeline.features.active_codes`): an ECU whose part was replaced just stops sending it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Final

import duckdb
import polars as pl

from edge.wire.contract import COMPONENTS
from pipeline.features import daily_sql, labels
from pipeline.features.crank_margin import FEATURES as CRANK_MARGIN_FEATURES
from pipeline.features.crank_margin import with_crank_margin
from pipeline.features.daily_sql import PAD_WEAR as PAD_WEAR_SIGNALS
from pipeline.features.fault_codes import catalog_frame
from pipeline.features.labels import label_column as label_column
from pipeline.features.pad_stages import FEATURES as PAD_STAGE_FEATURES
from pipeline.features.pad_stages import stage_changes, with_pad_stages

log = logging.getLogger(__name__)

TREND_WINDOW: Final = "14d"
"""Backward window of the slope features (the day itself and the 13 before it)."""
EXPOSURE_WINDOW: Final = "30d"
"""Backward window of the exposure features (heat, distance, braking energy)."""
LONG_WINDOW: Final = "60d"
"""Backward window of the slow trends: a BMS's SoH estimate wanders and jumps at each
recalibration, and a staged pad sensor moves once in weeks, so a 14-day slope of either is
mostly noise."""
HOT_CELL_C: Final = 40.0
"""Hottest-cell temperature (°C) above which a day counts as a hot day for the pack."""
SOH_FAILED: Final = 70.0
"""Traction-pack SoH (%) treated as end of life by the days-to-threshold feature."""
PAD_WEAR_LIMIT: Final = 100.0
"""Pad wear (%) at the wear limit."""
LOOKBACK_DAYS: Final = 62
"""The longest backward reach of any feature (the 60-day long window, plus the previous
day's odometer): a row this many days after ``since`` equals the full build's row."""
HORIZON_CAP_DAYS: Final = 3650.0
"""Days-to-threshold features are capped here (a flat trend would give infinity)."""
SOH = "Vehicle.Powertrain.TractionBattery.StateOfHealth"
PAD_WEAR = tuple(PAD_WEAR_SIGNALS.values())
_WHEEL_KEYS = tuple(PAD_WEAR_SIGNALS)

COMPONENT_FEATURES: Final[dict[str, tuple[str, ...]]] = {
    "traction_battery": ("soh", "soh_slope_14d", "soh_days_to_threshold", "soh_median_30d",
                         "soh_slope_60d", "soh_days_to_threshold_60d",
                         "insulation_resistance_mean_30d", "cell_voltage_spread_slope_60d",
                         "cell_voltage_spread", "cell_temp_max", "cell_temp_mean_30d",
                         "hot_days_30d", "insulation_resistance_min",
                         "dtc_count__traction_battery", "dtc_events_30d__traction_battery",
                         "dtc_age_days__traction_battery"),
    "lv_battery": ("crank_dip_min", "crank_dip_trend_14d", "rest_voltage",
                   "rest_voltage_trend_14d", "crank_dip_per_degree_30d",
                   "outlook_min_temp_c", "crank_dip_at_outlook", "dtc_count__lv_battery",
                   "dtc_events_30d__lv_battery", "dtc_age_days__lv_battery",
                   *CRANK_MARGIN_FEATURES),
    "brakes": ("pad_wear_max", "pad_wear_rate_per_100km", "pad_km_to_limit",
               "pad_days_to_limit", "pad_wear_rate_per_100km_60d", "pad_km_in_stage",
               "pad_km_left_60d", "pad_days_left_60d", *(f"pad_wear_{k}" for k in _WHEEL_KEYS),
               *(f"pad_wear_rate_per_100km_{k}" for k in _WHEEL_KEYS),
               "braking_energy_30d", "pad_wear_per_braking_energy", "dtc_count__brakes",
               "dtc_events_30d__brakes", "dtc_age_days__brakes", *PAD_STAGE_FEATURES),
}
"""The features that describe each component's own health (also the lead's evidence)."""
CONTEXT_FEATURES: Final = ("distance_km", "ambient_temp", "odometer_km")
"""Usage and climate, which every component's model also sees."""


def model_features(component: str) -> list[str]:
    """The feature columns a component's model is trained and scored on."""
    return [*COMPONENT_FEATURES[component], *CONTEXT_FEATURES]


CHUNK_VEHICLES: Final = 50_000
"""Vehicles per chunk of :func:`iter_daily_features`: a chunk's per-day aggregates and rolling
windows are what is held in memory at once (about 0.3 GB at 14 days), whatever the fleet size."""
_LAST_ID: Final = "\U0010ffff"
"""An upper bound of every vehicle id (the highest code point; ids are plain text)."""


def build_daily_features(
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
    outlook = _query(con, daily_sql.OUTLOOK_LATEST if latest_only else daily_sql.OUTLOOK, window)
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


def iter_daily_features(
    con: duckdb.DuckDBPyConnection, *, until: dt.datetime | None = None,
    since: dt.datetime | None = None, chunk_vehicles: int = CHUNK_VEHICLES,
) -> Iterator[pl.DataFrame]:
    """:func:`build_daily_features` of the fleet, one chunk of vehicles at a time.

    Chunks are consecutive ranges of sorted vehicle ids, ``chunk_vehicles`` each, in id order:
    concatenated, they are exactly the one-shot build. Memory is bounded by the chunk, not the
    fleet, so a million vehicles build in the memory of fifty thousand; each chunk's query
    carries its id range, which a store written vehicle by vehicle prunes by zonemaps.
    """
    for first, last in vehicle_ranges(con, chunk_vehicles, until=until, since=since):
        yield build_daily_features(con, until=until, since=since, vehicles=(first, last))


def vehicle_ranges(
    con: duckdb.DuckDBPyConnection, chunk_vehicles: int, *, until: dt.datetime | None = None,
    since: dt.datetime | None = None,
) -> list[tuple[str, str]]:
    """Inclusive ``(first, last)`` id ranges of ``chunk_vehicles`` vehicles each, in id order,
    covering every vehicle with telemetry in ``[since, until]``."""
    if chunk_vehicles < 1:
        raise ValueError(f"chunk_vehicles must be positive, got {chunk_vehicles}")
    rel = con.sql(
        "SELECT min(vehicle_id), max(vehicle_id) FROM (SELECT vehicle_id,"
        " (row_number() OVER (ORDER BY vehicle_id) - 1) // $size AS chunk"
        " FROM (SELECT DISTINCT vehicle_id FROM telemetry WHERE ts <= $until AND ts >= $since))"
        " GROUP BY chunk ORDER BY chunk",
        params={"size": chunk_vehicles, **_time_window(until, since)})
    return [(str(a), str(b)) for a, b in rel.fetchall()]


def _time_window(until: dt.datetime | None, since: dt.datetime | None) -> dict[str, object]:
    """``$until`` and ``$since`` of the telemetry queries; an open end reaches every row."""
    return {"until": until or dt.datetime(9999, 12, 31, tzinfo=dt.UTC),
            "since": since or dt.datetime(1, 1, 1, tzinfo=dt.UTC)}


def _query(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]) -> pl.LazyFrame:
    """Run ``sql`` and hand its result to polars through Arrow."""
    rel = con.sql(sql, params=params or None)
    if rel is None:
        raise ValueError("query returned no relation")
    return rel.pl().lazy()


_KEY: Final = "_vehicle_day"
"""A sorted integer key, vehicle by vehicle then day, that keeps vehicles :data:`_KEY_GAP`
apart: a backward window of fewer days never reaches the previous vehicle's rows, so one
rolling pass over the whole frame gives each vehicle's own windows. Per-vehicle windows
(``.over("vehicle_id")``) cost a kernel call per vehicle and window, most of the build's time
at ten thousand vehicles of 14 days."""
_KEY_GAP: Final = 1_000_000


def _key() -> pl.Expr:
    day_number = (pl.col("day") - pl.date(2000, 1, 1)).dt.total_days().cast(pl.Int64)
    return (pl.col("vehicle_id").rank("dense").cast(pl.Int64) * _KEY_GAP + day_number).alias(_KEY)


def _by_key(window: str) -> str:
    """A day window (``"14d"``) as the same window on :data:`_KEY` (``"14i"``)."""
    if not window.endswith("d"):
        raise ValueError(f"windows are in days, got {window!r}")
    return f"{int(window[:-1])}i"


def _backward(e: pl.Expr, how: str) -> pl.Expr:
    """A backward rolling aggregate over :data:`EXPOSURE_WINDOW` per vehicle."""
    window = _by_key(EXPOSURE_WINDOW)
    return (e.rolling_mean_by(_KEY, window) if how == "mean"
            else e.fill_null(0.0).rolling_sum_by(_KEY, window))


def _days_to(gap: pl.Expr, rate: pl.Expr) -> pl.Expr:
    """Days until ``gap`` closes at ``rate`` per day (capped; the cap when not closing)."""
    return (pl.when(rate > 1e-9).then(gap.clip(lower_bound=0.0) / rate)
            .otherwise(HORIZON_CAP_DAYS).clip(upper_bound=HORIZON_CAP_DAYS))


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
    events = _query(con, daily_sql.DTC_LATEST if latest_only else daily_sql.DTC, window)
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


def attach_labels(
    features: pl.DataFrame, con: duckdb.DuckDBPyConnection,
    horizon_days: labels.HorizonOverride = None,
) -> pl.DataFrame:
    """Add ``fails_within__<component>`` from the store's repair orders and lead outcomes.

    The rule is :func:`pipeline.features.labels.attach_labels`'s, each component at its own
    horizon (:data:`pipeline.features.labels.HORIZON_DAYS`) unless ``horizon_days``
    overrides it; a vehicle has a component when it reports one of :data:`PART_READINGS` on
    some day.
    """
    return labels.attach_labels(features, con, horizon_days, PART_READINGS)


PART_READINGS: Final[dict[str, tuple[str, ...]]] = {
    "traction_battery": ("soh", "cell_voltage_spread", "insulation_resistance_min"),
    "lv_battery": ("crank_dip_min", "rest_voltage"),
    "brakes": ("pad_wear_max",),
}
"""Features read straight off a component's sensors: a vehicle that never reports one of them
has no such part (or none we can see) and gets no label for it. Derived features do not
count: a days-to-threshold cap or a zero exposure sum exists for every vehicle."""

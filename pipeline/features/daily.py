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
from pipeline.features.engine import POLARS_ENGINE
from pipeline.features.fault_codes import catalog_frame
from pipeline.features.labels import label_column as label_column
from pipeline.features.pad_stages import FEATURES as PAD_STAGE_FEATURES
from pipeline.features.pad_stages import pad_history, stage_changes, with_pad_stages
from pipeline.features.query import frame
from pipeline.features.vehicle_order import forward_filled, previous

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


CHUNK_VEHICLES: Final = 10_000
"""Vehicles per chunk of :func:`iter_daily_features`: a chunk's per-day aggregates and rolling
windows are what is held in memory at once, whatever the fleet size. Building 100k vehicles x
14 days chunk by chunk on the in-memory engine (:mod:`pipeline.features.engine`) peaked at
1.40-1.51 GB with 20,000 a chunk, 0.95-0.96 GB with 10,000 and 0.72-0.73 GB with 5,000,
in 10.4-10.9 s, 9.7-10.3 s and 10.7-11.7 s (on the streaming engine 10,000 had been a quarter
slower than 20,000; docs/benchmarks.md)."""
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
    aggregate = frame(con, daily_aggregate_sql(con, window), window)
    days = aggregate.select("vehicle_id", "day")
    if latest_only:
        days = days.group_by("vehicle_id").agg(pl.col("day").max())
    con.register(daily_sql.FEATURE_DAYS, days)
    try:
        outlook = frame(con, daily_sql.OUTLOOK, window).lazy()
        dtc = _dtc_features(frame(con, daily_sql.DTC, window).lazy())
    finally:
        con.unregister(daily_sql.FEATURE_DAYS)
    # With no lower bound the aggregate holds every day of the pad history: its daily
    # maximum pad reading and odometer are the history's (the same maxima of the same rows),
    # and its other days carry neither, which the history's forward fill passes over.
    history = (aggregate.select("vehicle_id", "day", reading="pad_wear_max",
                                odometer="odometer_km")
               if since is None else pad_history(con, window))
    braking = frame(con, daily_sql.BRAKING, window).lazy()
    daily = (aggregate.lazy().join(braking, on=["vehicle_id", "day"], how="left")
             .join(outlook, on=["vehicle_id", "day"], how="left"))
    feats = _with_trends(daily.sort("vehicle_id", "day"))
    feats = with_pad_stages(feats, stage_changes(history).lazy())
    feats = with_crank_margin(feats)
    if latest_only:
        feats = feats.filter(pl.col("day") == pl.col("day").max().over("vehicle_id"))
    out = feats.join(dtc, on=["vehicle_id", "day"], how="left").with_columns(
        pl.col(f"dtc_{kind}__{c}").fill_null(0)
        for c in COMPONENTS for kind in ("count", "events_30d", "age_days")
    )
    return out.sort("vehicle_id", "day").collect(engine=POLARS_ENGINE)


def daily_aggregate_sql(con: duckdb.DuckDBPyConnection, window: dict[str, object]) -> str:
    """The form of the per-day aggregate that suits the window's data: the one-pass
    :data:`~pipeline.features.daily_sql.DAILY_BY_DAY` where signal-days hold at most
    :data:`~pipeline.features.daily_sql.SPARSE_SAMPLES` samples on average, else the two-level
    :data:`~pipeline.features.daily_sql.DAILY`. Both give the same frame."""
    (density,), = frame(con, daily_sql.SAMPLES_PROBE, window).rows()
    sparse = density is None or density <= daily_sql.SPARSE_SAMPLES
    return daily_sql.DAILY_BY_DAY if sparse else daily_sql.DAILY


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


_SLOPES: Final[tuple[tuple[str, str, str, str, float | None], ...]] = (
    ("soh_slope_14d", "soh", "_x_day", TREND_WINDOW, None),
    ("crank_dip_trend_14d", "crank_dip_min", "_x_day", TREND_WINDOW, None),
    ("crank_dip_per_degree_30d", "crank_dip_min", "ambient_temp", EXPOSURE_WINDOW, None),
    ("rest_voltage_trend_14d", "rest_voltage", "_x_day", TREND_WINDOW, None),
    ("pad_wear_rate_per_100km", "pad_wear_max", "odometer_km", TREND_WINDOW, 100.0),
    *((f"pad_wear_rate_per_100km_{k}", f"pad_wear_{k}", "odometer_km", TREND_WINDOW, 100.0)
      for k in _WHEEL_KEYS),
    ("pad_wear_per_braking_energy", "pad_wear_max", "_cum_energy", TREND_WINDOW, None),
    ("soh_slope_60d", "soh", "_x_day", LONG_WINDOW, None),
    ("cell_voltage_spread_slope_60d", "cell_voltage_spread", "_x_day", LONG_WINDOW, None),
    ("pad_wear_rate_per_100km_60d", "pad_wear_max", "odometer_km", LONG_WINDOW, 100.0),
)
"""Every rolling least-squares slope of the build: (name, y, x, window, scale), where x is a
column of the frame or a helper column of :func:`_with_trends` (``_x_day``: days since 2000;
``_cum_energy``: the vehicle's braking energy so far)."""


def _with_trends(daily: pl.LazyFrame) -> pl.LazyFrame:
    """``daily`` (sorted by vehicle and day) with the trend, exposure and time-to-limit
    features.

    Built in stages of ``with_columns``: the helper columns first, then every rolling sum
    of every slope as a column of its own, then the features from them. Polars does not share
    a subexpression between the places it appears in, so one slope written as a single
    expression computed its five rolling sums up to four times each (and the per-vehicle
    ``over`` inside its x as often); as columns each is computed once, by the same kernels on
    the same inputs, so the values are the same to the bit.
    """
    odo = pl.col("odometer_km")
    energy = pl.col("braking_energy_kj_per_kg")
    helpers = daily.with_columns(
        _key(),
        (pl.col("day") - pl.date(2000, 1, 1)).dt.total_days().cast(pl.Float64).alias("_x_day"),
        energy.fill_null(0.0).cum_sum().over("vehicle_id").alias("_cum_energy"),
        previous(pl.col("day")).alias("_prev_day"),
        previous(forward_filled(odo)).alias("_prev_odo"),
        forward_filled(pl.col("pad_wear_max")).alias("_wear"),
    )
    sums = helpers.with_columns(
        *(e for i, (_, y, x, window, _) in enumerate(_SLOPES)
          for e in _slope_sums(f"_s{i}", pl.col(y), pl.col(x), window)),
        pl.when(pl.col("_wear") != previous(pl.col("_wear"))).then(odo).alias("_stage_km"),
        odo.rolling_min_by(_KEY, _by_key(LONG_WINDOW)).alias("_window_start_km"),
    )
    slopes = {name: _slope_from(f"_s{i}") * scale if scale else _slope_from(f"_s{i}")
              for i, (name, _, _, _, scale) in enumerate(_SLOPES)}
    gap = (pl.col("day") - pl.col("_prev_day")).dt.total_days()
    first = sums.with_columns(
        *(slopes[name].alias(name) for name in (
            "soh_slope_14d", "crank_dip_trend_14d", "crank_dip_per_degree_30d",
            "rest_voltage_trend_14d", "pad_wear_rate_per_100km",
            *(f"pad_wear_rate_per_100km_{k}" for k in _WHEEL_KEYS),
            "pad_wear_per_braking_energy")),
        pl.col("soh").rolling_median_by(_KEY, _by_key(EXPOSURE_WINDOW)).alias("soh_median_30d"),
        slopes["soh_slope_60d"].alias("soh_slope_60d"),
        _backward(pl.col("insulation_resistance_min"), "mean")
        .alias("insulation_resistance_mean_30d"),
        slopes["cell_voltage_spread_slope_60d"].alias("cell_voltage_spread_slope_60d"),
        slopes["pad_wear_rate_per_100km_60d"].alias("pad_wear_rate_per_100km_60d"),
        _km_in_stage().alias("pad_km_in_stage"),
        ((odo - pl.col("_prev_odo")) / gap).alias("distance_km"),
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
    temporary = [_KEY, "_x_day", "_cum_energy", "_prev_day", "_prev_odo", "_wear",
                 "_window_start_km", "_stage_km",
                 *(f"_s{i}{part}" for i in range(len(_SLOPES)) for part in _SUM_PARTS)]
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
    ).drop(temporary)


def _km_in_stage() -> pl.Expr:
    """Kilometres since the most worn pad's reading last changed, at most the long window's.

    A staged pad sensor reads 80 % from the moment the pad reaches 80 % until it reaches 90 %:
    the distance driven since the reading changed says how far into the stage the pad is.
    A change older than the window counts from the window's start, so the value never reaches
    further back than :data:`LOOKBACK_DAYS`. From :func:`_with_trends`' helper columns: the
    odometer on each day the (forward-filled) reading changed, and the window's lowest
    odometer.
    """
    stage_start = forward_filled(pl.col("_stage_km"))
    return (pl.col("odometer_km") - pl.max_horizontal(stage_start, pl.col("_window_start_km"))
            ).clip(lower_bound=0.0)


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


_SUM_PARTS: Final = ("n", "x", "y", "xy", "xx")


def _slope_sums(prefix: str, y: pl.Expr, x: pl.Expr, window: str) -> list[pl.Expr]:
    """The five backward rolling sums of a least-squares slope of ``y`` on ``x`` over the
    rows where both are known (count, x, y, xy, xx), as columns ``{prefix}n`` ...
    ``{prefix}xx`` for :func:`_slope_from`."""
    ok = y.is_not_null() & x.is_not_null()
    xv, yv = pl.when(ok).then(x), pl.when(ok).then(y)
    parts = (ok.cast(pl.Float64), xv, yv, xv * yv, xv * xv)
    return [e.fill_null(0.0).rolling_sum_by(_KEY, _by_key(window)).alias(f"{prefix}{name}")
            for name, e in zip(_SUM_PARTS, parts, strict=True)]


def _slope_from(prefix: str) -> pl.Expr:
    """The least-squares slope from :func:`_slope_sums`' columns; null when fewer than two
    points or no spread in x."""
    n, sx, sy, sxy, sxx = (pl.col(f"{prefix}{name}") for name in _SUM_PARTS)
    den = n * sxx - sx * sx
    return pl.when((n >= 2) & (den.abs() > 1e-9)).then((n * sxy - sx * sy) / den)


def _dtc_features(events: pl.LazyFrame) -> pl.LazyFrame:
    """Active codes, reports in the last 30 days and the oldest active code's age per component
    from :data:`pipeline.features.daily_sql.DTC`'s rows."""
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

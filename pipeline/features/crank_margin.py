"""The 12 V battery's cranking margin at the outlook's coldest morning.

A 12 V battery fails on a morning whose cold pulls its cranking dip below what the starter
needs. Cold lowers the dip of every battery, and the more so the higher the battery's internal
resistance, so each battery's own dip-against-temperature line says where its dip will be on a
colder morning. This module fits that line per vehicle over its recent cold starts and reads it
at the coldest minimum the regional outlook forecasts for the coming days, minus the starter's
need: the margin the battery will have left on that morning.

Why not today's dip moved along a 30-day slope (``crank_dip_at_outlook`` of the daily build):
one day's dip carries the day's noise, and a start after a few parked days reads low (the
battery discharged while the car stood), which says little about the battery's resistance. The
fit here takes only starts the day after a day with data (the car was driven and its battery
charged) and averages over the window, so its level is the battery's, not the morning's.

It is a backward window of :data:`WINDOW_DAYS` days over the daily build's rows, so a day's
value uses data up to that day only, and a ranged build equals a full one
:data:`pipeline.features.daily.LOOKBACK_DAYS` days after its start.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from pipeline.features.vehicle_order import previous

__all__ = ["COLD_START_C", "FEATURES", "MIN_LEVEL_STARTS", "MIN_SPREAD_C", "MIN_STARTS",
           "STARTER_NEED_V", "WINDOW_DAYS", "with_crank_margin"]

STARTER_NEED_V: Final = 9.6
"""The cranking voltage below which a starter or ECU drops out (the usual load-test pass
limit of a 12 V battery)."""
WINDOW_DAYS: Final = 45
"""Backward window of the per-vehicle fit: long enough to hold a spread
of morning temperatures, short enough that the battery's ageing inside it is small."""
COLD_START_C: Final = 20.0
"""Mornings at or above this air temperature are left out of the fit: a warm battery's dip
hardly moves with temperature, so those starts would flatten the line the cold needs."""
MIN_STARTS: Final = 5
"""Starts the window needs before the line's slope is trusted (fewer: the mean dip, flat)."""
MIN_SPREAD_C: Final = 1.0
"""Standard deviation of the window's morning temperatures (°C) below which the slope is not
trusted either (the mornings were all alike): the prediction is then the mean dip, flat."""
MIN_LEVEL_STARTS: Final = 3
"""Starts the window needs for any prediction at all."""
FEATURES: Final = ("crank_margin_at_outlook",)
"""The column :func:`with_crank_margin` adds (V)."""

_KEY: Final = "_crank_key"
_GAP: Final = 1_000_000


def _key() -> pl.Expr:
    """A sorted integer key, vehicle then day, with vehicles far apart, so one rolling pass
    gives each vehicle its own backward windows (``.over`` would cost a kernel per vehicle)."""
    day_number = (pl.col("day") - pl.date(2000, 1, 1)).dt.total_days().cast(pl.Int64)
    return pl.col("vehicle_id").rank("dense").cast(pl.Int64) * _GAP + day_number


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

    ``feats`` must be sorted by vehicle and day (the daily build's order, kept): the sums
    are rolling windows over that order and the day before is the row before. Each sum is a
    column of its own, computed once (as one expression, polars computed each up to four
    times, and the day gap inside every one of them), with the same kernels and inputs.
    """
    gap = (pl.col("day") - previous(pl.col("day"))).dt.total_days()
    temp, dip = pl.col("ambient_temp"), pl.col("crank_dip_min")
    ok = dip.is_not_null() & temp.is_not_null() & (temp < COLD_START_C) & (gap == 1)
    x, y = pl.when(ok).then(temp), pl.when(ok).then(dip)
    window = f"{WINDOW_DAYS}i"
    parts = {"_cm_n": ok.cast(pl.Float64), "_cm_x": x, "_cm_y": y, "_cm_xy": x * y,
             "_cm_xx": x * x}
    n, sx, sy, sxy, sxx = (pl.col(name) for name in parts)
    den = n * sxx - sx * sx  # n² times the temperatures' variance
    trusted = (n >= MIN_STARTS) & (den > (MIN_SPREAD_C ** 2) * n * n)
    slope = pl.when(trusted).then((n * sxy - sx * sy) / den).otherwise(0.0).clip(lower_bound=0.0)
    coldest = pl.min_horizontal(pl.col("outlook_min_temp_c"), pl.lit(COLD_START_C))
    enough = (n >= MIN_LEVEL_STARTS) & pl.col("outlook_min_temp_c").is_not_null()
    predicted = sy / n + slope * (coldest - sx / n)
    return (feats.with_columns(_key().alias(_KEY))
            .with_columns(e.fill_null(0.0).rolling_sum_by(_KEY, window).alias(name)
                          for name, e in parts.items())
            .with_columns(pl.when(enough).then(predicted - STARTER_NEED_V)
                          .alias("crank_margin_at_outlook"))
            .drop(_KEY, *parts))

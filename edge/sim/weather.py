"""Regional weather: every vehicle of a region lives through the same cold spells.

A region's temperature on a day is its seasonal curve (:class:`edge.sim.wear.Climate`) plus an
anomaly shared by the whole region. The anomaly behaves like an AR(1) process (persistence
0.75 a day, so a cold spell lasts several days) but is computed as a weighted sum of daily
shocks, each drawn from (weather seed, region, day) alone. So any vehicle, any process and the
forecast writer get the same value for the same day without sharing any state, whatever day
they start on.

The region's *daily minimum* (the pre-dawn low, :data:`DIURNAL_DROP_C` below the daily mean)
is what a cranking morning sees, and what the temperature outlook (``region_forecasts.csv``)
forecasts, with an error of a few tenths to about 2 °C.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import random
from dataclasses import dataclass
from typing import Final

YEAR_DAYS: Final = 365.2425
DAY_S: Final = 86_400.0
PERSISTENCE: Final = 0.75
"""Day-to-day persistence of the regional anomaly (the AR(1) coefficient)."""
SHOCK_SD_C: Final = 2.6
"""Standard deviation of one day's shock; the anomaly's own is 2.6 / sqrt(1 - 0.75²) ≈ 3.9 °C."""
DIURNAL_DROP_C: Final = 4.5
"""How far the day's minimum (early morning) lies below its mean."""
FORECAST_PAST_END_DAYS: Final = 30
"""How many days past the simulated window the outlook covers."""
_MEMORY_DAYS: Final = 30
"""Shocks older than this weigh less than 0.75^30 ≈ 0.0002 and are left out."""
_EPOCH: Final = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class Climate:
    """A region's seasonal air temperature: a yearly cosine, coldest in mid-January."""

    mean_c: float
    swing_c: float

    def seasonal_c(self, ts: float) -> float:
        """Expected daily mean temperature on the day of ``ts`` (Unix seconds)."""
        day_of_year = (ts / DAY_S) % YEAR_DAYS
        return self.mean_c - self.swing_c * math.cos(2 * math.pi * (day_of_year - 15) / YEAR_DAYS)


REGIONS: Final = {
    "north": Climate(mean_c=3.0, swing_c=14.0),
    "central": Climate(mean_c=10.0, swing_c=10.0),
    "south": Climate(mean_c=18.0, swing_c=8.0),
}


def day_number(ts: float) -> int:
    """The UTC day (days since 1970-01-01) a Unix time falls on."""
    return math.floor(ts / DAY_S)


@functools.lru_cache(maxsize=200_000)
def _shock(weather: int, region: str, day: int) -> float:
    return random.Random(f"fleetcare-weather/{weather}/{region}/{day}").gauss(0.0, SHOCK_SD_C)


@functools.lru_cache(maxsize=100_000)
def regional_anomaly_c(weather: int, region: str, day: int) -> float:
    """How much warmer (°C) than its season ``region`` is on UTC day ``day``."""
    return sum(PERSISTENCE**k * _shock(weather, region, day - k) for k in range(_MEMORY_DAYS))


def daily_mean_c(weather: int, region: str, day: int) -> float:
    """The region's mean air temperature on UTC day ``day``."""
    climate = REGIONS[region]
    return climate.seasonal_c(day * DAY_S) + regional_anomaly_c(weather, region, day)


def daily_min_c(weather: int, region: str, day: int) -> float:
    """The region's lowest air temperature on UTC day ``day`` (the cranking morning's)."""
    return daily_mean_c(weather, region, day) - DIURNAL_DROP_C


def forecast_min_c(weather: int, region: str, day: int) -> float:
    """The outlook's minimum for ``day``: the real one plus an error of 0.3 to 2 °C (sd).

    The error is drawn from its own stream, so forecasting changes nobody's weather.
    """
    rng = random.Random(f"fleetcare-forecast/{weather}/{region}/{day}")
    spread = rng.uniform(0.3, 2.0)
    return daily_min_c(weather, region, day) + rng.gauss(0.0, spread)


def forecast_rows(weather: int, regions: list[str], first: dt.date, days: int
                  ) -> list[tuple[str, str, str]]:
    """``(region, day, min_temp_c)`` rows from ``first`` for ``days`` days plus
    :data:`FORECAST_PAST_END_DAYS`, by region then day."""
    start = (first - _EPOCH).days
    rows = []
    for region in regions:
        for day in range(start, start + days + FORECAST_PAST_END_DAYS):
            date = _EPOCH + dt.timedelta(days=day)
            rows.append((region, date.isoformat(), f"{forecast_min_c(weather, region, day):.1f}"))
    return rows

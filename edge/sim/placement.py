"""Initial states that fail on schedule: how :func:`edge.sim.simulator.make_fleet` places
near-failures so that a small fleet has failures to learn from.

Each solves the wear law at the region's usual conditions for an initial value that reaches
the failure threshold after about ``days`` days; the vehicle's own weather, driving and
parked days then move the real failure day around it.
"""

from __future__ import annotations

import math
from typing import Final

from edge.sim.params import VehicleParams
from edge.sim.wear import DIP_FAILED_V, PAD_WEAR_FAILED, SOH_FAILED, crank_dip_v, soh_fade_per_day

_MEAN_KM_FACTOR: Final = math.exp(0.35**2 / 2)
"""Mean of the daily lognormal distance factor, so placements use the true mean distance."""


def soh_failing_after(params: VehicleParams, days: float) -> float:
    """Initial SoH that fades to the failure threshold after about ``days`` of usual driving.

    Solves the fade law at the region's mean temperature: with x = (100 - SoH) / 12 the knee
    makes dx/dt proportional to 1 + x², so atan(x) grows linearly in time.
    """
    climate = params.climate
    battery_c = min(45.0, max(5.0, climate.mean_c + 6.0))
    km = params.mean_km_per_day() * _MEAN_KM_FACTOR
    rate = soh_fade_per_day(100.0, battery_c, km, climate.mean_c,
                            params.model) * params.battery_ageing
    angle = math.atan((100.0 - SOH_FAILED) / 12.0) - rate * days / 12.0
    return 100.0 - 12.0 * math.tan(max(0.0, angle))


def pad_wear_failing_after(params: VehicleParams, days: float) -> float:
    """Initial max pad wear that reaches the wear limit after about ``days`` of usual driving."""
    per_day = params.mean_km_per_day() * _MEAN_KM_FACTOR * params.front_wear_per_km()
    return max(0.0, PAD_WEAR_FAILED - per_day * days)


def resistance_failing_at(params: VehicleParams, ts: float | None, margin: float) -> float:
    """12 V resistance (mΩ) at which a slightly cold morning around ``ts`` just fails the crank.

    With ``ts`` None the region's mean temperature stands in for the season. ``margin`` below 1
    leaves headroom, so the failure waits for a colder morning or a few more weeks of ageing.
    """
    climate = params.climate
    season_c = climate.mean_c if ts is None else climate.seasonal_c(ts)
    morning_c = season_c - 7.0
    amps = params.model.crank_amps
    at_zero = crank_dip_v(0.0, morning_c, amps)
    per_mohm = at_zero - crank_dip_v(1.0, morning_c, amps)
    return (at_zero - DIP_FAILED_V) / per_mohm * margin

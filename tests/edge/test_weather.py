"""Regional weather: a region's vehicles share its cold spells, and the outlook forecasts them."""

from __future__ import annotations

import datetime as dt
import statistics

from edge.sim.simulator import VehicleSpec, params_of
from edge.sim.wear import HealthModel
from edge.sim.weather import DAY_S, daily_min_c, day_number, forecast_min_c, regional_anomaly_c

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
DAYS = 200


def _mornings(spec: VehicleSpec) -> list[float]:
    model = HealthModel(params_of(spec), spec.seed, START)
    return [model.step().morning_c for _ in range(DAYS)]


def test_vehicles_of_one_region_share_the_days_anomaly_and_other_regions_do_not() -> None:
    a = _mornings(VehicleSpec("A", "ev", "north", seed=1, weather=5))
    b = _mornings(VehicleSpec("B", "ice", "north", seed=2, weather=5))
    c = _mornings(VehicleSpec("C", "ice", "north", seed=2, weather=6))  # another fleet's sky
    same = statistics.pstdev(x - y for x, y in zip(a, b, strict=True))
    other = statistics.pstdev(x - y for x, y in zip(a, c, strict=True))
    assert same < 1.5  # only where each car stands
    assert other > 3.0  # independent cold spells


def test_the_anomaly_is_a_function_of_region_and_day_alone() -> None:
    day = day_number(START) + 40
    first = regional_anomaly_c(5, "central", day)
    regional_anomaly_c.cache_clear()
    assert regional_anomaly_c(5, "central", day) == first
    lagged = [regional_anomaly_c(5, "central", d) for d in range(day, day + 400)]
    one_day = statistics.correlation(lagged[:-1], lagged[1:])
    assert 0.6 < one_day < 0.9  # cold spells last days, not weeks


def test_the_forecast_is_the_real_minimum_give_or_take_two_degrees() -> None:
    first = day_number(START)
    errors = [forecast_min_c(5, region, d) - daily_min_c(5, region, d)
              for region in ("north", "central", "south") for d in range(first, first + 300)]
    assert abs(statistics.fmean(errors)) < 0.3
    assert 0.6 < statistics.pstdev(errors) < 1.6
    assert max(abs(e) for e in errors) < 8.0


def test_the_morning_is_the_regions_minimum_where_the_car_stands() -> None:
    spec = VehicleSpec("A", "ev", "south", seed=1, weather=5)
    mornings = _mornings(spec)
    regional = [daily_min_c(5, "south", day_number(START + d * DAY_S)) for d in range(DAYS)]
    assert abs(statistics.fmean(m - r for m, r in zip(mornings, regional, strict=True))) < 0.3

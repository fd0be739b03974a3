"""The daily build gives exactly the frames of its former, slower form.

:mod:`reference_daily` keeps the build as it was before the staged rolling sums, the
``.over``-free shifts and fills and the as-of join without sorting by day; these tests hold
:func:`pipeline.features.daily.build_daily_features` to it bit for bit on a store made to
reach every branch: vehicles with dark days (gaps of one to nine days), signal-days of one
sample, NaN readings, signals a vehicle never sends, staged pad sensors that step up and are
renewed, cold mornings and a regional outlook, speed traces, fault codes and repairs, over 80
days (past the 60-day windows).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Final

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from reference_daily import reference_build
from synth_fleet import START, Car, add_dtc, add_repair_order, build_store, day

from pipeline.features.daily import build_daily_features, iter_daily_features
from pipeline.features.daily_sql import PAD_WEAR, SPEED

N_DAYS = 80
_SIGNALS = (
    "Vehicle.Powertrain.TractionBattery.StateOfHealth",
    "Vehicle.Powertrain.TractionBattery.CellVoltage.Max",
    "Vehicle.Powertrain.TractionBattery.CellVoltage.Min",
    "Vehicle.Powertrain.TractionBattery.Temperature.Max",
    "BMS_Health.InsulationResistance",
    "BCM_LowVoltage.CrankMinVoltage",
    "Vehicle.LowVoltageBattery.CurrentVoltage",
)
_ODO, _AIR = "Vehicle.TraveledDistance", "Vehicle.Exterior.AirTemperature"


def _messy(vehicles: int, seed: int) -> pl.DataFrame:
    """Per vehicle: dark days, one to three samples per signal-day (some NaN), a random
    third of the health signals missing, a rising odometer, staged pads, cold mornings."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, dt.datetime, str, float]] = []
    for v in range(vehicles):
        vid = f"M{v:02d}"
        sends = [s for s in _SIGNALS if rng.uniform() > 0.33]
        odo, wear, d = float(rng.uniform(1e3, 5e4)), float(rng.choice([0.0, 60.0, 80.0])), 0
        while d < N_DAYS:
            midnight = START + dt.timedelta(days=d)

            def put(sig: str, value: float, hour: float = 12.0, _m: dt.datetime = midnight,
                    _v: str = vid) -> None:
                rows.append((_v, _m + dt.timedelta(hours=hour), sig, value))

            odo += float(rng.uniform(0, 90))
            put(_ODO, odo)
            if rng.uniform() < 0.08:
                wear = 0.0 if wear >= 90 else wear + 10.0  # a step, or new pads at the limit
            for k, sig in enumerate(PAD_WEAR.values()):
                if rng.uniform() > 0.1:
                    put(sig, max(wear - 10.0 * (k == 3), 0.0))
            put(_AIR, float(rng.uniform(-15, 25)), 7.5)
            for sig in sends:
                for s in range(int(rng.integers(1, 4))):
                    value = np.nan if rng.uniform() < 0.03 else float(rng.normal(50, 30))
                    put(sig, value, 8.0 + s)
            if rng.uniform() < 0.3:
                for s, kmh in enumerate(rng.uniform(0, 120, int(rng.integers(2, 6)))):
                    put(SPEED, float(kmh), 9.0 + s / 3600)
            d += 1 if rng.uniform() > 0.2 else int(rng.integers(2, 10))
    return pl.DataFrame(rows, schema={"vehicle_id": pl.String, "ts": pl.Datetime("us", "UTC"),
                                      "signal": pl.String, "value": pl.Float64}, orient="row")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    return messy_store(tmp_path_factory.mktemp("equality") / "e.duckdb")


def messy_store(path: Path) -> duckdb.DuckDBPyConnection:
    """Two synthetic cars and ten of :func:`_messy`'s vehicles in three regions (one without
    forecasts), with forecasts that miss days, fault codes, a clear and a repair."""
    con = build_store(path, [Car("ev", fails={"brakes": 50}), Car("ice", ev=False)], N_DAYS)
    frame = _messy(10, seed=7)
    con.register("_messy", frame)
    con.execute("INSERT INTO telemetry SELECT vehicle_id, ts, signal, value, 'm' FROM _messy")
    con.unregister("_messy")
    for i, vid in enumerate(frame["vehicle_id"].unique().sort()):
        con.execute("INSERT INTO vehicles (vehicle_id, model, region) VALUES (?, 'EV-1', ?)",
                    [vid, ("north", "South", "nowhere")[i % 3]])
    rng = np.random.default_rng(3)
    for i in range(N_DAYS + 31):
        if rng.uniform() < 0.8:
            con.execute("INSERT INTO region_forecasts VALUES ('north', ?, ?)",
                        [day(i), float(rng.uniform(-20, 15))])
        con.execute("INSERT INTO region_forecasts VALUES ('south', ?, ?)",
                    [day(i), float(rng.uniform(-5, 20))])
    add_dtc(con, "M01", 5, "C1B00")
    add_dtc(con, "M01", 9, "P0562")
    add_dtc(con, "M01", 20, "P0562", cleared=True)
    add_dtc(con, "M03", 30, "C1B00")
    add_repair_order(con, "M03", "brakes", 40)
    add_dtc(con, "ev", 12, "P0562")
    return con


def test_the_store_reaches_the_branches(store: duckdb.DuckDBPyConnection) -> None:
    old = reference_build(store)
    assert old.height > 500
    assert old["pad_stage_days"].drop_nulls().len() > 0, "pad stages seen whole"
    assert old["crank_margin_at_outlook"].drop_nulls().len() > 0, "margins from cold starts"
    assert old["braking_energy_30d"].max() > 0
    assert (old["dtc_count__brakes"] > 0).any() and (old["dtc_count__lv_battery"] > 0).any()
    assert old["soh"].is_nan().any(), "a NaN reading reaches the features"
    days = old.group_by("vehicle_id").agg(pl.col("day").diff().max().dt.total_days())
    assert days["day"].max() > 1, "dark days"


@pytest.mark.parametrize("window", [
    {}, {"since": START + dt.timedelta(days=20)}, {"until": START + dt.timedelta(days=55)},
    {"since": START + dt.timedelta(days=3), "until": START + dt.timedelta(days=70, hours=8)},
])
def test_the_build_equals_its_former_form(store: duckdb.DuckDBPyConnection,
                                          window: dict[str, dt.datetime]) -> None:
    for latest_only in (False, True):
        for vehicles in (None, ("M02", "M07")):
            new = build_daily_features(store, vehicles=vehicles, latest_only=latest_only,
                                       **window)
            old = reference_build(store, vehicles=vehicles, latest_only=latest_only, **window)
            _assert_same(new, old)


def test_the_chunked_build_equals_the_former_one_shot_build(
        store: duckdb.DuckDBPyConnection) -> None:
    since = START + dt.timedelta(days=10)
    old = reference_build(store, since=since)
    for size in (1, 4, 100):
        _assert_same(pl.concat(iter_daily_features(store, since=since, chunk_vehicles=size)),
                     old)


_REFORMED: Final = ("pad_km_to_limit", "pad_days_to_limit", "pad_km_left_60d",
                    "pad_days_left_60d", "pad_days_left_stage", "pad_km_left_stage")
"""Divisions of the pad features by literals whose last binary place is not the same in both
forms, on a row or two here (a relative 1e-16): how polars evaluates them (the former build
fused the rates' whole expressions, the slope times 100, into the divisions by 100; a division
by a literal may run as a product with its reciprocal) depends on the plan and the frame, not
on the formula. They are held to 1e-12; every other column is exact."""


def _assert_same(new: pl.DataFrame, old: pl.DataFrame) -> None:
    assert_frame_equal(new.drop(_REFORMED), old.drop(_REFORMED), check_exact=True)
    assert_frame_equal(new.select(_REFORMED), old.select(_REFORMED), rel_tol=1e-12, abs_tol=0.0)

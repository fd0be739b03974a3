"""Both forms of the daily aggregate give exactly the former single-level one's frame.

:data:`pipeline.features.daily_sql.DAILY` (two levels) and
:data:`pipeline.features.daily_sql.DAILY_BY_DAY` (one pass, for sparse stores) take one- and
two-sample medians from the minimum and maximum and run ``median`` only on larger
signal-days; these tests hold both to the former single-level form
(``reference_daily.DAILY_ONE_PASS``) bit for bit on a store where signal-days have zero to
six samples, some readings are NaN (``value`` is NOT NULL in the store, so NaN is the missing
reading that can reach an aggregate), vehicles lack signals and some days have no health
signal at all.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from reference_daily import DAILY_ONE_PASS
from synth_fleet import START, Car, build_store

from pipeline.features.daily import _time_window, daily_aggregate_sql
from pipeline.features.daily_sql import DAILY, DAILY_BY_DAY, PAD_WEAR, SPEED

FORMS = pytest.mark.parametrize("form", [DAILY, DAILY_BY_DAY], ids=["two_level", "by_day"])

_SIGNALS = (
    "Vehicle.Powertrain.TractionBattery.StateOfHealth",
    "Vehicle.Powertrain.TractionBattery.CellVoltage.Max",
    "Vehicle.Powertrain.TractionBattery.CellVoltage.Min",
    "Vehicle.Powertrain.TractionBattery.Temperature.Max",
    "BMS_Health.InsulationResistance",
    "BCM_LowVoltage.CrankMinVoltage",
    "Event.Crank.MinVoltage",
    "Vehicle.LowVoltageBattery.CurrentVoltage",
    "Vehicle.TraveledDistance",
    "Vehicle.Exterior.AirTemperature",
    *PAD_WEAR.values(),
)


def _messy_telemetry(vehicles: int, days: int, seed: int) -> pl.DataFrame:
    """Random full-precision readings: per (vehicle, day, signal) zero to six samples (some
    NaN), each vehicle lacking a random third of the signals, some days only speed."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, dt.datetime, str, float]] = []
    for v in range(vehicles):
        vid = f"M{v:03d}"
        sends = [s for s in _SIGNALS if rng.uniform() > 0.33]
        for d in range(days):
            midnight = START + dt.timedelta(days=d)
            rows.append((vid, midnight + dt.timedelta(hours=6), SPEED, float(rng.uniform(0, 90))))
            if rng.uniform() < 0.15:
                continue  # a day with speed only: still a row, every health value null
            for sig in sends:
                for _ in range(int(rng.integers(0, 7))):
                    at = midnight + dt.timedelta(microseconds=int(rng.integers(0, 86_400_000_000)))
                    value = np.nan if rng.uniform() < 0.05 else float(rng.normal(50, 30))
                    rows.append((vid, at, sig, value))
    return pl.DataFrame(rows, schema={"vehicle_id": pl.String, "ts": pl.Datetime("us", "UTC"),
                                      "signal": pl.String, "value": pl.Float64}, orient="row")


def _daily(con: duckdb.DuckDBPyConnection, sql: str, **window: object) -> pl.DataFrame:
    params = {**_time_window(None, None), "first": "", "last": "\U0010ffff", **window}
    return con.sql(sql, params=params).pl().sort("vehicle_id", "day")


def _store(tmp_path: Path, seed: int) -> duckdb.DuckDBPyConnection:
    tmp_path.mkdir(parents=True, exist_ok=True)
    con = build_store(tmp_path / "d.duckdb", [Car("ev"), Car("ice", ev=False)], 5)
    frame = _messy_telemetry(12, 6, seed)
    con.register("_messy", frame)
    con.execute("INSERT INTO telemetry SELECT vehicle_id, ts, signal, value, 'messy' FROM _messy")
    con.unregister("_messy")
    return con


@FORMS
def test_each_form_of_the_daily_aggregate_equals_the_single_level_one(
        tmp_path: Path, form: str) -> None:
    for seed in range(3):
        con = _store(tmp_path / str(seed), seed)
        new, old = _daily(con, form), _daily(con, DAILY_ONE_PASS)
        assert new.height == old.height > 70
        assert_frame_equal(new, old, check_exact=True)
        con.close()


def test_the_store_has_what_the_equality_must_cover(tmp_path: Path) -> None:
    """Several samples per signal-day, one- and two-sample days, NaNs, vehicle-days with no
    health signal: the cases where a shortcut could differ from ``median``."""
    con = _store(tmp_path, 0)
    sizes = con.sql(
        "SELECT count(value) AS n, count(*) FILTER (WHERE isnan(value)) AS nans FROM telemetry"
        " WHERE msg_id = 'messy' AND signal <> $speed GROUP BY vehicle_id, ts::DATE, signal",
        params={"speed": SPEED}).pl()
    assert {1, 2, 3, 4, 5}.issubset(set(sizes["n"].to_list()))
    assert sizes["nans"].sum() > 0
    old = _daily(con, DAILY_ONE_PASS)
    assert old.filter(pl.all_horizontal(pl.exclude("vehicle_id", "day").is_null())).height > 0


@FORMS
def test_the_window_and_vehicle_range_bound_both_alike(tmp_path: Path, form: str) -> None:
    con = _store(tmp_path, 1)
    window = {"since": START + dt.timedelta(days=1, hours=7),
              "until": START + dt.timedelta(days=4, hours=3), "first": "M002", "last": "M007"}
    new, old = _daily(con, form, **window), _daily(con, DAILY_ONE_PASS, **window)
    assert set(new["vehicle_id"]) == {f"M{i:03d}" for i in range(2, 8)}
    assert_frame_equal(new, old, check_exact=True)


def _uniform_store(tmp_path: Path, samples: int) -> duckdb.DuckDBPyConnection:
    """Two vehicles x four days x every signal, ``samples`` readings per signal-day."""
    con = build_store(tmp_path / f"u{samples}.duckdb", [], 0)
    rows = [(f"U{v}", START + dt.timedelta(days=d, hours=1 + i), sig, float(v + d + i))
            for v in range(2) for d in range(4) for sig in _SIGNALS for i in range(samples)]
    con.executemany("INSERT INTO telemetry VALUES (?, ?, ?, ?, 'uniform')", rows)
    return con


@pytest.mark.parametrize(("samples", "form"), [(1, DAILY_BY_DAY), (2, DAILY_BY_DAY),
                                               (3, DAILY), (8, DAILY)])
def test_the_build_picks_the_form_by_samples_per_signal_day(
        tmp_path: Path, samples: int, form: str) -> None:
    con = _uniform_store(tmp_path, samples)
    window = {**_time_window(None, None), "first": "", "last": "\U0010ffff"}
    assert daily_aggregate_sql(con, window) is form
    assert_frame_equal(_daily(con, form), _daily(con, DAILY_ONE_PASS), check_exact=True)

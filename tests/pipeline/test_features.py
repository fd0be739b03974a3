"""Daily features are point-in-time; labels say 'fails within the horizon' and nothing more."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from synth_fleet import START, Car, add_dtc, add_telemetry, build_store, day

from pipeline.features.daily import (
    LOOKBACK_DAYS,
    attach_labels,
    build_daily_features,
    iter_daily_features,
    label_column,
    vehicle_ranges,
)


def _row(frame: pl.DataFrame, vehicle: str, i: int) -> dict[str, Any]:
    """One vehicle-day of features; values are compared with numbers, so typed loosely."""
    return frame.filter((pl.col("vehicle_id") == vehicle) & (pl.col("day") == day(i))).row(
        0, named=True)


def test_one_row_per_vehicle_day_with_the_expected_signals(tmp_path: Path) -> None:
    con = build_store(tmp_path / "f.duckdb", [Car("ev"), Car("ice", ev=False)], 20)
    feats = build_daily_features(con)
    assert feats.height == 40
    assert feats.select("vehicle_id", "day").is_duplicated().sum() == 0
    assert feats.schema["day"] == pl.Date
    ev, ice = _row(feats, "ev", 10), _row(feats, "ice", 10)
    assert 90 < ev["soh"] < 100
    assert ice["soh"] is None
    assert 25 <= ev["distance_km"] <= 70
    assert abs(ev["distance_km"] - _row(feats, "ev", 11)["distance_km"]) < 1e-6
    assert ev["pad_wear_rate_per_100km"] > 0
    assert 10 < ev["crank_dip_min"] < 11
    assert ev["cell_voltage_spread"] > 0


def test_trends_pick_up_a_degrading_component(tmp_path: Path) -> None:
    cars = [Car("sick", fails={"traction_battery": 40, "lv_battery": 40}), Car("ok")]
    con = build_store(tmp_path / "f.duckdb", cars, 60)
    feats = build_daily_features(con)
    sick, ok = _row(feats, "sick", 38), _row(feats, "ok", 38)
    assert sick["soh_slope_14d"] < -0.3 < ok["soh_slope_14d"]
    assert sick["crank_dip_trend_14d"] < ok["crank_dip_trend_14d"]
    assert _row(feats, "sick", 0)["soh_slope_14d"] is None


def test_features_of_a_day_ignore_everything_after_it(tmp_path: Path) -> None:
    car = Car("ev", fails={"brakes": 50})
    con = build_store(tmp_path / "f.duckdb", [car], 30)
    add_dtc(con, "ev", 12, "C1B00")
    _add_speed(con, "ev", 20, [50.0, 20.0])
    before = build_daily_features(con)
    add_telemetry(con, car, range(30, 45))
    _add_speed(con, "ev", 30, [90.0, 0.0])
    add_dtc(con, "ev", 30, "C1B00", cleared=True)
    add_dtc(con, "ev", 31, "P0562")
    add_dtc(con, "ev", 33, "C1B00", cleared=True)
    after = build_daily_features(con).filter(pl.col("day") <= day(29))
    assert_frame_equal(before, after)


def test_fault_codes_count_while_active_per_component(tmp_path: Path) -> None:
    con = build_store(tmp_path / "f.duckdb", [Car("ev")], 30)
    add_dtc(con, "ev", 5, "c1b00")
    add_dtc(con, "ev", 5, "P0562")
    add_dtc(con, "ev", 8, "P0562", cleared=True)
    add_dtc(con, "ev", 5, "P0300")
    feats = build_daily_features(con)
    assert _row(feats, "ev", 4)["dtc_count__brakes"] == 0
    assert _row(feats, "ev", 5)["dtc_count__brakes"] == 1
    assert _row(feats, "ev", 7)["dtc_count__lv_battery"] == 1
    assert _row(feats, "ev", 8)["dtc_count__lv_battery"] == 0
    assert _row(feats, "ev", 29)["dtc_count__brakes"] == 1, "active until cleared"
    assert _row(feats, "ev", 6)["dtc_count__traction_battery"] == 0


def test_labels_horizon_after_failure_and_missing_component(tmp_path: Path) -> None:
    sick = Car("sick", fails={"brakes": 40})
    con = build_store(tmp_path / "f.duckdb", [sick, Car("ice", ev=False)], 60)
    add_telemetry(con, sick, range(41, 45))
    labels = attach_labels(build_daily_features(con), con, horizon_days=10)
    brakes = label_column("brakes")
    assert _row(labels, "sick", 29)[brakes] is False
    assert _row(labels, "sick", 30)[brakes] is True
    assert _row(labels, "sick", 39)[brakes] is True
    assert _row(labels, "sick", 40)[brakes] is None, "the failure day: already broken"
    assert _row(labels, "sick", 41)[brakes] is None, "the new pads' horizon runs past the data"
    assert _row(labels, "ice", 10)[label_column("traction_battery")] is None
    assert _row(labels, "ice", 49)[brakes] is False
    assert _row(labels, "ice", 50)[brakes] is None, "horizon runs past the data"
    assert _row(labels, "sick", 10)[label_column("lv_battery")] is False


def _add_speed(con: duckdb.DuckDBPyConnection, vehicle: str, i: int, kmh: list[float]) -> None:
    """Speed samples one second apart at 08:00 UTC on day index ``i``."""
    t0 = START + dt.timedelta(days=i, hours=8)
    frame = pl.DataFrame({"vehicle_id": vehicle,
                          "ts": [t0 + dt.timedelta(seconds=s) for s in range(len(kmh))],
                          "signal": "Vehicle.Speed", "value": kmh, "msg_id": "m"})
    con.register("_speed", frame)
    con.execute("INSERT INTO telemetry SELECT vehicle_id, ts, signal, value, msg_id FROM _speed")
    con.unregister("_speed")


def test_per_wheel_wear_braking_energy_and_distance_to_the_limit(tmp_path: Path) -> None:
    con = build_store(tmp_path / "f.duckdb", [Car("ev", fails={"brakes": 50})], 30)
    _add_speed(con, "ev", 10, [72.0, 36.0, 36.0, 0.0, 18.0])
    feats = build_daily_features(con)
    r = _row(feats, "ev", 20)
    assert r["pad_wear_fl"] > r["pad_wear_fr"] > r["pad_wear_rl"] > r["pad_wear_rr"]
    assert r["pad_wear_max"] == pytest.approx(r["pad_wear_fl"])
    assert r["pad_wear_rate_per_100km_fl"] > 0
    km_left = (100 - r["pad_wear_max"]) / (r["pad_wear_rate_per_100km"] / 100)
    assert r["pad_km_to_limit"] == pytest.approx(km_left)
    assert 0 < r["pad_days_to_limit"] < 3650
    # 72 -> 36 -> 36 -> 0 km/h: (20² - 10²)/2 + 10²/2 = 200 J/kg; the rise to 18 km/h is no braking
    assert _row(feats, "ev", 10)["braking_energy_kj_per_kg"] == pytest.approx(0.2)
    assert _row(feats, "ev", 9)["braking_energy_30d"] == 0
    assert _row(feats, "ev", 25)["braking_energy_30d"] == pytest.approx(0.2)


def test_heat_exposure_and_days_to_end_of_life(tmp_path: Path) -> None:
    con = build_store(tmp_path / "f.duckdb", [Car("sick", fails={"traction_battery": 40}),
                                              Car("ok")], 40)
    feats = build_daily_features(con)
    sick, ok = _row(feats, "sick", 30), _row(feats, "ok", 30)
    assert sick["soh_days_to_threshold"] < 30 < ok["soh_days_to_threshold"]
    assert 20 < sick["cell_temp_mean_30d"] < 35
    assert sick["hot_days_30d"] == 0


def test_fault_code_recurrence_and_age_restart_after_a_clear(tmp_path: Path) -> None:
    con = build_store(tmp_path / "f.duckdb", [Car("ev")], 40)
    for i in (5, 7):
        add_dtc(con, "ev", i, "C1B00", status="pending" if i == 5 else "stored")
    add_dtc(con, "ev", 9, "C1B00", cleared=True)
    add_dtc(con, "ev", 20, "C1B00")
    feats = build_daily_features(con)
    assert _row(feats, "ev", 8)["dtc_age_days__brakes"] == 3
    assert _row(feats, "ev", 8)["dtc_events_30d__brakes"] == 2
    assert _row(feats, "ev", 12)["dtc_count__brakes"] == 0
    assert _row(feats, "ev", 12)["dtc_age_days__brakes"] == 0
    assert _row(feats, "ev", 25)["dtc_age_days__brakes"] == 5, "counted from the re-report"
    assert _row(feats, "ev", 25)["dtc_events_30d__brakes"] == 3
    assert _row(feats, "ev", 39)["dtc_events_30d__brakes"] == 1, "older reports age out"


def test_a_bounded_build_matches_the_full_one_past_the_lookback(tmp_path: Path) -> None:
    con = build_store(tmp_path / "f.duckdb", [Car("ev", fails={"brakes": 110}), Car("ice",
                                                                               ev=False)], 110)
    add_dtc(con, "ev", 3, "C1B00")
    _add_speed(con, "ev", 100, [60.0, 30.0])
    full = build_daily_features(con)
    since = START + dt.timedelta(days=20)
    part = build_daily_features(con, since=since)
    assert part["day"].min() == day(20)
    keep = pl.col("day") >= day(20 + LOOKBACK_DAYS)
    assert_frame_equal(full.filter(keep), part.filter(keep))
    assert part.filter(keep).height == 2 * (110 - 20 - LOOKBACK_DAYS)


def _add_forecasts(con: duckdb.DuckDBPyConnection, region: str,
                   temps: dict[int, float]) -> None:
    for i, temp in temps.items():
        con.execute("INSERT INTO region_forecasts VALUES (?, ?, ?)", [region, day(i), temp])


def _add_cranks(con: duckdb.DuckDBPyConnection, vehicle: str,
                by_day: dict[int, tuple[float, float]]) -> None:
    """Replace the vehicle's crank dip and air temperature on each day by (dip, air °C)."""
    for i, (dip, air) in by_day.items():
        ts = START + dt.timedelta(days=i, hours=8)
        for signal, value in (("BCM_LowVoltage.CrankMinVoltage", dip),
                              ("Vehicle.Exterior.AirTemperature", air)):
            con.execute("DELETE FROM telemetry WHERE vehicle_id = ? AND signal = ?"
                        " AND CAST(timezone('UTC', ts) AS DATE) = ?", [vehicle, signal, day(i)])
            con.execute("INSERT INTO telemetry VALUES (?, ?, ?, ?, 'm')",
                        [vehicle, ts, signal, value])


def test_the_outlook_is_the_coldest_forecast_morning_of_the_next_30_days(tmp_path: Path
                                                                           ) -> None:
    con = build_store(tmp_path / "f.duckdb", [Car("n", region="north"),
                                              Car("s", region="south")], 40)
    _add_forecasts(con, "north", {5: 2.0, 20: -9.0, 35: -20.0, 60: -30.0})
    _add_forecasts(con, "South", {6: 15.0})
    feats = build_daily_features(con)
    assert _row(feats, "n", 4)["outlook_min_temp_c"] == -9.0  # day 35 is 31 days ahead
    assert _row(feats, "n", 5)["outlook_min_temp_c"] == -20.0  # its own day is not ahead
    assert _row(feats, "n", 36)["outlook_min_temp_c"] == -30.0
    assert _row(feats, "s", 0)["outlook_min_temp_c"] == 15.0  # regions match in any case
    assert _row(feats, "s", 6)["outlook_min_temp_c"] is None


def test_a_battery_that_weakens_with_cold_is_projected_onto_the_cold_morning_ahead(
        tmp_path: Path) -> None:
    con = build_store(tmp_path / "f.duckdb", [Car("weak"), Car("strong")], 30)
    airs = {i: 10.0 - (i % 7) for i in range(30)}
    _add_cranks(con, "weak", {i: (10.0 + 0.05 * (t - 10.0), t) for i, t in airs.items()})
    _add_cranks(con, "strong", {i: (11.0 + 0.01 * (t - 10.0), t) for i, t in airs.items()})
    _add_forecasts(con, "north", {29: -10.0})
    feats = build_daily_features(con)
    weak, strong = _row(feats, "weak", 21), _row(feats, "strong", 21)
    assert weak["crank_dip_per_degree_30d"] == pytest.approx(0.05)
    assert strong["crank_dip_per_degree_30d"] == pytest.approx(0.01)
    cooling = -10.0 - weak["ambient_temp"]
    assert weak["crank_dip_at_outlook"] == pytest.approx(weak["crank_dip_min"] + 0.05 * cooling)
    assert (weak["crank_dip_min"] - weak["crank_dip_at_outlook"]
            > 4 * (strong["crank_dip_min"] - strong["crank_dip_at_outlook"]))
    no_outlook = _row(feats, "weak", 29)
    assert no_outlook["outlook_min_temp_c"] is None and no_outlook["crank_dip_at_outlook"] is None


def test_a_staged_pad_sensor_is_read_by_the_distance_since_it_last_moved(tmp_path: Path
                                                                         ) -> None:
    con = build_store(tmp_path / "f.duckdb", [Car("ev")], 90)
    odo = {i: 10_000.0 + 50.0 * i for i in range(90)}
    con.execute("DELETE FROM telemetry WHERE signal LIKE '%PadWear' OR signal ="
                " 'Vehicle.TraveledDistance'")
    for i in range(90):
        ts = START + dt.timedelta(days=i, hours=8)
        stage = 60.0 + 10.0 * (i // 30)  # 10 % in 30 days (1,500 km), in stages: 60, 70, 80
        con.execute("INSERT INTO telemetry VALUES ('ev', ?, ?, ?, 'm')",
                    [ts, "Vehicle.Chassis.Axle.Row1.Wheel.Left.Brake.PadWear", stage])
        con.execute("INSERT INTO telemetry VALUES ('ev', ?, 'Vehicle.TraveledDistance', ?,"
                    " 'm')", [ts, odo[i]])
    feats = build_daily_features(con)
    assert _row(feats, "ev", 29)["pad_km_in_stage"] == pytest.approx(29 * 50.0)
    assert _row(feats, "ev", 30)["pad_km_in_stage"] == 0.0
    assert _row(feats, "ev", 75)["pad_km_in_stage"] == pytest.approx(15 * 50.0)
    late = _row(feats, "ev", 75)
    assert late["pad_wear_rate_per_100km_60d"] == pytest.approx(10 / 15, rel=0.15)
    expected_km = (100.0 - 80.0) / (late["pad_wear_rate_per_100km_60d"] / 100.0) - 750.0
    assert late["pad_km_left_60d"] == pytest.approx(expected_km)
    assert late["pad_days_left_60d"] == pytest.approx(expected_km / 50.0, rel=0.01)


def test_the_chunked_build_equals_the_one_shot_build(tmp_path: Path) -> None:
    cars = [Car("ev", fails={"brakes": 40}), Car("ice", ev=False), Car("ev2"), Car("b3")]
    con = build_store(tmp_path / "f.duckdb", cars, 40)
    add_dtc(con, "ev", 3, "C1B00")
    _add_speed(con, "ev2", 30, [60.0, 30.0])
    since = START + dt.timedelta(days=5)
    full = build_daily_features(con, since=since)
    assert vehicle_ranges(con, 3) == [("b3", "ev2"), ("ice", "ice")]
    for size in (1, 3, 4):
        chunks = list(iter_daily_features(con, since=since, chunk_vehicles=size))
        assert len(chunks) == -(-4 // size)
        assert_frame_equal(pl.concat(chunks), full)


def test_the_latest_only_build_equals_the_full_builds_latest_rows(tmp_path: Path) -> None:
    cars = [Car("ev", fails={"brakes": 30}), Car("ice", ev=False), Car("ev2"), Car("b3")]
    con = build_store(tmp_path / "f.duckdb", cars, 40)
    add_dtc(con, "ev", 3, "C1B00")
    add_dtc(con, "ev2", 38, "C1B00")
    _add_speed(con, "ev2", 39, [60.0, 30.0])
    _add_forecasts(con, "north", {35: -4.0, 45: -12.0})
    for until, since in ((None, None), (START + dt.timedelta(days=36), START)):
        full = build_daily_features(con, until=until, since=since)
        latest = full.filter(pl.col("day") == pl.col("day").max().over("vehicle_id"))
        assert latest["day"].n_unique() == 2, "one car stopped sending early"
        assert_frame_equal(build_daily_features(con, until=until, since=since,
                                                latest_only=True), latest)
        assert_frame_equal(build_daily_features(con, until=until, since=since,
                                                vehicles=("b3", "ev2"), latest_only=True),
                           latest.filter(pl.col("vehicle_id") <= "ev2"))

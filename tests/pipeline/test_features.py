"""Daily features are point-in-time; labels say 'fails within the horizon' and nothing more."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal
from synth_fleet import Car, add_dtc, add_telemetry, build_store, day

from pipeline.features import attach_labels, build_daily_features, label_column


def _row(frame: pl.DataFrame, vehicle: str, i: int) -> dict[str, object]:
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
    before = build_daily_features(con)
    add_telemetry(con, car, range(30, 45))
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
    assert _row(labels, "sick", 40)[brakes] is True
    assert _row(labels, "sick", 41)[brakes] is None, "after the failure: not trainable"
    assert _row(labels, "ice", 10)[label_column("traction_battery")] is None
    assert _row(labels, "ice", 50)[brakes] is False
    assert _row(labels, "ice", 51)[brakes] is None, "horizon runs past the simulation"
    assert _row(labels, "sick", 10)[label_column("lv_battery")] is False

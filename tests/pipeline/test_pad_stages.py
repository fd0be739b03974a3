"""The pad's place in its sensor stage: the last whole stage's days set the pace of the rest."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from synth_fleet import START, Car, build_store, day

from pipeline.features.daily import build_daily_features, model_features
from pipeline.features.pad_stages import FEATURES

FRONT_LEFT = "Vehicle.Chassis.Axle.Row1.Wheel.Left.Brake.PadWear"
REAR_RIGHT = "Vehicle.Chassis.Axle.Row2.Wheel.Right.Brake.PadWear"
ODOMETER = "Vehicle.TraveledDistance"


def _stage(i: int) -> float:
    """The front-left reading of day ``i``: 60 until day 20, 70 to day 70, 80 to day 120, 90
    to day 150, new pads (0) from day 150 and their first step, to 10, on day 180."""
    if i >= 180:
        return 10.0
    if i >= 150:
        return 0.0
    return 60.0 + 10.0 * sum(i >= s for s in (20, 70, 120))


def _store(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = build_store(tmp_path / "f.duckdb", [Car("ev")], 200)
    con.execute("DELETE FROM telemetry WHERE signal LIKE '%PadWear' OR signal = ?", [ODOMETER])
    for i in range(200):
        ts = START + dt.timedelta(days=i, hours=8)
        con.execute("INSERT INTO telemetry VALUES ('ev', ?, ?, ?, 'm')",
                    [ts, ODOMETER, 10_000.0 + 50.0 * i])  # 50 km a day
        con.execute("INSERT INTO telemetry VALUES ('ev', ?, ?, ?, 'm')", [ts, FRONT_LEFT,
                                                                          _stage(i)])
        # a less worn wheel: the most worn pad's reading is the one that counts
        con.execute("INSERT INTO telemetry VALUES ('ev', ?, ?, 0.0, 'm')", [ts, REAR_RIGHT])
    return con


def _at(frame: pl.DataFrame, i: int) -> tuple[Any, Any, Any]:
    row = frame.filter(pl.col("day") == day(i)).row(0, named=True)
    return row["pad_stage_days"], row["pad_days_in_stage"], row["pad_days_left_stage"]


def _km_left(frame: pl.DataFrame, i: int) -> Any:
    return frame.filter(pl.col("day") == day(i)).row(0, named=True)["pad_km_left_stage"]


def test_days_left_are_the_stages_to_go_at_the_last_stages_pace(tmp_path: Path) -> None:
    feats = build_daily_features(_store(tmp_path))
    # no whole stage seen yet: before the first step, and in the stage it began
    assert _at(feats, 10) == (None, None, None)
    assert _at(feats, 30) == (None, None, None)
    # stage 70 took 50 days (days 20 to 70); at 80, two stages to go: 2 x 50 - 20 days in it
    assert _at(feats, 90) == (50.0, 20.0, 80.0)
    assert _at(feats, 120) == (50.0, 0.0, 50.0)
    assert _at(feats, 130) == (50.0, 10.0, 40.0)
    # behind its pace: 90 for 29 days against a 50-day stage, one stage to go
    assert _at(feats, 149) == (50.0, 29.0, 21.0)
    # the same in km: stage 70 took 2,500 km; at 80, 2 x 2,500 - 1,000 km driven in it
    assert _km_left(feats, 90) == pytest.approx(4000.0)
    assert _km_left(feats, 130) == pytest.approx(2000.0)
    assert _km_left(feats, 30) is None


def test_new_pads_start_over_from_the_renewal(tmp_path: Path) -> None:
    feats = build_daily_features(_store(tmp_path))
    # after the drop to 0 the old pads' stages say nothing
    assert _at(feats, 150) == (None, None, None)
    assert _at(feats, 179) == (None, None, None)
    # the new pads' first stage ran from the renewal (day 150) to their first step (day 180);
    # at 10, nine stages of 30 days to go, 5 days into this one
    assert _at(feats, 185) == (30.0, 5.0, 9 * 30.0 - 5.0)
    assert _km_left(feats, 185) == pytest.approx(9 * 1500.0 - 250.0)


def test_a_bounded_build_still_sees_the_steps_before_its_window(tmp_path: Path) -> None:
    con = _store(tmp_path)
    part = build_daily_features(con, since=START + dt.timedelta(days=100),
                                until=START + dt.timedelta(days=135, hours=12))
    assert part["day"].min() == day(100)
    assert _at(part, 100) == (50.0, 30.0, 70.0)
    assert _at(part, 130) == (50.0, 10.0, 40.0)
    # point-in-time: the step of day 120 is not known to a build that ends before it
    early = build_daily_features(con, until=START + dt.timedelta(days=110, hours=12))
    assert _at(early, 110) == (50.0, 40.0, 60.0)


def test_the_brake_model_sees_the_stage_features() -> None:
    assert set(FEATURES) <= set(model_features("brakes"))
    assert not set(FEATURES) & set(model_features("lv_battery"))


@pytest.mark.parametrize("name", FEATURES)
def test_each_stage_feature_is_from_the_pad_sensors_and_the_odometer_only(name: str) -> None:
    from pipeline.features.inputs import FEATURE_SIGNALS

    pads = {FRONT_LEFT, REAR_RIGHT, "Vehicle.Chassis.Axle.Row1.Wheel.Right.Brake.PadWear",
            "Vehicle.Chassis.Axle.Row2.Wheel.Left.Brake.PadWear"}
    expected = pads | {ODOMETER} if name.startswith("pad_km") else pads
    assert set(FEATURE_SIGNALS[name]) == expected

"""The 12 V cranking margin at the outlook's coldest morning, on a hand-made store: a battery's
own dip-against-temperature line, read at the forecast low."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from synth_fleet import START, Car, build_store, day

from pipeline.features.crank_margin import FEATURES, STARTER_NEED_V
from pipeline.features.daily import build_daily_features, model_features
from pipeline.features.inputs import FEATURE_SIGNALS

DIP = "BCM_LowVoltage.CrankMinVoltage"
AIR = "Vehicle.Exterior.AirTemperature"
N_DAYS = 90


def _air(i: int) -> float:
    """Day ``i``'s morning: 10 °C down to 1 °C and back up, a ten-day cycle."""
    return 10.0 - abs(i % 18 - 9)


def _dip(i: int) -> float:
    """A battery whose dip loses 0.05 V per degree of cold: 10.5 V at 0 °C."""
    return 10.5 + 0.05 * _air(i)


def _set(con: duckdb.DuckDBPyConnection, i: int, signal: str, value: float) -> None:
    con.execute("DELETE FROM telemetry WHERE vehicle_id = 'n' AND signal = ?"
                " AND CAST(timezone('UTC', ts) AS DATE) = ?", [signal, day(i)])
    con.execute("INSERT INTO telemetry VALUES ('n', ?, ?, ?, 'm')",
                [START + dt.timedelta(days=i, hours=8), signal, value])


def _store(tmp_path: Path, dark: tuple[int, ...] = ()) -> duckdb.DuckDBPyConnection:
    """One car whose starts lie on :func:`_dip`'s line, no data on the ``dark`` days, and a
    forecast low of -10 °C on day 50 (every other forecast day is warm)."""
    con = build_store(tmp_path / "f.duckdb", [Car("n", region="north")], N_DAYS)
    for i in range(N_DAYS):
        _set(con, i, DIP, _dip(i))
        _set(con, i, AIR, _air(i))
    for i in dark:
        con.execute("DELETE FROM telemetry WHERE vehicle_id = 'n'"
                    " AND CAST(timezone('UTC', ts) AS DATE) = ?", [day(i)])
    for i in range(N_DAYS + 31):
        con.execute("INSERT INTO region_forecasts VALUES ('north', ?, ?)",
                    [day(i), -10.0 if i == 50 else 15.0])
    return con


def _margin(frame: pl.DataFrame, i: int) -> Any:
    return frame.filter(pl.col("day") == day(i)).row(0, named=True)["crank_margin_at_outlook"]


def test_the_margin_is_the_batterys_own_line_read_at_the_forecast_low(tmp_path: Path) -> None:
    feats = build_daily_features(_store(tmp_path))
    # day 45: the outlook (days 46 to 75) holds the -10 °C morning of day 50
    assert _margin(feats, 45) == pytest.approx(10.5 - 0.5 - STARTER_NEED_V)
    # day 50 itself is not ahead: the outlook's low is 15 °C, and the line stops at 20
    assert _margin(feats, 50) == pytest.approx(
        10.5 + 0.05 * 15.0 - STARTER_NEED_V)
    # too few starts for a line on the first days
    assert _margin(feats, 1) is None


def test_a_start_after_days_without_data_stays_out_of_the_line(tmp_path: Path) -> None:
    con = _store(tmp_path, dark=(38, 39, 40))
    _set(con, 41, DIP, 8.0)  # a battery drained by three parked days starts low
    feats = build_daily_features(con)
    assert feats.filter(pl.col("day") == day(41))["crank_dip_min"].item() == 8.0
    assert _margin(feats, 45) == pytest.approx(10.5 - 0.5 - STARTER_NEED_V)


def test_a_dip_that_rises_with_the_cold_is_not_extrapolated(tmp_path: Path) -> None:
    con = _store(tmp_path)
    for i in range(N_DAYS):
        _set(con, i, DIP, 11.0 - 0.05 * _air(i))  # ageing outran the season
    mean_dip = sum(11.0 - 0.05 * _air(i) for i in range(1, 46)) / 45  # day 0 has no day before
    assert _margin(build_daily_features(con), 45) == pytest.approx(mean_dip - STARTER_NEED_V)


def test_a_days_values_use_nothing_after_it(tmp_path: Path) -> None:
    con = _store(tmp_path)
    cut = START + dt.timedelta(days=45, hours=23)
    before = build_daily_features(con, until=cut)
    for i in range(46, N_DAYS):  # a collapsing battery after the cut, and more dark days
        _set(con, i, DIP, 7.0)
    con.execute("DELETE FROM telemetry WHERE CAST(timezone('UTC', ts) AS DATE) = ?", [day(47)])
    after = build_daily_features(con).filter(pl.col("day") <= day(45))
    assert before.select("day", *FEATURES).equals(after.select("day", *FEATURES))


def test_the_12v_model_sees_the_margin_features_and_declares_their_inputs() -> None:
    assert set(FEATURES) <= set(model_features("lv_battery"))
    assert not set(FEATURES) & set(model_features("brakes"))
    assert FEATURE_SIGNALS["crank_margin_at_outlook"] == FEATURE_SIGNALS["crank_dip_at_outlook"]

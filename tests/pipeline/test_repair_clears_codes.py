"""A repair order clears its component's fault codes reported before it, in the daily
features, in advice's fault-code leads and in ``active_fault_codes``; a report after it makes
the code active again (real DuckDB stores, real repair orders)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from synth_fleet import START, Car, add_dtc, add_repair_order, build_store, day

from pipeline.features import active_fault_codes
from pipeline.features.daily import build_daily_features
from pipeline.leads.advice import advise
from tests.master_data import import_master_data


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """Two healthy cars with 40 days of telemetry and master data; no models, so every lead
    comes from fault codes."""
    store = build_store(tmp_path / "fleet.duckdb", [Car("ev"), Car("ice", ev=False)], 40)
    import_master_data(store, start=day(20))
    return store


def _at(i: int, hours: float = 23.0) -> dt.datetime:
    return START + dt.timedelta(days=i, hours=hours)


def _row(feats: pl.DataFrame, vehicle: str, i: int) -> dict[str, Any]:
    return feats.filter((pl.col("vehicle_id") == vehicle) & (pl.col("day") == day(i))).row(
        0, named=True)


def _active(con: duckdb.DuckDBPyConnection, i: int) -> list[tuple[str, str]]:
    codes = active_fault_codes(con, _at(i))
    return list(zip(codes["vehicle_id"].to_list(), codes["code"].to_list(), strict=True))


def _lead_codes(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], list[str]]:
    rows = con.execute("SELECT vehicle_id, component, document FROM leads").fetchall()
    return {(v, c): [f["code"] for f in json.loads(d)["evidence"]["fault_codes"]]
            for v, c, d in rows}


def test_a_repair_clears_the_features_until_the_code_is_reported_again(
        con: duckdb.DuckDBPyConnection) -> None:
    for i in (3, 4, 5):
        add_dtc(con, "ev", i, "C1B00")
    add_dtc(con, "ev", 4, "P0562")
    add_repair_order(con, "ev", "brakes", 8)
    add_dtc(con, "ev", 20, "C1B00")
    feats = build_daily_features(con)
    before = _row(feats, "ev", 7)
    assert (before["dtc_count__brakes"], before["dtc_events_30d__brakes"],
            before["dtc_age_days__brakes"]) == (1, 3, 4)
    for i in (8, 19):
        after = _row(feats, "ev", i)
        assert (after["dtc_count__brakes"], after["dtc_events_30d__brakes"],
                after["dtc_age_days__brakes"]) == (0, 0, 0), f"day {i}"
        assert after["dtc_count__lv_battery"] == 1, "a brake repair leaves the 12 V code"
    again = _row(feats, "ev", 25)
    assert (again["dtc_count__brakes"], again["dtc_events_30d__brakes"],
            again["dtc_age_days__brakes"]) == (1, 1, 5), "counted from the new report"


def test_the_repair_does_not_change_the_days_before_it(con: duckdb.DuckDBPyConnection) -> None:
    add_dtc(con, "ev", 3, "C1B00")
    before = build_daily_features(con).filter(pl.col("day") < day(8))
    add_repair_order(con, "ev", "brakes", 8, kind="roadside")
    assert build_daily_features(con).filter(pl.col("day") < day(8)).equals(before)


def test_which_orders_clear(con: duckdb.DuckDBPyConnection) -> None:
    add_dtc(con, "ev", 3, "C1B00")
    add_dtc(con, "ice", 3, "C1B00")
    add_dtc(con, "ice", 3, "P0562")
    add_repair_order(con, "ev", "brakes", 6, kind="inspection")
    add_repair_order(con, "ice", "brakes", 6, kind="preventive")
    assert _active(con, 10) == [("ev", "C1B00"), ("ice", "P0562")], \
        "an inspection replaces nothing, a preventive order does"
    add_repair_order(con, "ice", "lv_battery", 12, kind="roadside")
    assert _active(con, 11) == [("ev", "C1B00"), ("ice", "P0562")], "not before it is opened"
    assert _active(con, 12) == [("ev", "C1B00")]


def test_a_report_at_the_instant_the_order_opens_is_cleared_one_after_is_not(
        con: duckdb.DuckDBPyConnection) -> None:
    add_repair_order(con, "ev", "brakes", 6)
    opened = START + dt.timedelta(days=6, hours=18)
    for ts in (opened, opened + dt.timedelta(seconds=1)):
        con.execute("INSERT INTO dtc_events (vehicle_id, ts, code, status, ecu, source, cleared,"
                    " msg_id) VALUES ('ev', ?, 'C1B00', 'stored', 'ESC', 'can', false, 'm')",
                    [ts])
        assert _active(con, 6) == ([] if ts == opened else [("ev", "C1B00")])


def test_a_repaired_code_raises_no_lead_until_reported_again(
        con: duckdb.DuckDBPyConnection) -> None:
    add_dtc(con, "ev", 10, "C1B01")
    add_dtc(con, "ev", 10, "P0562")
    add_repair_order(con, "ev", "brakes", 12)
    assert advise(con, now=_at(15)).new == 1
    assert _lead_codes(con) == {("ev", "lv_battery"): ["P0562"]}
    add_dtc(con, "ev", 16, "C1B01")
    report = advise(con, now=_at(16))
    assert report.new == 1
    leads = _lead_codes(con)
    assert leads[("ev", "brakes")] == ["C1B01"]
    severity = con.execute("SELECT severity FROM leads WHERE component = 'brakes'").fetchall()
    assert severity == [("critical",)]


def test_urgent_advice_sees_the_repair_too(con: duckdb.DuckDBPyConnection) -> None:
    add_dtc(con, "ev", 10, "P0AA6")
    add_repair_order(con, "ev", "traction_battery", 11)
    add_dtc(con, "ev", 13, "P0562")
    report = advise(con, now=_at(13), vehicles=["ev"], min_severity="critical",
                    daily_features=False)
    assert (report.new, _lead_codes(con)) == (0, {})

"""A VIN read from the bus that differs from the register's: flagged, checked, leads held."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from edge.wire import contract
from pipeline.fleet.show import format_file, vehicle_file
from pipeline.fleet.vin_check import bus_vin, vin_mismatches
from pipeline.ingest.landing import InboundMessage, land
from pipeline.leads.holds import HoldReason, hold_reasons
from pipeline.ops.health import check_health
from pipeline.store import connection as store

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
REGISTERED = "WVWZZZ1JZXW000001"
OTHER_CAR = "1L06130RELP969468"


@pytest.fixture
def con(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = store.connect(db_path)
    connection.execute(
        "INSERT INTO customers (customer_id, name, contact_consent) VALUES ('c1', 'A B', true)")
    registered = {"UNREGISTERED": None, "SAME": REGISTERED.lower() + " "}  # as a DMS wrote it
    for vehicle in ("MOVED", "SAME", "UNREAD", "UNREGISTERED", "BACK"):
        vin = registered.get(vehicle, REGISTERED)
        connection.execute("INSERT INTO vehicles (vehicle_id, model, region, vin, customer_id)"
                           " VALUES (?, 'Aurora EV', 'north', ?, 'c1')", [vehicle, vin])
    yield connection
    connection.close()


def report(vehicle: str, ts: float, vin: str | None) -> InboundMessage:
    info = contract.VehicleInfo(f"{vehicle}-{ts}", vehicle, ts, vin,
                                "obd_mode09" if vin else "none", "0.4.0")
    return InboundMessage(contract.vehicle_info_topic(vehicle), contract.encode(info), ts)


@pytest.fixture
def reported(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    land(con, [
        report("MOVED", T0, REGISTERED), report("MOVED", T0 + 50, None),
        report("MOVED", T0 + 60, OTHER_CAR),               # moved: the newest VIN is another
        report("SAME", T0, REGISTERED),                    # the register's, in its own case
        report("UNREAD", T0, None),                        # never read: nothing to compare
        report("UNREGISTERED", T0, OTHER_CAR),             # no registered VIN: nothing either
        report("BACK", T0, OTHER_CAR), report("BACK", T0 + 90, REGISTERED),  # put back
    ])
    return con


def test_only_the_vehicle_whose_newest_bus_vin_differs_is_a_mismatch(
        reported: duckdb.DuckDBPyConnection) -> None:
    (mismatch,) = vin_mismatches(reported)
    assert (mismatch.vehicle_id, mismatch.registered_vin, mismatch.bus_vin,
            mismatch.vin_source) == ("MOVED", REGISTERED, OTHER_CAR, "obd_mode09")
    assert mismatch.seen_at == dt.datetime.fromtimestamp(T0 + 60, dt.UTC)
    found = bus_vin(reported, "BACK")
    assert found is not None and found.vin == REGISTERED
    assert bus_vin(reported, "UNREAD") is None


def test_the_mismatched_vehicles_leads_are_held_before_any_other_reason(
        reported: duckdb.DuckDBPyConnection) -> None:
    reported.execute("UPDATE vehicles SET customer_id = NULL WHERE vehicle_id = 'MOVED'")
    holds = hold_reasons(reported, ["MOVED", "SAME", "UNREAD", "UNREGISTERED", "BACK"])
    assert holds == {"MOVED": HoldReason.VIN_MISMATCH}


def test_the_health_check_fails_naming_the_vehicle(reported: duckdb.DuckDBPyConnection) -> None:
    report_ = check_health(reported, now=dt.datetime.fromtimestamp(T0 + 100, dt.UTC))
    (check,) = [c for c in report_.checks if c.name == "vin_mismatch"]
    assert not check.healthy and check.value == 1.0
    assert f"MOVED (registered {REGISTERED}, bus {OTHER_CAR})" in check.message
    assert "leads held" in check.message and "\n" not in check.message
    assert [v["vehicle_id"] for v in check.detail["vehicles"]] == ["MOVED"]


def test_the_health_check_passes_once_the_register_is_put_right(
        reported: duckdb.DuckDBPyConnection) -> None:
    reported.execute("UPDATE vehicles SET vin = ? WHERE vehicle_id = 'MOVED'", [OTHER_CAR])
    (check,) = [c for c in check_health(reported).checks if c.name == "vin_mismatch"]
    assert check.healthy and check.value == 0.0
    assert hold_reasons(reported, ["MOVED"]) == {}


def test_fleet_show_flags_the_mismatch(reported: duckdb.DuckDBPyConnection) -> None:
    moved = vehicle_file(reported, "MOVED")
    assert moved.vin_mismatch
    assert moved.as_json()["vin"] == {"registered": REGISTERED, "on_bus": OTHER_CAR,
                                      "source": "obd_mode09", "mismatch": True}
    assert "VIN MISMATCH" in format_file(moved)
    same = vehicle_file(reported, "SAME")
    assert not same.vin_mismatch and "VIN MISMATCH" not in format_file(same)
    assert vehicle_file(reported, "UNREAD").as_json()["vin"]["mismatch"] is False

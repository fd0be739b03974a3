"""A few vehicles' active fault codes (replayed in Python for urgent leads) are the fleet's
SQL answer for them, on random histories of reports, vehicle clears and repair orders in a
real DuckDB store."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipeline.features import active_fault_codes
from pipeline.features.active_codes import FEW_VEHICLES
from pipeline.store.connection import connect

START = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
VEHICLES = [f"car-{i}" for i in range(8)]
CODES = ["P0AA6", "p0a80", "C1B00", "C1B01", "P0562", "P0300", "B1234"]
"""Codes of every component, one without a component, one unknown, one in lower case."""
COMPONENTS = ["traction_battery", "brakes", "lv_battery", "hvac"]
KINDS = ["unscheduled", "roadside", "preventive", "inspection"]


def _random_history(con: duckdb.DuckDBPyConnection, rng: random.Random) -> None:
    """Reports and clears on a 10-day span (whole minutes, distinct per vehicle and code so
    no two events tie) and repair orders, some opened at the very instant of a report."""
    reports: list[dt.datetime] = []
    for n, vehicle in enumerate(VEHICLES):
        for code in rng.sample(CODES, rng.randint(0, len(CODES))):
            minutes = rng.sample(range(10 * 24 * 60), rng.randint(1, 6))
            for k, minute in enumerate(sorted(minutes)):
                ts = START + dt.timedelta(minutes=minute)
                reports.append(ts)
                con.execute(
                    "INSERT INTO dtc_events (vehicle_id, ts, code, status, ecu, source,"
                    " cleared, msg_id) VALUES (?, ?, ?, ?, 'ECU', 'can', ?, ?)",
                    [vehicle, ts, code, rng.choice(["stored", "pending", "active"]),
                     rng.random() < 0.25, f"m-{n}-{code}-{k}"])
        for k in range(rng.randint(0, 3)):
            opened = (rng.choice(reports) if reports and rng.random() < 0.3
                      else START + dt.timedelta(minutes=rng.randrange(10 * 24 * 60), seconds=30))
            con.execute("INSERT INTO repair_orders VALUES (?, ?, ?, NULL, ?, 'OP', ?, NULL,"
                        " now())", [f"RO-{vehicle}-{k}", vehicle, opened,
                                    rng.choice(COMPONENTS), rng.choice(KINDS)])


def _rows(frame: pl.DataFrame) -> list[tuple[object, ...]]:
    return [tuple(r) for r in frame.sort("vehicle_id", "code").iter_rows()]


@pytest.mark.parametrize("seed", range(6))
def test_replay_of_a_few_vehicles_equals_the_fleet_sql(tmp_path: Path, seed: int) -> None:
    con = connect(tmp_path / "fleet.duckdb")
    rng = random.Random(seed)
    _random_history(con, rng)
    for day in (0, 3, 6, 11):
        now = START + dt.timedelta(days=day, hours=rng.randint(0, 23))
        fleet = active_fault_codes(con, now)
        for vehicle in VEHICLES:
            mine = active_fault_codes(con, now, [vehicle])
            assert _rows(mine) == _rows(fleet.filter(pl.col("vehicle_id") == vehicle))
            assert mine.columns == fleet.columns
        some = VEHICLES[:3]
        assert _rows(active_fault_codes(con, now, some)) == _rows(
            fleet.filter(pl.col("vehicle_id").is_in(some)))
    assert not fleet.is_empty()


def test_many_vehicles_take_the_fleet_sql_and_agree(tmp_path: Path) -> None:
    con = connect(tmp_path / "fleet.duckdb")
    _random_history(con, random.Random(42))
    now = START + dt.timedelta(days=11)
    many = [*VEHICLES, *(f"other-{i}" for i in range(FEW_VEHICLES))]
    assert _rows(active_fault_codes(con, now, many)) == _rows(active_fault_codes(con, now))
    assert _rows(active_fault_codes(con, now, ["nobody"])) == []

"""``fleetcare service import`` as a user runs it: real commands in subprocesses, real DuckDB
files, the simulator's ``repair_orders.csv`` as the DMS export."""

from __future__ import annotations

import csv
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.sim.masterdata import vehicles_of, write_master_data
from edge.sim.simulator import make_fleet
from edge.sim.workshop import write_repair_orders
from pipeline.store import connection as store
from tests.e2e.replay_helpers import REPO
from tests.processes import holding_store

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def fleetcare(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCARE_")}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def summary(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])["repair_orders"]
    return result


def stored(db: Path) -> list[tuple[Any, ...]]:
    with store.connect_readonly(db) as con:
        return con.execute("SELECT order_id, vehicle_id, opened_at, odometer_km, component,"
                           " operation_code, kind, lead_id FROM repair_orders ORDER BY 1"
                           ).fetchall()


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write(path: Path, table: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    return path


@pytest.fixture
def onboarded(tmp_path: Path) -> tuple[Path, Path]:
    """A store with the simulated fleet's register imported, and that fleet's repair orders."""
    specs = make_fleet(12, seed=5, start_ts=START.timestamp())
    files = write_master_data(tmp_path / "dms", vehicles_of(specs), seed=5, start=START.date())
    db = tmp_path / "fleet.duckdb"
    done = fleetcare("fleet", "import", "--db", str(db),
                     *(a for kind, path in files.items() for a in (f"--{kind}", str(path))))
    assert done.returncode == 0, done.stderr
    orders = write_repair_orders(tmp_path / "dms", specs, start_ts=START.timestamp(), days=150)
    return db, orders


def test_import_is_idempotent_and_a_changed_order_is_updated(
        onboarded: tuple[Path, Path]) -> None:
    db, orders = onboarded
    n = len(read(orders))
    assert n >= 5
    first = summary(fleetcare("service", "import", "--db", str(db), str(orders)))
    assert (first["rows"], first["inserted"], first["updated"], first["unchanged"]) == (
        n, n, 0, 0)
    assert first["ignored_columns"] == []
    before = stored(db)
    assert len(before) == n
    with store.connect_readonly(db) as con:
        catalogue = {r[0] for r in con.execute(
            "SELECT operation_code FROM service_catalogue").fetchall()}
    assert {r[5] for r in before if r[6] != "inspection"} <= catalogue
    again = summary(fleetcare("service", "import", "--db", str(db), str(orders)))
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, n)
    assert stored(db) == before
    table = read(orders)
    table[0]["odometer_km"] = "99999.0"
    changed = summary(fleetcare("service", "import", "--db", str(db), str(write(orders, table))))
    assert (changed["inserted"], changed["updated"], changed["unchanged"]) == (0, 1, n - 1)
    assert [r[3] for r in stored(db) if r[0] == table[0]["order_id"]] == [99999.0]


def test_a_vin_alone_finds_the_vehicle_and_extra_columns_are_named(
        onboarded: tuple[Path, Path], tmp_path: Path) -> None:
    db, orders = onboarded
    table = [{**{k: v for k, v in r.items() if k != "vehicle_id"}, "advisor": "x"}
             for r in read(orders)]
    result = summary(fleetcare("service", "import", "--db", str(db),
                               str(write(tmp_path / "by_vin.csv", table))))
    assert result["inserted"] == len(table) and result["ignored_columns"] == ["advisor"]
    by_id = {r["order_id"]: r["vehicle_id"] for r in read(orders)}
    assert {r[0]: r[1] for r in stored(db)} == by_id


def test_a_bad_file_is_refused_whole_with_every_problem_and_nothing_applied(
        onboarded: tuple[Path, Path], tmp_path: Path) -> None:
    db, orders = onboarded
    table = read(orders)
    table[0]["vehicle_id"] = "NOPE"
    table[1]["vin"] = "1HGCM82633A004352"
    table[2]["component"] = "wipers"
    table[3]["kind"] = "broken"
    table[4]["opened_at"] = "2026-02-30T10:00:00Z"
    table.append({**table[5], "opened_at": "2026-03-01 10:00"})
    bad = write(tmp_path / "bad.csv", table)
    done = fleetcare("service", "import", "--db", str(db), str(bad))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[:-1] == [
        f"{bad}:2: vehicle_id: 'NOPE' is not in the fleet register",
        f"{bad}:3: vin: '1HGCM82633A004352' is not in the fleet register (vehicles.vin)",
        f"{bad}:4: component: 'wipers' is not one of traction_battery, lv_battery, brakes",
        f"{bad}:5: kind: 'broken' is not one of unscheduled, roadside, preventive, inspection",
        f"{bad}:6: opened_at: '2026-02-30T10:00:00Z' is not an ISO 8601 date or date-time",
        f"{bad}:{len(table) + 1}: order_id: '{table[5]['order_id']}' again (first on line 7)",
        f"{bad}:{len(table) + 1}: opened_at: '2026-03-01 10:00' has no UTC offset "
        "(add Z or +HH:MM)",
    ]
    assert lines[-1] == (f"fleetcare service import: error: {bad}: 7 problem(s), "
                         "nothing imported")
    assert stored(db) == []
    fresh = tmp_path / "new.duckdb"  # no register there: every row is refused
    assert fleetcare("service", "import", "--db", str(fresh), str(bad)).returncode == 1
    assert list(tmp_path.glob("new.duckdb*")) == []  # and no store file is left behind


def test_dry_run_counts_and_writes_nothing(onboarded: tuple[Path, Path]) -> None:
    db, orders = onboarded
    result = summary(fleetcare("service", "import", "--db", str(db), "--dry-run", str(orders)))
    assert result["dry_run"] is True and result["inserted"] == len(read(orders))
    assert stored(db) == []


def test_a_missing_column_is_named_from_the_header(onboarded: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    db, orders = onboarded
    table = [{k: v for k, v in r.items() if k not in ("kind", "vehicle_id", "vin")}
             for r in read(orders)]
    bad = write(tmp_path / "cols.csv", table)
    done = fleetcare("service", "import", "--db", str(db), str(bad))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[:-1] == [
        f"{bad}:1: kind: required column missing",
        f"{bad}:1: vehicle_id: required column missing (or give vin)"]


def test_an_import_waits_for_a_held_store_then_refuses_in_one_line(
        onboarded: tuple[Path, Path]) -> None:
    db, orders = onboarded
    with holding_store(db):
        done = fleetcare("service", "import", "--db", str(db), "--wait", "1", str(orders))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "is held by another process" in line and "--wait" in line
    assert stored(db) == []

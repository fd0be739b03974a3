"""``fleetcare fleet import`` and ``fleetcare fleet show`` as a user runs them: real commands in
subprocesses, real DuckDB files, the simulator's CSV files as the DMS export."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.sim.masterdata import SimVehicle, write_master_data
from edge.wire.vin import check_digit
from pipeline.cli.fleet import DEFAULT_VIN_CHECK
from pipeline.fleet import VinPolicy, customer_hash
from pipeline.fleet.vin_policy import DEFAULT_CHECK_REGIONS, register_vin_problem
from pipeline.store import connection as store
from tests.e2e.replay_helpers import REPO
from tests.processes import holding_store

KINDS = ("vehicles", "customers", "centres", "capacity", "catalogue")
TABLES = {"vehicles": "vehicles", "customers": "customers", "centres": "service_centres",
          "capacity": "centre_capacity", "catalogue": "service_catalogue"}
FLEET = [SimVehicle("VIN00000", "Aurora EV", "north"), SimVehicle("VIN00001", "Borealis ICE",
                                                                    "south"),
         SimVehicle("VIN00002", "Aurora EV", "central")]


def fleetcare(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCARE_")}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def import_args(db: Path, files: dict[str, Path], *extra: str) -> list[str]:
    args = ["fleet", "import", "--db", str(db)]
    for kind, path in files.items():
        args += [f"--{kind.replace('_', '-')}", str(path)]
    return [*args, *extra]


def counts(db: Path) -> dict[str, int]:
    with store.connect_readonly(db) as con:
        return {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
                for t in TABLES.values()}


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, table: list[dict[str, str]], extra: dict[str, str] | None = None
               ) -> Path:
    header = [*table[0], *(extra or {})]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, header)
        writer.writeheader()
        writer.writerows({**r, **(extra or {})} for r in table)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """The simulator's five files for a three-vehicle fleet."""
    import datetime as dt

    return write_master_data(tmp_path / "export", FLEET, seed=3, start=dt.date(2026, 3, 2))


def summary(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = orjson.loads(done.stdout)
    return result


def test_a_good_import_lands_every_row_and_a_re_import_changes_nothing(
        tmp_path: Path, files: dict[str, Path]) -> None:
    db = tmp_path / "serving.duckdb"
    first = summary(fleetcare(*import_args(db, files)))
    assert first["dry_run"] is False
    assert {t: c["inserted"] for t, c in first["tables"].items()} == {
        "vehicles": 3, "customers": 3, "service_centres": 3, "centre_capacity": 180,
        "service_catalogue": 3}
    assert counts(db) == {"vehicles": 3, "customers": 3, "service_centres": 3,
                          "centre_capacity": 180, "service_catalogue": 3}
    with store.connect_readonly(db) as con:
        vehicle = con.execute("SELECT vin, model, model_year, region, centre_id, customer_id,"
                              " imported_at IS NOT NULL FROM vehicles WHERE vehicle_id ="
                              " 'VIN00001'").fetchone()
        customer = con.execute("SELECT language, contact_consent FROM customers"
                               " WHERE customer_id = 'cust-VIN00001'").fetchone()
        centre = con.execute("SELECT timezone FROM service_centres WHERE centre_id ="
                             " 'centre-south'").fetchone()
    expected = rows(files["vehicles"])[1]
    assert vehicle == (expected["vin"], "Borealis ICE", int(expected["model_year"]), "south",
                       "centre-south", "cust-VIN00001", True)
    assert customer == ("it", True)
    assert centre == ("Europe/Rome",)
    again = summary(fleetcare(*import_args(db, files)))
    assert all(c["inserted"] == c["updated"] == 0 for c in again["tables"].values())
    assert again["tables"]["centre_capacity"]["unchanged"] == 180
    assert again["tables"]["vehicles"]["unchanged"] == 3


def test_a_changed_row_is_updated_and_counted(tmp_path: Path, files: dict[str, Path]) -> None:
    db = tmp_path / "serving.duckdb"
    summary(fleetcare(*import_args(db, files)))
    customers = rows(files["customers"])
    customers[0]["contact_consent"] = "false"
    customers[2]["phone"] = "+39 06 1234567"
    changed = write_rows(tmp_path / "customers.csv", customers)
    result = summary(fleetcare(*import_args(db, {"customers": changed})))
    assert result["tables"] == {"customers": {"inserted": 0, "updated": 2, "unchanged": 1,
                                              "skipped_forgotten": 0}}
    with store.connect_readonly(db) as con:
        assert con.execute("SELECT contact_consent FROM customers WHERE customer_id = ?",
                           [customers[0]["customer_id"]]).fetchone() == (False,)


def test_a_bad_file_is_refused_whole_with_every_problem_and_nothing_applied(
        tmp_path: Path, files: dict[str, Path]) -> None:
    db = tmp_path / "serving.duckdb"
    store.connect(db).close()  # an existing, empty store
    vehicles = rows(files["vehicles"])
    vehicles[0]["vin"] = "WVWZZZ1JZXW00000"  # 16 characters
    vehicles[1]["model_year"] = "19x5"
    vehicles[2]["centre_id"] = "centre-nowhere"
    bad_vehicles = write_rows(tmp_path / "vehicles.csv", vehicles)
    capacity = rows(files["capacity"])
    capacity[4]["day"] = "2026-02-30"
    capacity[5]["free_slots"] = "-1"
    bad_capacity = write_rows(tmp_path / "capacity.csv", capacity)
    given = {**files, "vehicles": bad_vehicles, "capacity": bad_capacity}
    done = fleetcare(*import_args(db, given))
    assert done.returncode == 1
    problems = done.stderr.strip().splitlines()
    assert problems == [
        f"{bad_vehicles}:2: vin: VIN 'WVWZZZ1JZXW00000' has 16 characters, a VIN has 17",
        f"{bad_vehicles}:3: model_year: '19x5' is not a whole number",
        f"{bad_vehicles}:4: centre_id: no centre 'centre-nowhere' in the centres file or "
        "the store",
        f"{bad_capacity}:6: day: '2026-02-30' is not a calendar day",
        f"{bad_capacity}:7: free_slots: -1 is out of range (give a number at least 0)",
        "fleetcare fleet import: 5 problems in 2 files; nothing was applied",
    ]
    assert "Traceback" not in done.stderr
    assert counts(db) == dict.fromkeys(TABLES.values(), 0)  # the good files did not land
    fresh = tmp_path / "new.duckdb"
    assert fleetcare(*import_args(fresh, given)).returncode == 1
    assert list(tmp_path.glob("new.duckdb*")) == []  # and no store file is left behind


def test_header_problems_and_a_file_that_is_not_utf8(tmp_path: Path,
                                                    files: dict[str, Path]) -> None:
    db = tmp_path / "serving.duckdb"
    no_consent = tmp_path / "customers.csv"
    no_consent.write_text("customer_id,name,phone,email,language\nc1,Ann,,,\n",
                          encoding="utf-8")
    latin1 = tmp_path / "centres.csv"
    latin1.write_bytes("centre_id,name,region,timezone,bays\nc,Müller,r,Europe/Berlin,2\n"
                       .encode("latin-1"))
    done = fleetcare(*import_args(db, {"customers": no_consent, "centres": latin1}))
    assert done.returncode == 1
    assert done.stderr.splitlines()[:2] == [
        f"{latin1}:2: (file): not UTF-8 (byte 0xfc): export the file as UTF-8",
        f"{no_consent}:1: contact_consent: missing from the header",
    ]


def test_dry_run_reports_and_changes_nothing(tmp_path: Path, files: dict[str, Path]) -> None:
    db = tmp_path / "serving.duckdb"
    dry = summary(fleetcare(*import_args(db, files, "--dry-run")))
    assert dry["dry_run"] is True
    assert dry["tables"]["vehicles"]["inserted"] == 3
    assert counts(db) == dict.fromkeys(TABLES.values(), 0)


def test_extra_columns_are_ignored_and_named(tmp_path: Path, files: dict[str, Path]) -> None:
    db = tmp_path / "serving.duckdb"
    wider = write_rows(tmp_path / "vehicles.csv", rows(files["vehicles"]),
                       {"colour": "blue", "dealer_note": "x"})
    done = fleetcare(*import_args(db, {**files, "vehicles": wider}))
    result = summary(done)
    assert result["extra_columns"] == {str(wider): ["colour", "dealer_note"]}
    assert f"{wider}: ignored columns not in the format: colour, dealer_note" in done.stderr
    assert result["tables"]["vehicles"]["inserted"] == 3


def test_fleet_show_prints_the_vehicles_file_as_text_and_json(
        tmp_path: Path, files: dict[str, Path]) -> None:
    db = tmp_path / "serving.duckdb"
    summary(fleetcare(*import_args(db, files)))
    vin = rows(files["vehicles"])[0]["vin"]
    name = rows(files["customers"])[0]["name"]
    with store.connect(db) as con:
        con.execute("INSERT INTO leads (lead_id, vehicle_id, component, state, hold_reason,"
                    " severity, probability, horizon_days, document) VALUES ('lead-1',"
                    " 'VIN00000', 'brakes', 'held', 'no_consent', 'high', 0.9, 30, '{}')")
        con.execute("INSERT INTO repair_orders VALUES ('RO-1', 'VIN00000', '2026-01-05 10:00Z',"
                    " 41000, 'brakes', 'BRK-PAD-REPL', 'unscheduled', NULL, now())")
    text = fleetcare("fleet", "show", "VIN00000", "--db", str(db))
    assert text.returncode == 0, text.stderr
    assert f"customer    cust-VIN00000: {name}" in text.stdout
    assert "centre      centre-north: Fleetcare Service North (north, Europe/Stockholm" in \
        text.stdout
    assert f"VIN         registered {vin}; from the bus not read from the bus yet" in text.stdout
    assert "lead-1  brakes  high  held (held: no_consent)" in text.stdout
    assert "2026-01-05  RO-1  brakes  BRK-PAD-REPL  unscheduled" in text.stdout
    done = fleetcare("fleet", "show", "VIN00000", "--db", str(db), "--json")
    shown = summary(done)
    assert (shown["vin"]["registered"], shown["vin"]["on_bus"]) == (vin, None)
    assert shown["customer"]["contact_consent"] is True
    assert [lead["hold_reason"] for lead in shown["open_leads"]] == ["no_consent"]
    assert [r["order_id"] for r in shown["repair_history"]] == ["RO-1"]
    missing = fleetcare("fleet", "show", "NOPE", "--db", str(db))
    assert missing.returncode == 1
    assert missing.stderr.strip() == ("fleetcare fleet: error: no vehicle 'NOPE' in the store's"
                                      " register (import it with `fleetcare fleet import "
                                      "--vehicles`)")


def test_fleet_show_reads_the_vin_the_bus_reported(tmp_path: Path,
                                                   files: dict[str, Path]) -> None:
    db = tmp_path / "serving.duckdb"
    summary(fleetcare(*import_args(db, files, "--vin-check-regions", "*")))
    with store.connect(db) as con:
        for vin, seen in (("1HGCM82633A004352", "2026-01-01"), ("WP0ZZZ99ZTS392124",
                                                                 "2026-02-01")):
            con.execute("INSERT INTO vehicle_info VALUES ('VIN00002', ?, 'obd_mode09', '1',"
                        " '{}', 'x', ?, ?, 1, 'm')", [vin, seen, seen])
    shown = summary(fleetcare("fleet", "show", "VIN00002", "--db", str(db), "--json"))
    assert shown["vin"]["on_bus"] == "WP0ZZZ99ZTS392124"


def test_the_check_digit_is_checked_only_where_the_policy_says(
        tmp_path: Path, files: dict[str, Path]) -> None:
    vehicles = rows(files["vehicles"])
    vin = vehicles[0]["vin"]
    wrong = vin[:8] + ("0" if vin[8] != "0" else "1") + vin[9:]
    vehicles[0]["vin"] = wrong
    vehicles[0]["region"] = "US"
    path = write_rows(tmp_path / "vehicles.csv", vehicles)
    refused = fleetcare(*import_args(tmp_path / "a.duckdb", {**files, "vehicles": path}))
    assert refused.returncode == 1
    assert (f"{path}:2: vin: VIN {wrong!r} fails the check digit region 'US' requires: its "
            f"ninth character is {wrong[8]!r}, the others give {check_digit(wrong)!r}"
            ) in refused.stderr
    summary(fleetcare(*import_args(tmp_path / "b.duckdb", {**files, "vehicles": path},
                                   "--vin-check-regions", "")))
    assert register_vin_problem(wrong, "north", VinPolicy.parse("*")) is not None
    assert register_vin_problem(wrong, "north", VinPolicy()) is None


def test_the_cli_default_names_the_same_regions_as_the_policy() -> None:
    assert DEFAULT_VIN_CHECK == DEFAULT_CHECK_REGIONS


def test_a_forgotten_customer_does_not_come_back_with_a_re_import(
        tmp_path: Path, files: dict[str, Path]) -> None:
    db = tmp_path / "serving.duckdb"
    summary(fleetcare(*import_args(db, files)))
    with store.connect(db) as con:  # what `fleetcare forget VIN00001` leaves behind
        con.execute("DELETE FROM customers WHERE customer_id = 'cust-VIN00001'")
        con.execute("UPDATE vehicles SET customer_id = NULL WHERE vehicle_id = 'VIN00001'")
        con.execute("INSERT INTO erasure_log VALUES ('e1', now(), 'VIN00001', ['VIN00001'], ?,"
                    " 'customer', '{}')", [[customer_hash("cust-VIN00001")]])
    again = summary(fleetcare(*import_args(db, files)))
    assert again["tables"]["customers"] == {"inserted": 0, "updated": 0, "unchanged": 2,
                                            "skipped_forgotten": 1}
    assert again["tables"]["vehicles"]["skipped_forgotten"] == 1
    with store.connect_readonly(db) as con:
        assert con.execute("SELECT count(*) FROM customers WHERE customer_id ="
                           " 'cust-VIN00001'").fetchone() == (0,)
        assert con.execute("SELECT customer_id FROM vehicles WHERE vehicle_id = 'VIN00001'"
                           ).fetchone() == (None,)


def test_an_import_waits_for_a_held_store_then_refuses_in_one_line(
        tmp_path: Path, files: dict[str, Path]) -> None:
    db = tmp_path / "serving.duckdb"
    with holding_store(db):
        done = fleetcare(*import_args(db, files, "--wait", "1"))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "is held by another process" in line and "--wait" in line
    assert summary(fleetcare(*import_args(db, files)))["tables"]["vehicles"]["inserted"] == 3


def test_no_file_given_is_a_usage_error(tmp_path: Path) -> None:
    done = fleetcare("fleet", "import", "--db", str(tmp_path / "x.duckdb"))
    assert done.returncode == 2
    assert "give at least one of --vehicles" in done.stderr


def test_sim_fleet_writes_the_files_for_the_vehicles_sim_run_drives(tmp_path: Path) -> None:
    from edge.sim.simulator import make_fleet

    done = fleetcare("sim", "fleet", "--vehicles", "4", "--seed", "7", "--start",
                     "2026-05-01", "--out", str(tmp_path / "md"))
    written = summary(done)
    assert sorted(written) == sorted([*KINDS, "region_forecasts"])
    vehicles = rows(Path(written["vehicles"]))
    specs = make_fleet(4, seed=7)
    assert [(v["vehicle_id"], v["vin"], v["region"]) for v in vehicles] == [
        (s.vehicle_id, s.vin, s.region) for s in specs]
    assert rows(Path(written["capacity"]))[0]["day"] == "2026-05-01"
    assert summary(fleetcare(*import_args(tmp_path / "s.duckdb", {
        k: Path(v) for k, v in written.items()}, "--vin-check-regions", "*")))


def test_a_vin_registered_to_another_vehicle_is_refused_unless_the_file_moves_it(
        tmp_path: Path, files: dict[str, Path]) -> None:
    db = tmp_path / "serving.duckdb"
    summary(fleetcare(*import_args(db, files)))
    vehicles = rows(files["vehicles"])
    first_vin = vehicles[0]["vin"]
    taken = [{**vehicles[1], "vin": first_vin}]  # only the second vehicle, with the first's VIN
    path = write_rows(tmp_path / "taken.csv", taken)
    refused = fleetcare(*import_args(db, {"vehicles": path}))
    assert refused.returncode == 1
    assert (f"{path}:2: vin: VIN {first_vin!r} is registered to vehicle 'VIN00000' already"
            in refused.stderr)
    swapped = [{**vehicles[0], "vin": vehicles[1]["vin"]}, {**vehicles[1], "vin": first_vin}]
    moved = summary(fleetcare(*import_args(db, {"vehicles": write_rows(tmp_path / "swap.csv",
                                                                       swapped)})))
    assert moved["tables"]["vehicles"]["updated"] == 2

"""``fleetcare fleet show`` says which promoted models can score the vehicle (and which signals
it lacks) and lists its active fault codes, which a repair order imported with ``fleetcare
service import`` clears: real commands in subprocesses on a real DuckDB store (the fleet:
:mod:`coverage_fleet`)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from coverage_fleet import build_coverage_store
from synth_fleet import START, add_dtc

from pipeline.features.inputs import AIR_TEMP, LV_VOLTAGE
from pipeline.store import connection as store
from pipeline.store.serving import connect_serving

FLEETCARE = str(Path(sys.executable).with_name("fleetcare"))


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = build_coverage_store(tmp_path_factory.mktemp("fleet-show") / "fleet.duckdb")
    with store.connect(path) as con:
        add_dtc(con, "nolv", 50, "C1B00")
        add_dtc(con, "nolv", 60, "P0562")
        add_dtc(con, "nolv", 61, "P0300")
    return path


def _fleetcare(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLEETCARE, *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


def _show(db: Path, vehicle: str, *extra: str | Path) -> dict[str, Any]:
    done = _fleetcare("fleet", "show", vehicle, "--db", db, "--json", *extra)
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


def _verdicts(shown: dict[str, Any]) -> dict[str, tuple[bool, list[str], list[str]]]:
    return {m["component"]: (m["can_score"], m["missing_required"], m["missing_optional"])
            for m in shown["models"]}


def test_each_promoted_model_says_whether_it_can_score_the_vehicle(db: Path) -> None:
    nolv = _verdicts(_show(db, "nolv"))
    assert {c: v[:2] for c, v in nolv.items()} == {"brakes": (True, []),
                                                   "lv_battery": (False, [LV_VOLTAGE]),
                                                   "traction_battery": (True, [])}
    noair = _verdicts(_show(db, "noair"))
    assert all(ok for ok, _, _ in noair.values())
    assert AIR_TEMP in noair["brakes"][2], "a missing optional signal is imputed, not fatal"
    silent = _verdicts(_show(db, "silent"))
    assert not any(ok for ok, _, _ in silent.values()), "a vehicle that sent nothing"
    text = _fleetcare("fleet", "show", "nolv", "--db", db)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "models      3 promoted" in lines
    assert any(line.startswith("  brakes  m-brakes  can score; imputes ") for line in lines)
    assert f"  lv_battery  m-lv_battery  cannot score: no reading of {LV_VOLTAGE}" in lines


def test_a_repair_order_clears_the_codes_of_its_component(db: Path, tmp_path: Path) -> None:
    codes = {c["code"]: c for c in _show(db, "nolv")["fault_codes"]}
    assert sorted(codes) == ["C1B00", "P0300", "P0562"]
    assert (codes["C1B00"]["component"], codes["C1B00"]["first_seen"]) == (
        "brakes", (START + dt.timedelta(days=50)).date().isoformat())
    assert codes["P0300"]["component"] is None, "an uncatalogued code is listed, unassigned"
    orders = tmp_path / "repair_orders.csv"
    opened = (START + dt.timedelta(days=70, hours=10)).isoformat()
    orders.write_text("order_id,vehicle_id,opened_at,odometer_km,component,operation_code,kind,"
                      f"lead_id\nRO-nolv-1,nolv,{opened},52000,brakes,BRK-PAD-REPL,preventive,\n"
                      f"RO-nolv-2,nolv,{opened},52000,lv_battery,LV-BAT-TEST,inspection,\n",
                      encoding="utf-8")
    done = _fleetcare("service", "import", "--db", db, orders)
    assert done.returncode == 0, done.stderr
    assert [c["code"] for c in _show(db, "nolv")["fault_codes"]] == ["P0300", "P0562"], \
        "the brake repair clears C1B00; the 12 V inspection replaces nothing"
    text = _fleetcare("fleet", "show", "nolv", "--db", db).stdout.splitlines()
    assert "fault codes 2 active" in text
    assert any(line.startswith("  P0562  lv_battery  medium  stored  since ") for line in text)
    with store.connect(db) as con:
        add_dtc(con, "nolv", 80, "C1B00", status="pending")
    again = {c["code"]: c for c in _show(db, "nolv")["fault_codes"]}
    assert (again["C1B00"]["status"], again["C1B00"]["first_seen"]) == (
        "pending", (START + dt.timedelta(days=80)).date().isoformat()), "reported again"


def test_the_serving_store_reads_signals_and_codes_through_the_snapshot(
        db: Path, tmp_path: Path) -> None:
    # The register, models and repair orders live in the serving file (fleet and service
    # import write there); telemetry and fault codes in the landing snapshot.
    serving = tmp_path / "serving.duckdb"
    with connect_serving(serving, db) as con:
        for table in ("model_registry", "vehicles", "repair_orders"):
            con.execute(f"INSERT OR REPLACE INTO {table} SELECT * FROM landing.{table}")
    direct = _show(db, "nolv")
    through = _show(serving, "nolv", "--snapshot", db)
    assert (through["models"], through["fault_codes"]) == (direct["models"],
                                                           direct["fault_codes"])
    alone = _show(serving, "nolv")
    assert alone["fault_codes"] == [] and not any(m["can_score"] for m in alone["models"])
    refused = _fleetcare("fleet", "show", "nolv", "--db", serving, "--export-dir", tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("fleetcare fleet show: --export-dir needs --snapshot "
                                      "(the one-file store reads its own telemetry)")

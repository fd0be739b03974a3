"""The VIN reaches the backend: real broker, real agents, real ``fleetcare ingest``, DuckDB.

Every part runs as the command a deployment runs, in its own process: ``fleetcare broker``
(mosquitto with the project's configuration), ``fleetcare ingest`` with the register given by
``--vehicles``, and ``fleetcare edge replay`` or ``fleetcare sim run`` as the agents. The
shared J1939 truck recording broadcasts its VIN over BAM transport (PGN 0xFEEC); the
simulated vehicles answer their gateway's mode 09 request with the VIN their register
(``fleetcare sim fleet``) lists; and a car whose bus answers with another car's VIN has its
critical fault held instead of delivered to a real HTTP CRM, and fails the health check.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import subprocess
import time
import uuid
from pathlib import Path

import duckdb
import orjson
import pytest

from edge.config import REFERENCE_DBC, REFERENCE_RULES
from edge.decode import load_dbcs
from edge.sim.vins import simulated_vin, vin_exchange
from pipeline.ops.health import check_health
from pipeline.sandbox.reference_crm import CrmReceiver
from pipeline.store import connection as store
from tests.background import Background
from tests.e2e import test_urgent_cli as urgent
from tests.e2e.replay_helpers import CAN, DBC, REPO
from tests.e2e.test_urgent_cli import SECRET, TIMEOUT_S, service
from tests.polling import wait_until
from tests.processes import cli, cli_env

pytestmark = [pytest.mark.e2e, pytest.mark.broker]
cli_broker = urgent.cli_broker
"""The fixture: ``fleetcare broker`` in its own process, on a free port."""

TRUCK_LOG = CAN / "truck_j1939_tp" / "00000001-60B621D9.candump.log"
TRUCK_DBC = DBC / "CSS-Electronics-SAE-J1939-DEMO.dbc"
TRUCK_VIN = "1L06130RELP969468"
REGISTERED_VIN = "WVWZZZ1JZXW000001"
P0AA6 = 0x0AA6
VEHICLE_HEADER = "vehicle_id,vin,model,model_year,region,centre_id,customer_id\n"


def _ingest(broker_url: str, db: Path, register: Path, *flags: str,
            env: dict[str, str] | None = None) -> Background:
    ingest = service(cli("-v", "ingest", "--broker", broker_url, "--db", str(db),
                          "--client-id", f"ingest-{uuid.uuid4().hex[:8]}", "--vehicles",
                          str(register), "--flush-interval", "0.05", *flags), env or cli_env())
    ingest.wait_for_text("ingesting")
    return ingest


def _run(*args: str) -> dict[str, object]:
    done = subprocess.run(cli(*args), cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=TIMEOUT_S * 2)
    assert done.returncode == 0, done.stderr
    summary: dict[str, object] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return summary


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with store.connect_readonly(db) as con:
        return [tuple(row) for row in con.execute(sql).fetchall()]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_truck_logs_vin_lands_in_vehicle_info(cli_broker: str, tmp_path: Path) -> None:
    vehicle = f"TRUCK-{uuid.uuid4().hex[:6]}"
    register = tmp_path / "vehicles.csv"
    register.write_text(VEHICLE_HEADER + f"{vehicle},{TRUCK_VIN},Demo Truck,2019,north,,\n")
    db = tmp_path / "fleet.duckdb"
    ingest = _ingest(cli_broker, db, register)
    try:
        summary = _run("edge", "replay", str(TRUCK_LOG), "--dbc", str(TRUCK_DBC), "--taps",
                       "j1939", "--broker", cli_broker, "--vehicle", vehicle, "--spool-dir",
                       str(tmp_path / "spool"))
    finally:
        status = ingest.stop()
    assert status == 0, ingest.lines
    assert summary["drained"] is True and summary["vin"] == TRUCK_VIN, summary
    assert summary["vin_source"] == "j1939_feec"
    rows = _rows(db, "SELECT vehicle_id, vin, vin_source, agent_version, dbc_fingerprints,"
                     " rules_fingerprint, reports FROM vehicle_info ORDER BY vin NULLS FIRST")
    started, read = rows
    assert started[:3] == (vehicle, None, "none")  # the agent's start, before any frame
    assert read[:3] == (vehicle, TRUCK_VIN, "j1939_feec")
    for row in rows:
        assert orjson.loads(str(row[4])) == {TRUCK_DBC.name: _sha(TRUCK_DBC)}
        assert row[5] == _sha(REFERENCE_RULES) and row[6] == 1 and row[3]
    # Landed once per message id, like every other kind; the VIN matches the register.
    assert _rows(db, "SELECT count(*) FROM ingested_messages WHERE kind = 'vehicle_info'") == [
        (2,)]
    with store.connect_readonly(db) as con:
        (check,) = [c for c in check_health(con).checks if c.name == "vin_mismatch"]
    assert check.healthy, check.message


def test_simulated_vehicles_report_the_vins_their_register_lists(
        cli_broker: str, tmp_path: Path) -> None:
    seed = 23
    files = tmp_path / "master"
    _run("sim", "fleet", "--vehicles", "3", "--seed", str(seed), "--out", str(files))
    with (files / "vehicles.csv").open(newline="", encoding="utf-8") as handle:
        registered = {row["vehicle_id"]: row["vin"] for row in csv.DictReader(handle)}
    assert registered == {v: simulated_vin(seed, v) for v in registered}
    db = tmp_path / "fleet.duckdb"
    ingest = _ingest(cli_broker, db, files / "vehicles.csv")
    try:
        summary = _run("sim", "run", "--vehicles", "3", "--days", "2", "--seed", str(seed),
                       "--broker", cli_broker, "--spool-dir", str(tmp_path / "spools"))
    finally:
        status = ingest.stop()
    assert status == 0, ingest.lines
    assert summary["messages_undelivered"] == 0, summary
    read = _rows(db, "SELECT vehicle_id, vin, vin_source, reports FROM vehicle_info"
                     " WHERE vin IS NOT NULL ORDER BY vehicle_id")
    # Read on both mornings, reported once: the agent reports a VIN only when it is news.
    assert read == [(v, vin, "obd_mode09", 1) for v, vin in sorted(registered.items())]
    assert _rows(db, "SELECT count(*) FROM vehicle_info WHERE vin IS NULL") == [(3,)]


def _candump(frames: list[tuple[float, int, bytes]]) -> str:
    return "".join(f"({ts:.6f}) can0 {can_id:03X}#{data.hex().upper()}\n"
                   for ts, can_id, data in frames)


def test_another_cars_vin_holds_the_critical_lead_and_fails_the_health_check(
        cli_broker: str, tmp_path: Path) -> None:
    vehicle = f"MOVED-{uuid.uuid4().hex[:6]}"
    register = tmp_path / "vehicles.csv"
    register.write_text(VEHICLE_HEADER +
                        f"{vehicle},{REGISTERED_VIN},Aurora EV,2024,north,,cust-1\n")
    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,name,phone,email,language,contact_consent\n"
                         "cust-1,Ada Berger,+49 30 1234567,ada@example.com,de,true\n")
    # The gateway now sits in another car: its bus answers the VIN request with that car's
    # VIN, then reports a critical fault (P0AA6, HV isolation).
    now = time.time() - 5
    other = simulated_vin(1, "another car")
    dtc = load_dbcs([REFERENCE_DBC])[0].get_message_by_name("DIAG_DtcReport")
    fault = dtc.encode({"DtcCode": P0AA6, "DtcStatus": 1, "EcuAddress": 0x10, "DtcCount": 1})
    log = tmp_path / "moved.log"
    log.write_text(_candump([(f.timestamp, f.arbitration_id, bytes(f.data))
                             for f in vin_exchange(other, now)]
                            + [(now + 1, dtc.frame_id, bytes(fault))]))
    db, snapshot = tmp_path / "fleet.duckdb", tmp_path / "snapshot.duckdb"
    with CrmReceiver(SECRET, validate=True) as crm:
        ingest = _ingest(cli_broker, db, register, "--customers", str(customers),
                         "--snapshot", str(snapshot), "--maintenance-interval", "1",
                         env=cli_env(crm_url=crm.url, crm_secret=SECRET))
        try:
            assert any("urgent leads on" in line for line in ingest.lines), ingest.lines
            summary = _run("edge", "replay", str(log), "--dbc", str(REFERENCE_DBC), "--taps",
                           "obd", "--broker", cli_broker, "--vehicle", vehicle, "--spool-dir",
                           str(tmp_path / "spool"))
            assert summary["vin"] == other and summary["dtc_events"] == 1, summary
            assert wait_until(lambda: _leads(snapshot) != [], TIMEOUT_S, 0.2), ingest.lines
        finally:
            status = ingest.stop()
        assert status == 0, ingest.lines
        assert (crm.received_count, crm.rejected_count) == (0, 0)  # nothing went out
    assert _rows(db, "SELECT vehicle_id, state, hold_reason FROM leads") == [
        (vehicle, "held", "vin_mismatch")]
    assert _rows(db, "SELECT count(*) FROM outbox") == [(0,)]
    with store.connect_readonly(db) as con:
        report = check_health(con, now=dt.datetime.now(dt.UTC))
    (check,) = [c for c in report.checks if c.name == "vin_mismatch"]
    assert not check.healthy
    assert f"{vehicle} (registered {REGISTERED_VIN}, bus {other})" in check.message
    shown = subprocess.run(cli("fleet", "show", vehicle, "--db", str(db), "--json"), cwd=REPO,
                           env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert shown.returncode == 0, shown.stderr
    assert orjson.loads(shown.stdout)["vin"] == {
        "registered": REGISTERED_VIN, "on_bus": other, "source": "obd_mode09", "mismatch": True}


def _leads(snapshot: Path) -> list[tuple[object, ...]]:
    if not snapshot.exists():
        return []
    try:
        return _rows(snapshot, "SELECT lead_id FROM leads")
    except duckdb.Error:  # replaced while we opened it: the next poll reads the new one
        return []

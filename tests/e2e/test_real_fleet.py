"""Onboarding a real fleet end to end: imported master data, four real recordings, a real CRM.

Four registered vehicles (a Hyundai Kona and a Subaru WRX recorded as candump text, an OBD-II
car and a J1939 truck recorded as MF4) are replayed from the shared real recordings by
``fleetcare edge replay`` processes, each read through the signal profile its register row's
``model`` picks, into a real ``fleetcare ingest`` process on mosquitto. Their customers,
centre, capacity and repair history are hand-written CSV files imported with ``fleetcare
fleet import`` and ``fleetcare service import``, exactly as a dealer system's exports would be.

The recordings last seconds, so on their own they can neither train a model nor show a trend.
What this test does about it (the README's walk-through does the same): the models are
trained on a simulated fleet in the same store, onboarded through the very same doors
(``fleetcare sim fleet`` writes its dealer files, ``fleetcare fleet import`` and ``fleetcare
service import`` take them in, ``fleetcare sim run`` drives its buses), and each recording is
replayed as the simulated fleet's last day (``--start-at``: every interval of the recording
kept). A recording then is one day of daily features for its vehicle, and a score is what each
promoted model says about that day, when the vehicle carries every signal the model requires;
a model that lacks one skips the vehicle and says which signals it lacks, rather than scoring
it from training medians. The maintenance flow then advises and delivers to a real HTTP CRM.

Finally the store is searched: every customer, centre and vehicle id in every table must be one
the imports brought in (the recordings bring telemetry and the truck's VIN, no ids).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import subprocess
from pathlib import Path

import orjson
import pytest

from edge.sim.simulator import make_fleet
from edge.sim.workshop import write_repair_orders
from flows.demo.maintenance import maintenance_flow
from pipeline.features.daily import build_daily_features
from pipeline.features.inputs import CRANK_DIP, alternatives
from pipeline.ml.registry import stored_inputs
from pipeline.sandbox.reference_crm import CrmReceiver
from pipeline.store import connection as store
from tests.background import Background
from tests.processes import cli, cli_env

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
CAN, DBC_DIR = SHARED / "can", SHARED / "dbc"
SECRET = "whsec_" + base64.b64encode(b"fleetcare-real-fleet-test-key").decode()
TIMEOUT_S = 300.0
"""A bound on a hung run, not a speed: several Python processes share two cores."""

SIM_VEHICLES, SIM_DAYS, SIM_SEED, SIM_FAILING = 12, 90, 5, "0.9"
"""Most of the twelve are placed near a failure, so the 12 V and brake models a real
recording can feed have failures to train on. Twelve vehicles hold too few failures for a
model to be promoted on its own evidence: the operator promotes the first models by hand."""
SIM_FLEET = ("--vehicles", str(SIM_VEHICLES), "--seed", str(SIM_SEED), "--failing-share",
             SIM_FAILING)
TRUCK_VIN = "1L06130RELP969468"
"""The VIN the truck's recording sends in PGN 0xFEEC: its register row says the same."""

# vehicle id -> (recording, model as the dealer system names it, VIN, customer)
REAL: dict[str, tuple[Path, str, str, str]] = {
    "KONA-0417": (CAN / "kona_2018" / "turnonlog.log", "Hyundai Kona", "KMHK381GFJU041700",
                  "cust-aino-virtanen"),
    "WRX-0932": (CAN / "subaru_wrx" / "cruise.log", "Subaru WRX", "JF1VA1A60G9809320",
                 "cust-pekka-laine"),
    "CAR-0288": (CAN / "car_obd2_gnss" / "00000002-60FE415D.MF4", "OBD-II car",
                 "WVWZZZ1KZ8W028800", "cust-maria-koski"),
    "TRUCK-0051": (CAN / "truck_j1939_tp" / "00000001-60B621D9.MF4", "J1939 truck", TRUCK_VIN,
                   "cust-harbour-freight"),
}
CENTRE = "centre-harbour"

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.slow]


def _run(*args: str) -> dict[str, object]:
    """One ``fleetcare`` command to its end; its last stdout line as JSON."""
    done = subprocess.run(cli(*args), cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, f"fleetcare {' '.join(args)}:\n{done.stderr}"
    try:  # some commands print one JSON document over several lines, others log lines first
        summary: dict[str, object] = orjson.loads(done.stdout)
    except orjson.JSONDecodeError:
        summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    return summary


def _ingest(broker_url: str, db: Path) -> Background:
    """``fleetcare -v ingest`` as its own process, once it says it is subscribed."""
    ingest = Background(
        cli("-v", "ingest", "--broker", broker_url, "--db", str(db), "--client-id",
            f"ingest-{db.parent.name}", "--flush-interval", "0.05"),
        cwd=REPO, env=cli_env(), name="fleetcare ingest", wait_s=TIMEOUT_S)
    ingest.wait_for_text("ingesting")
    return ingest


def _write(path: Path, header: str, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _real_master_data(folder: Path, today: dt.date) -> dict[str, Path]:
    """The dealer system's files for the four real vehicles, as a person would write them."""
    names = {"cust-aino-virtanen": "Aino Virtanen", "cust-pekka-laine": "Pekka Laine",
             "cust-maria-koski": "Maria Koski", "cust-harbour-freight": "Harbour Freight Oy"}
    return {
        "vehicles": _write(folder / "vehicles.csv",
                           "vehicle_id,vin,model,model_year,region,centre_id,customer_id",
                           [f"{v},{vin},{model},2019,north,{CENTRE},{customer}"
                            for v, (_, model, vin, customer) in REAL.items()]),
        "customers": _write(folder / "customers.csv",
                            "customer_id,name,phone,email,language,contact_consent",
                            [f"{c},{n},+358 9 {1000 + i:04d} {2000 + i:04d},"
                             f"{c.removeprefix('cust-')}@example.com,fi,true"
                             for i, (c, n) in enumerate(names.items())]),
        "centres": _write(folder / "centres.csv", "centre_id,name,region,timezone,bays",
                          [f"{CENTRE},Harbour Service,north,Europe/Helsinki,2"]),
        "capacity": _write(folder / "capacity.csv",
                           "centre_id,day,free_slots,technician_hours",
                           [f"{CENTRE},{today + dt.timedelta(days=d)},3,12.0"
                            for d in range(45)]),
    }


def _real_repair_orders(folder: Path) -> Path:
    return _write(folder / "repair_orders.csv",
                  "order_id,vehicle_id,vin,opened_at,odometer_km,component,operation_code,"
                  "kind,lead_id",
                  ["HRB-1001,KONA-0417,,2024-09-14T08:30:00Z,58410.0,lv_battery,LV-BAT-TEST,"
                   "inspection,",
                   f"HRB-1002,,{TRUCK_VIN},2025-03-02T07:15:00Z,,brakes,BRK-PAD-REPL,"
                   "preventive,"])


def _ids(path: Path, column: str) -> set[str]:
    with path.open(encoding="utf-8") as handle:
        return {row[column] for row in csv.DictReader(handle) if row.get(column)}


def test_four_real_recordings_onboarded_as_a_fleet_reach_the_crm(
    broker_url: str, tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "fleet.duckdb"
    today = dt.datetime.now(dt.UTC).date()
    start = today - dt.timedelta(days=SIM_DAYS)
    last_day = start + dt.timedelta(days=SIM_DAYS - 1)

    # Master data through the import door: the simulated fleet's files, then the real ones.
    sim = tmp_path / "sim"
    _run("sim", "fleet", *SIM_FLEET, "--start", str(today), "--out", str(sim))
    sim_files = {k: sim / f"{k}.csv" for k in
                 ("vehicles", "customers", "centres", "capacity", "catalogue")}
    real = _real_master_data(tmp_path / "real", today)
    for files in (sim_files, real):
        _run("fleet", "import", "--db", str(db),
             *[arg for kind, path in files.items() for arg in (f"--{kind}", str(path))])

    ingest = _ingest(broker_url, db)
    try:
        # The training fleet's buses, then the four recordings as the fleet's last day.
        _run("sim", "run", "--broker", broker_url, *SIM_FLEET, "--days", str(SIM_DAYS),
             "--start", str(start), "--snapshot-s", "0.25", "--spool-dir",
             str(tmp_path / "sim-spool"))
        replays = {}
        for n, (vehicle, (log, _, _, _)) in enumerate(REAL.items()):
            at = dt.datetime.combine(last_day, dt.time(9 + n), tzinfo=dt.UTC)
            replays[vehicle] = _run(
                "edge", "replay", str(log), "--register", str(real["vehicles"]), "--vehicle",
                vehicle, "--dbc-dir", str(DBC_DIR), "--broker", broker_url, "--start-at",
                at.isoformat(), "--state-dir", str(tmp_path / "replay-state"))
    finally:
        assert ingest.stop() == 0, ingest.lines
    assert {v: s["profile"] for v, s in replays.items()} == {
        "KONA-0417": "hyundai_kona", "WRX-0932": "subaru_wrx", "CAR-0288": "obd2_generic",
        "TRUCK-0051": "j1939_generic"}
    assert all(s["drained"] and s["completed"] for s in replays.values()), replays

    # The workshop history: the simulated fleet's and the real vehicles' own.
    sim_orders = write_repair_orders(
        tmp_path / "sim-orders",
        make_fleet(SIM_VEHICLES, seed=SIM_SEED, failing_share=float(SIM_FAILING),
                   start_ts=dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC).timestamp()),
        start_ts=dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC).timestamp(),
        days=SIM_DAYS)
    for orders in (sim_orders, _real_repair_orders(tmp_path / "real")):
        _run("service", "import", "--db", str(db), str(orders))

    monkeypatch.setenv("FLEETCARE_PIPELINE__CRM_SECRET", SECRET)
    with CrmReceiver(SECRET) as crm:
        first = maintenance_flow(str(db), crm.url, horizon_days=30, seed=0)
        # Too few held-out failures: registered, not promoted, and the operator is told so.
        trained = [m for m in first["models"] if m["model_id"] is not None]
        assert trained and not any(m["promoted"] for m in trained), first["models"]
        assert all("registered, not promoted" in m["promotion"]["reason"] for m in trained)
        for model in trained:
            forced = _run("models", "promote", "--db", str(db), model["model_id"], "--force")
            assert forced["promoted"] is True, forced
        result = maintenance_flow(str(db), crm.url, horizon_days=30, seed=0)
        received = crm.leads()

    with store.connect_readonly(db) as con:
        carried = {v: {s for (s,) in con.execute(
            "SELECT DISTINCT signal FROM telemetry WHERE vehicle_id = ?", [v]).fetchall()}
            for v in REAL}
        features = build_daily_features(con)
        promoted = con.execute("SELECT component, features, required_signals, "
                               "optional_signals FROM model_registry WHERE promoted").fetchall()
        real_scores = con.execute("SELECT DISTINCT vehicle_id, component FROM scores WHERE "
                                  "list_contains(?, vehicle_id)", [list(REAL)]).fetchall()
        truck_vin = con.execute("SELECT vin FROM vehicle_info WHERE vehicle_id = 'TRUCK-0051' "
                                "AND vin IS NOT NULL").fetchall()
        odometer = con.execute("SELECT max(value) FROM telemetry WHERE vehicle_id = "
                               "'KONA-0417' AND signal = 'Vehicle.TraveledDistance'").fetchone()
        found_ids = _ids_in_every_table(con)

    # Each recording is one day of daily features, on the day it was replayed as.
    for vehicle in REAL:
        days = features.filter(features["vehicle_id"] == vehicle)["day"].to_list()
        assert days == [last_day], (vehicle, days)
    assert odometer is not None and odometer[0] == pytest.approx(60832.1)
    assert truck_vin == [(TRUCK_VIN,)]
    assert {"Vehicle.LowVoltageBattery.CurrentVoltage", "Vehicle.Speed"} <= carried["CAR-0288"]

    # A score from every promoted model whose required signals a vehicle carries, and from
    # no other: the others skip it and name what it lacks.
    assert promoted, result["models"]
    scoring = result["scoring"]
    assert str(scoring["as_of"]) == str(last_day)
    skipped = {(v, c["component"]): tuple(group["missing_signals"])
               for c in scoring["components"] for group in c["skipped"]
               for v in group["vehicle_ids"]}
    expected_scores = set()
    for component, model_features, required_signals, optional_signals in promoted:
        required = stored_inputs(model_features, required_signals, optional_signals,
                                 component).required
        for vehicle in REAL:
            missing = tuple(sorted(i for i in required
                                   if not set(alternatives(i)) & carried[vehicle]))
            if missing:
                assert skipped[(vehicle, component)] == missing, (vehicle, component)
            else:
                expected_scores.add((vehicle, component))
    assert set(real_scores) == expected_scores
    # The OBD-II car's PID 0x42 voltage is what the 12 V model requires; its engine runs
    # throughout the recording, so there is no crank, and no 0xA6 odometer: both imputed.
    assert ("CAR-0288", "lv_battery") in expected_scores
    assert replays["CAR-0288"]["crank_events"] == 0  # its profile watches; no start recorded
    # fleetcare fleet coverage says the same, vehicle by vehicle.
    coverage = _run("fleet", "coverage", "--db", str(db), "--json")
    assert coverage["as_of"] == str(last_day)
    by_vehicle = {v["vehicle_id"]: v for v in coverage["vehicles"]}  # type: ignore[attr-defined]
    for vehicle, (_, model, _, _) in REAL.items():
        entry = by_vehicle[vehicle]
        assert entry["model"] == model
        assert {(vehicle, c) for c in entry["can_score"]} == {
            k for k in expected_scores if k[0] == vehicle}
        for m in entry["models"]:
            if not m["can_score"]:
                assert tuple(m["missing_required"]) == skipped[(vehicle, m["component"])]
    car_lv = next(m for m in by_vehicle["CAR-0288"]["models"] if m["component"] == "lv_battery")
    assert {CRANK_DIP, "Vehicle.TraveledDistance"} <= set(car_lv["missing_optional"])

    # Leads reached the CRM, each naming an imported customer; a real vehicle has one only
    # where a model scored it (none of the four recordings carries a fault code).
    imported_customers = _ids(sim_files["customers"], "customer_id") | set(
        c for _, _, _, c in REAL.values())
    delivered = first["delivery"]["delivered"] + result["delivery"]["delivered"]
    assert received and delivered == len(received)  # both runs' leads (and their revisions)
    assert {lead["customer"]["customer_id"] for lead in received} <= imported_customers
    assert {lead["vehicle"]["vehicle_id"] for lead in received} & set(REAL) <= {
        v for v, _ in expected_scores}

    # Provenance: every id in every table came from the imports.
    imported = {
        "vehicle_id": _ids(sim_files["vehicles"], "vehicle_id") | set(REAL),
        "customer_id": imported_customers,
        "centre_id": _ids(sim_files["centres"], "centre_id") | {CENTRE},
    }
    for column, values in found_ids.items():
        strays = {f"{table}: {value}" for table, value in values
                  if value not in imported[column]}
        assert not strays, f"{column} values that no import brought in: {sorted(strays)}"
    assert {t for t, _ in found_ids["vehicle_id"]} >= {"telemetry", "vehicles", "scores",
                                                       "leads", "repair_orders"}


def _ids_in_every_table(con: object) -> dict[str, set[tuple[str, str]]]:
    """(table, value) of every vehicle_id, customer_id and centre_id in the store's tables."""
    import duckdb

    assert isinstance(con, duckdb.DuckDBPyConnection)
    found: dict[str, set[tuple[str, str]]] = {"vehicle_id": set(), "customer_id": set(),
                                              "centre_id": set()}
    columns = con.execute(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_schema, table_name) "
        "WHERE t.table_type = 'BASE TABLE' AND c.column_name IN "
        "('vehicle_id', 'customer_id', 'centre_id')").fetchall()
    for table, column in columns:
        for (value,) in con.execute(
                f'SELECT DISTINCT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL'
        ).fetchall():
            found[column].add((table, str(value)))
    return found

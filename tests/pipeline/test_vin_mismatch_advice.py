"""Scheduled advice and a VIN mismatch: the moved gateway's lead is held, never reaches a real
HTTP CRM, and goes out once the register names the car the gateway now sits in."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest
from synth_fleet import START, Car, build_store, day

from edge.sim.vins import simulated_vin
from edge.wire import contract
from pipeline.crm.outbox import deliver_outbox
from pipeline.ingest.landing import InboundMessage, land
from pipeline.leads.advice import advise
from pipeline.sandbox.reference_crm import CrmReceiver
from tests.master_data import import_master_data

SECRET = "whsec_" + base64.b64encode(b"fleetcare-vin-mismatch-test-key").decode()
NOW = START + dt.timedelta(days=29, hours=18)
STAYED, MOVED = "ev-stayed", "ev-moved"
OTHER_CAR = simulated_vin(99, "the car the gateway went to")


def _report(con: duckdb.DuckDBPyConnection, vehicle: str, vin: str, ts: float) -> None:
    info = contract.VehicleInfo(f"{vehicle}-{ts}", vehicle, ts, vin, "obd_mode09", "0.4.0")
    land(con, [InboundMessage(contract.vehicle_info_topic(vehicle), contract.encode(info), ts)])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Two EVs whose brakes score 0.9; both registered with VINs, with customers who consent;
    one gateway reports its car's VIN, the other another car's."""
    path = tmp_path / "fleet.duckdb"
    with build_store(path, [Car(v, fails={"brakes": 35}) for v in (STAYED, MOVED)], 30) as con:
        import_master_data(con, start=day(29))
        con.execute("INSERT INTO model_registry (model_id, component, features, metrics,"
                    " artifact, promoted) VALUES ('m-brakes', 'brakes', [], ?, ''::BLOB, true)",
                    [json.dumps({"threshold": 0.5, "horizon_days": 30})])
        for vehicle in (STAYED, MOVED):
            con.execute("INSERT INTO scores (vehicle_id, component, as_of, probability,"
                        " horizon_days, model_id) VALUES (?, 'brakes', ?, 0.9, 30, 'm-brakes')",
                        [vehicle, day(29)])
        registered = dict(con.execute("SELECT vehicle_id, vin FROM vehicles").fetchall())
        assert all(registered.values())
        ts = (START + dt.timedelta(days=29)).timestamp()
        _report(con, STAYED, registered[STAYED], ts)
        _report(con, MOVED, OTHER_CAR, ts)
    return path


def _leads(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str | None]]:
    return {v: (s, h) for v, s, h in con.execute(
        "SELECT vehicle_id, state, hold_reason FROM leads").fetchall()}


def test_the_moved_gateways_lead_is_held_until_the_register_is_put_right(db: Path) -> None:
    with duckdb.connect(str(db)) as con, CrmReceiver(SECRET) as crm:
        report = advise(con, now=NOW)
        assert (report.new, report.held) == (1, 1)
        assert _leads(con) == {STAYED: ("new", None), MOVED: ("held", "vin_mismatch")}
        deliver_outbox(con, url=crm.url, secret=SECRET, now=NOW)
        assert [d["vehicle"]["vehicle_id"] for d in crm.leads()] == [STAYED]
        # The register now names the car the gateway sits in: the next run releases the lead.
        con.execute("UPDATE vehicles SET vin = ? WHERE vehicle_id = ?", [OTHER_CAR, MOVED])
        later = NOW + dt.timedelta(hours=1)
        assert advise(con, now=later).released == 1
        assert _leads(con)[MOVED] == ("new", None)
        deliver_outbox(con, url=crm.url, secret=SECRET, now=later)
        assert sorted(d["vehicle"]["vehicle_id"] for d in crm.leads()) == [MOVED, STAYED]

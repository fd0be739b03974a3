"""The walking skeleton end to end: CAN frames on virtual buses to a signed lead in a CRM.

Everything is real: python-can virtual buses, unmodified edge agents with their on-disk
spools, the MQTT broker (mosquitto when installed), the ingest loop writing a DuckDB file in
tmp_path, a Prefect flow under the test harness, and an HTTP CRM receiver on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from edge.config import REFERENCE_RULES
from edge.rules import load_rules
from edge.sim.fleet import run_fleet
from edge.sim.masterdata import vehicles_of, write_master_data
from edge.sim.simulator import VehicleSpec
from edge.sim.workshop import write_repair_orders
from flows.demo.maintenance import maintenance_flow
from pipeline.fleet import import_fleet
from pipeline.ingest.service import Ingestor
from pipeline.sandbox.reference_crm import CrmReceiver
from pipeline.service import import_repair_orders
from pipeline.store import connection as store

DAYS = 60
START = (dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)
         - dt.timedelta(days=DAYS)).timestamp()
"""The simulated days end today: the flow advises on the real date, and a lead on evidence
older than evidence_max_age_days would be held, not sent."""
FLEET = [
    VehicleSpec("EV-FAILING", "ev", "central", seed=11, battery_soh=71.5),
    VehicleSpec("ICE-BRAKES", "ice", "south", seed=14, pad_wear=88.0),  # fails after day 60
    VehicleSpec("EV-HEALTHY", "ev", "south", seed=13, battery_soh=99.0, pad_wear=5.0,
                lv_resistance_mohm=4.0),
]
SECRET = "whsec_ZmxlZXRjYXJlLWUyZS10ZXN0LXNlY3JldA=="


@pytest.mark.e2e
@pytest.mark.broker
@pytest.mark.slow
def test_simulated_fleet_reaches_the_crm(
    broker_url: str, db_path: Path, tmp_path: Path, prefect_harness: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fleet's master data as its DMS exports it (the simulator invents the dealer network),
    # imported as `fleetcare fleet import` does: the register, customers, centres, capacity.
    dealer = write_master_data(tmp_path / "dms", vehicles_of(FLEET), seed=0,
                               start=dt.datetime.now(dt.UTC).date())
    with store.connect(db_path) as con:
        import_fleet(con, dealer)
    # 40 simulated days go by in seconds: no rate limit.
    ingestor = Ingestor(broker_url, db_path, client_id=f"e2e-ingest-{tmp_path.name}",
                        rate_limit=None)
    ingestor.start()
    try:
        fleet = run_fleet(FLEET, broker_url, load_rules(REFERENCE_RULES), days=DAYS,
                          start_ts=START, spool_dir=tmp_path / "spool", snapshot_s=0.25)
        assert ingestor.wait_for(
            lambda s: s.messages_landed >= fleet.messages
            and s.telemetry_rows >= fleet.signals_spooled, timeout=120)
    finally:
        ingestor.stop()

    # No loss, no duplicates: every signal the agents decoded is one row, once.
    assert fleet.frames_read == fleet.frames_sent
    assert fleet.spool_dropped == 0
    with store.connect(db_path) as con:
        rows = con.execute("SELECT count(*) FROM telemetry").fetchone()
        distinct = con.execute(
            "SELECT count(*) FROM (SELECT DISTINCT msg_id, ts, signal FROM telemetry)"
        ).fetchone()
        truth = dict(con.execute(
            "SELECT vehicle_id || '/' || component, failure_ts IS NOT NULL FROM ground_truth"
        ).fetchall())
        codes = {r[0] for r in con.execute(
            "SELECT DISTINCT vehicle_id || '/' || code FROM dtc_events").fetchall()}
    assert rows is not None and distinct is not None
    assert rows[0] == fleet.signals_spooled == sum(
        s.signals_spooled for s in fleet.per_vehicle.values())
    assert distinct[0] == rows[0]  # a message landed twice would repeat (msg_id, ts, signal)
    assert truth["EV-FAILING/traction_battery"] and truth["ICE-BRAKES/brakes"]
    assert not any(v for k, v in truth.items() if k.startswith("EV-HEALTHY/"))
    assert "EV-FAILING/P0A80" in codes
    assert not any(c.startswith("EV-HEALTHY/") for c in codes)

    # The workshop's history, as its DMS exports it: the labels training learns from.
    orders = write_repair_orders(tmp_path / "dms", FLEET, start_ts=START, days=DAYS)
    with store.connect(db_path) as con:
        imported = import_repair_orders(con, orders)
    assert imported.inserted >= 1

    monkeypatch.setenv("FLEETCARE_PIPELINE__CRM_SECRET", SECRET)
    with CrmReceiver(SECRET) as crm:
        result = maintenance_flow(str(db_path), crm.url, horizon_days=30, seed=0)
        received = crm.leads()
    leads = {(lead["vehicle"]["vehicle_id"], lead["component"]) for lead in received}
    # EV-FAILING's pack failed on the road and was replaced (a roadside order in the window):
    # the order clears its P0A80, so the new pack raises no lead; ICE-BRAKES' pads are worn
    # and not replaced yet.
    assert ("EV-FAILING", "traction_battery") not in leads
    assert ("ICE-BRAKES", "brakes") in leads
    assert not any(vehicle == "EV-HEALTHY" for vehicle, _ in leads)
    assert result["delivery"]["delivered"] == len(received)

"""Critical faults: a lead at the CRM straight from ingest's commit, even with no bay free."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import jsonschema
import paho.mqtt.client as mqtt
import pytest
from synth_fleet import START, Car, add_dtc, build_store, day

import pipeline
from edge.wire import contract
from pipeline.broker.auth import parse_broker_url
from pipeline.ingest.service import Ingestor
from pipeline.leads.urgent import UrgentLeads
from pipeline.sandbox.reference_crm import CrmReceiver
from tests.master_data import import_master_data

SECRET = "whsec_" + base64.b64encode(b"fleetcare-urgent-test-key").decode()
NOW = START + dt.timedelta(days=29, hours=18)
SCHEMA = json.loads((Path(pipeline.__file__).parent / "leads" / "lead.schema.json").read_text())


@dataclass(frozen=True)
class Committed:
    """What ingest's after_commit hook receives about a batch (the part the hook reads)."""

    dtc_vehicle_ids: tuple[str, ...]


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """Two EVs with 30 days of telemetry; every centre fully booked for the whole calendar."""
    store = build_store(tmp_path / "fleet.duckdb", [Car("ev-1"), Car("ev-2")], 30)
    import_master_data(store, start=day(0))
    store.execute("UPDATE centre_capacity SET free_slots = 0")
    return store


def _state(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    return [tuple(r) for r in con.execute(
        "SELECT l.vehicle_id, l.state, o.status FROM leads l JOIN outbox o USING (lead_id)"
        " ORDER BY 1").fetchall()]


def test_critical_code_reaches_the_crm_at_once_without_a_free_bay(
    con: duckdb.DuckDBPyConnection,
) -> None:
    add_dtc(con, "ev-1", 29, "P0AA6")
    add_dtc(con, "ev-2", 29, "P0562")  # medium: waits for the scheduled advice
    with CrmReceiver(SECRET) as crm:
        hook = UrgentLeads(crm.url, SECRET, clock=lambda: NOW)
        hook(con, Committed(("ev-1", "ev-2")))
        assert hook.wait_idle(timeout=30)
        hook.close()
        (lead,) = crm.leads()
    jsonschema.validate(lead, SCHEMA)
    assert lead["vehicle"]["vehicle_id"] == "ev-1"
    assert (lead["severity"], lead["contact"], lead["roadside_assistance"]) == (
        "critical", "immediate", True)
    assert lead["proposed_appointment"] is None
    assert lead["customer"]["phone"]
    assert lead["evidence"]["fault_codes"][0]["code"] == "P0AA6"
    quoted = {item["signal"]: item for item in lead["evidence"]["signals"]}
    health = quoted["Vehicle.Powertrain.TractionBattery.StateOfHealth"]
    assert health["value"] > 0 and health["unit"] == "%"
    assert _state(con) == [("ev-1", "sent", "delivered")]
    assert hook.stats.leads_issued == 1 and hook.stats.delivered == 1


def test_repeated_reports_of_the_same_fault_send_one_lead(
    con: duckdb.DuckDBPyConnection,
) -> None:
    add_dtc(con, "ev-1", 29, "C1B02")
    with CrmReceiver(SECRET) as crm:
        hook = UrgentLeads(crm.url, SECRET, clock=lambda: NOW)
        for _ in range(3):
            hook(con, Committed(("ev-1",)))
        assert hook.wait_idle(timeout=30)
        hook.close()
        assert len(crm.leads()) == 1
    assert _state(con) == [("ev-1", "sent", "delivered")]


def test_crm_down_keeps_the_lead_pending_for_the_scheduled_delivery(
    con: duckdb.DuckDBPyConnection,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    add_dtc(con, "ev-2", 29, "P0AA6")
    hook = UrgentLeads(f"http://127.0.0.1:{port}/leads", SECRET, clock=lambda: NOW)
    hook(con, Committed(("ev-2",)))
    assert hook.wait_idle(timeout=30)
    hook.close()
    assert hook.stats.not_delivered == 1
    assert _state(con) == [("ev-2", "new", "pending")]
    row = con.execute("SELECT attempts, last_error FROM outbox").fetchone()
    assert row is not None and row[0] == 1 and "cannot reach" in row[1]


def test_batches_without_fault_codes_cost_nothing(con: duckdb.DuckDBPyConnection) -> None:
    hook = UrgentLeads("http://127.0.0.1:9/leads", SECRET, clock=lambda: NOW)
    hook(con, Committed(()))
    hook(con, object())
    assert hook.stats.batches_seen == 2
    assert _state(con) == []


@pytest.mark.broker
def test_ingest_hook_turns_a_landed_critical_code_into_a_lead(
    broker_url: str, db_path: Path, tmp_path: Path,
) -> None:
    with build_store(db_path, [Car("ev-live")], 2) as store:
        import_master_data(store)  # a customer who consents: the lead may go out
    now = time.time()
    batch = contract.DtcBatch(f"dtc-{tmp_path.name}", "ev-live",
                              [contract.DtcEvent(now - 1, "P0AA6", "stored", "0x10")])
    with CrmReceiver(SECRET) as crm:
        hook = UrgentLeads(crm.url, SECRET)
        ingestor = Ingestor(broker_url, db_path, client_id=f"urgent-{tmp_path.name}",
                            flush_interval_s=0.05, after_commit=hook)
        ingestor.start()
        try:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            client.connect(*parse_broker_url(broker_url))
            client.loop_start()
            client.publish(contract.dtc_topic("ev-live"), contract.encode(batch),
                           qos=1).wait_for_publish(10)
            client.loop_stop()
            client.disconnect()
            assert hook.wait_for(lambda s: s.delivered >= 1, timeout=30), hook.stats
        finally:
            ingestor.stop()
            hook.close()
        (lead,) = crm.leads()
    assert (lead["vehicle"]["vehicle_id"], lead["severity"]) == ("ev-live", "critical")
    assert lead["roadside_assistance"] is True


def test_warming_up_writes_nothing_and_the_first_lead_still_goes_out(
    con: duckdb.DuckDBPyConnection,
) -> None:
    add_dtc(con, "ev-1", 29, "P0AA6")  # landed before the warm-up: only a commit's hook call
    with CrmReceiver(SECRET) as crm:  # may raise its lead
        hook = UrgentLeads(crm.url, SECRET, clock=lambda: NOW)
        hook.warm_up(con)
        assert con.execute("SELECT count(*) FROM leads").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
        assert hook.stats == type(hook.stats)()
        hook(con, Committed(("ev-1",)))
        assert hook.wait_idle(timeout=30)
        hook.close()
        assert [lead["vehicle"]["vehicle_id"] for lead in crm.leads()] == ["ev-1"]
    assert _state(con) == [("ev-1", "sent", "delivered")]
    assert hook.critical_codes == {"P0AA6", "C1B01", "C1B02"}

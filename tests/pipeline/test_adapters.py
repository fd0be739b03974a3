"""Payload adapters: Salesforce Composite (Lead + ServiceAppointment) and ADF XML 1.0."""

from __future__ import annotations

import base64
import datetime as dt
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import duckdb
import pytest
from synth_fleet import START, Car, add_dtc, build_store, day

from pipeline.crm.adapters import adf_xml, render, salesforce_composite
from pipeline.crm.outbox import deliver_outbox
from pipeline.leads.advice import advise
from pipeline.sandbox.reference_crm import CrmReceiver
from tests.master_data import import_master_data

SECRET = "whsec_" + base64.b64encode(b"fleetcare-adapter-test-key").decode()
NOW = START + dt.timedelta(days=29, hours=18)


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """ev-1: a scored brake lead with an appointment; ev-2: a critical battery fault."""
    store = build_store(tmp_path / "fleet.duckdb", [Car("ev-1"), Car("ev-2")], 30)
    import_master_data(store, start=day(29))
    store.execute("INSERT INTO model_registry (model_id, component, features, metrics,"
                  " artifact, promoted) VALUES ('m', 'brakes', [], '{\"threshold\": 0.5}',"
                  " ''::BLOB, true)")
    store.execute("INSERT INTO scores (vehicle_id, component, as_of, probability, horizon_days,"
                  " model_id) VALUES ('ev-1', 'brakes', ?, 0.85, 30, 'm')", [day(29)])
    add_dtc(store, "ev-2", 29, "P0AA6")
    advise(store, now=NOW)
    return store


def _docs(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    rows = con.execute("SELECT vehicle_id, document FROM leads").fetchall()
    return {v: json.loads(d) for v, d in rows}


def test_salesforce_upserts_the_lead_and_books_the_proposed_slot(
    con: duckdb.DuckDBPyConnection,
) -> None:
    doc = _docs(con)["ev-1"]
    request = salesforce_composite(doc)
    lead, appointment = request["compositeRequest"]
    assert lead["method"] == "PATCH"
    assert lead["url"].endswith(f"/sobjects/Lead/Fleetcare_Lead_Id__c/{doc['lead_id']}")
    first, last = doc["customer"]["name"].split(" ")
    body = lead["body"]
    assert (body["FirstName"], body["LastName"], body["Phone"]) == (
        first, last, doc["customer"]["phone"])
    assert (body["Rating"], body["Failure_Probability__c"]) == ("Hot", 0.85)
    assert body["Estimated_Cost__c"] == doc["recommended_work"]["total_eur"]
    slot = doc["proposed_appointment"]
    assert appointment["body"]["ParentRecordId"] == "@{lead.id}"
    assert appointment["body"]["ArrivalWindowStartTime"] == slot["window_start"]
    assert appointment["body"]["Duration"] == doc["recommended_work"]["labour_hours"]


def test_salesforce_critical_lead_has_no_appointment(con: duckdb.DuckDBPyConnection) -> None:
    request = salesforce_composite(_docs(con)["ev-2"])
    (lead,) = request["compositeRequest"]
    assert lead["body"]["Roadside_Assistance__c"] is True
    assert "ROADSIDE ASSISTANCE" in lead["body"]["Description"]
    assert "P0AA6" in lead["body"]["Description"]


def test_adf_is_a_well_formed_prospect(con: duckdb.DuckDBPyConnection) -> None:
    doc = _docs(con)["ev-1"]
    text = adf_xml(doc)
    assert text.startswith('<?xml version="1.0"?>\n<?adf version="1.0"?>')
    prospect = ET.fromstring(text).find("prospect")
    assert prospect is not None
    assert prospect.findtext("id") == doc["lead_id"]
    assert prospect.findtext("requestdate") == doc["issued_at"]
    assert prospect.find("vehicle/stock") is None, "a VIN or vehicle id is not a stock number"
    assert prospect.findtext("vehicle/vin") == doc["vehicle"]["vin"]
    assert doc["vehicle"]["vin"] and len(doc["vehicle"]["vin"]) == 17
    assert prospect.findtext("vehicle/id[@source='fleetcare']") == "ev-1"
    assert (prospect.findtext("vehicle/comments") or "").startswith(doc["headline"])
    names = {n.get("part"): n.text for n in prospect.findall("customer/contact/name")}
    assert f"{names['first']} {names['last']}" == doc["customer"]["name"]
    assert prospect.findtext("customer/contact/email") == doc["customer"]["email"]
    assert prospect.findtext("vendor/id") == doc["centre"]["centre_id"]


def test_unknown_format_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="use one of"):
        render({}, "csv")


def test_adf_and_salesforce_are_delivered_signed_over_the_bytes_sent(
    con: duckdb.DuckDBPyConnection,
) -> None:
    con.execute("UPDATE outbox SET payload_format = 'adf' WHERE lead_id IN"
                " (SELECT lead_id FROM leads WHERE vehicle_id = 'ev-2')")
    with CrmReceiver(SECRET) as crm:
        report = deliver_outbox(con, url=crm.url, secret=SECRET, now=NOW,
                                payload_format="salesforce")
        received = crm.leads()
    assert report.delivered == 2 and crm.rejected_count == 0
    kinds = sorted("xml" if "xml" in d else "composite" for d in received)
    assert kinds == ["composite", "xml"]
    xml = next(d for d in received if "xml" in d)
    assert xml["format"] == "adf" and "P0AA6" in xml["xml"]

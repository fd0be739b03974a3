"""Campaigns: pre-winter 12 V checks, 90-day reminders, post-visit follow-ups; none twice."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import jsonschema
import pytest
from synth_fleet import START, Car, build_store, day

import pipeline
from pipeline.crm.outbox import deliver_outbox
from pipeline.leads.campaigns import (
    pre_winter_battery_check,
    send_follow_ups,
    visit_reminders,
)
from pipeline.sandbox.reference_crm import CrmReceiver
from tests.master_data import import_master_data

SECRET = "whsec_" + base64.b64encode(b"fleetcare-campaign-test-key").decode()
NOW = START + dt.timedelta(days=29, hours=18)
SCHEMA = json.loads((Path(pipeline.__file__).parent / "leads" / "lead.schema.json").read_text())


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """A weak and a healthy 12 V battery in the north (frost in 5 days), a weak one south."""
    cars = [Car("weak-north", fails={"lv_battery": 40}), Car("ok-north"),
            Car("weak-south", fails={"lv_battery": 40}, region="south")]
    store = build_store(tmp_path / "fleet.duckdb", cars, 30)
    import_master_data(store, start=day(29))
    for i in range(1, 15):
        store.execute("INSERT INTO region_forecasts VALUES ('north', ?, ?), ('south', ?, 8.0)",
                      [day(29 + i), 3.0 if i < 5 else -6.0, day(29 + i)])
    return store


def _outbox(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    return [json.loads(r[0]) for r in con.execute("SELECT body FROM outbox ORDER BY event_id")
            .fetchall()]


def test_pre_winter_check_reaches_weak_batteries_in_cold_regions_once(
    con: duckdb.DuckDBPyConnection,
) -> None:
    report = pre_winter_battery_check(con, now=NOW, threshold_c=0.0)
    assert report.contacted == ("weak-north",)
    (lead,) = _outbox(con)
    jsonschema.validate(lead, SCHEMA)
    assert (lead["campaign"], lead["component"], lead["severity"]) == (
        "pre_winter_12v", "lv_battery", "low")
    frost = day(29 + 5)
    booked = dt.date.fromisoformat(lead["proposed_appointment"]["day"])
    assert day(29) < booked <= frost, "the check happens before the first frost"
    assert pre_winter_battery_check(con, now=NOW).contacted == ()
    assert pre_winter_battery_check(con, now=NOW, threshold_c=10.0).contacted == (
        "weak-south",), "a warmer threshold reaches the south too, the north is not repeated"


def _sent_lead(con: duckdb.DuckDBPyConnection, vehicle: str) -> str:
    pre_winter_battery_check(con, now=NOW)
    con.execute("UPDATE leads SET state = 'sent'")
    row = con.execute("SELECT lead_id FROM leads WHERE vehicle_id = ?", [vehicle]).fetchone()
    assert row is not None
    return str(row[0])


def test_open_advisory_without_a_visit_for_90_days_is_reminded_once(
    con: duckdb.DuckDBPyConnection,
) -> None:
    lead_id = _sent_lead(con, "weak-north")
    assert visit_reminders(con, now=NOW + dt.timedelta(days=89)).contacted == ()
    later = NOW + dt.timedelta(days=91)
    assert visit_reminders(con, now=later).contacted == ("weak-north",)
    assert visit_reminders(con, now=later + dt.timedelta(days=1)).contacted == ()
    (reminder,) = [b for b in _outbox(con) if b["campaign"] == "no_visit_90d"]
    assert reminder["lead_id"] == lead_id
    jsonschema.validate(reminder, SCHEMA)


def test_a_recent_visit_means_no_reminder(con: duckdb.DuckDBPyConnection) -> None:
    _sent_lead(con, "weak-north")
    later = NOW + dt.timedelta(days=91)
    con.execute("INSERT INTO service_visits VALUES ('weak-north', ?, 'centre-north', NULL)",
                [later - dt.timedelta(days=10)])
    assert visit_reminders(con, now=later).contacted == ()


def test_follow_up_goes_out_24_hours_after_the_visit(con: duckdb.DuckDBPyConnection) -> None:
    lead_id = _sent_lead(con, "weak-north")
    visit = NOW + dt.timedelta(days=3)
    con.execute("UPDATE leads SET state = 'done'")
    con.execute("INSERT INTO follow_ups VALUES (?, 'weak-north', 'post_visit', ?, ?, NULL)",
                [lead_id, visit + dt.timedelta(hours=24), visit])
    assert send_follow_ups(con, now=visit + dt.timedelta(hours=23)).contacted == ()
    due = visit + dt.timedelta(hours=24)
    assert send_follow_ups(con, now=due).contacted == ("weak-north",)
    assert send_follow_ups(con, now=due + dt.timedelta(hours=1)).contacted == ()
    with CrmReceiver(SECRET) as crm:
        deliver_outbox(con, url=crm.url, secret=SECRET, now=due)
        campaigns = sorted(str(d["campaign"]) for d in crm.leads())
    assert campaigns == ["post_visit_follow_up", "pre_winter_12v"]


def test_winter_command_loads_the_forecast_and_runs_once(
    con: duckdb.DuckDBPyConnection, tmp_path: Path,
) -> None:
    db = con.execute("SELECT path FROM duckdb_databases() WHERE NOT internal").fetchone()
    assert db is not None
    con.execute("DELETE FROM region_forecasts")
    con.close()
    forecast = tmp_path / "forecast.csv"
    forecast.write_text("region,day,min_temp_c\n" + "".join(
        f"north,{day(29 + i)},{-4.0 if i > 2 else 5.0}\n" for i in range(1, 10)))
    command = [sys.executable, "-m", "flows.cli", "campaigns", "winter", "--db", db[0],
               "--forecast", str(forecast), "--now", NOW.isoformat()]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["contacted"] == ["weak-north"]
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert json.loads(again.stdout)["contacted"] == []


def test_a_customer_without_consent_gets_a_held_winter_lead_and_no_reminder(
    con: duckdb.DuckDBPyConnection,
) -> None:
    con.execute("UPDATE customers SET contact_consent = false WHERE customer_id ="
                " 'cust-weak-north'")
    assert pre_winter_battery_check(con, now=NOW).contacted == ()
    assert con.execute("SELECT vehicle_id, state, hold_reason FROM leads").fetchall() == [
        ("weak-north", "held", "no_consent")]
    assert _outbox(con) == []
    assert con.execute("SELECT count(*) FROM campaign_contacts").fetchall() == [(0,)]
    assert pre_winter_battery_check(con, now=NOW).contacted == ()  # the held lead blocks
    con.execute("UPDATE leads SET state = 'sent', hold_reason = NULL")  # as if sent before
    assert visit_reminders(con, now=NOW + dt.timedelta(days=91)).contacted == ()

"""Held leads: a vehicle without a customer on record, or whose customer said no to contact,
gets a lead the CRM never sees until the master data is put right."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from synth_fleet import START, Car, add_dtc, build_store, day

from pipeline.crm.outbox import deliver_outbox
from pipeline.leads.advice import AdviceReport, advise
from pipeline.leads.holds import HOLD_RULES, HoldReason, hold_reasons
from pipeline.leads.urgent import UrgentLeads
from pipeline.ops.health import check_health, record_health
from pipeline.sandbox.reference_crm import CrmReceiver
from tests.e2e.replay_helpers import REPO
from tests.master_data import import_master_data

SECRET = "whsec_" + base64.b64encode(b"fleetcare-held-leads-test-key").decode()
NOW = START + dt.timedelta(days=29, hours=18)
OK, NO_CUSTOMER, NO_CONSENT = "ev-ok", "ev-orphan", "ev-private"


@dataclass(frozen=True)
class Committed:
    """What ingest's after_commit hook reads of a committed batch."""

    dtc_vehicle_ids: tuple[str, ...]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Three EVs with brakes near failure and a brakes score of 0.9 each; master data imported,
    then one vehicle's customer link removed and one customer's consent withdrawn."""
    path = tmp_path / "fleet.duckdb"
    cars = [Car(v, fails={"brakes": 35}) for v in (OK, NO_CUSTOMER, NO_CONSENT)]
    with build_store(path, cars, 30) as con:
        import_master_data(con, start=day(29))
        con.execute("UPDATE vehicles SET customer_id = NULL WHERE vehicle_id = ?", [NO_CUSTOMER])
        con.execute("UPDATE customers SET contact_consent = false WHERE customer_id = ?",
                    [f"cust-{NO_CONSENT}"])
        con.execute("INSERT INTO model_registry (model_id, component, features, metrics,"
                    " artifact, promoted) VALUES ('m-brakes', 'brakes', [], ?, ''::BLOB, true)",
                    [json.dumps({"threshold": 0.5, "horizon_days": 30})])
        for vehicle in (OK, NO_CUSTOMER, NO_CONSENT):
            con.execute("INSERT INTO scores (vehicle_id, component, as_of, probability,"
                        " horizon_days, model_id) VALUES (?, 'brakes', ?, 0.9, 30, 'm-brakes')",
                        [vehicle, day(29)])
    return path


def _leads(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str | None]]:
    return {v: (s, h) for v, s, h in con.execute(
        "SELECT vehicle_id, state, hold_reason FROM leads").fetchall()}


def _outbox_vehicles(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT l.vehicle_id FROM outbox o JOIN leads l USING (lead_id) ORDER BY 1").fetchall()]


def test_leads_without_a_customer_or_consent_are_held_and_never_reach_the_crm(
        db: Path) -> None:
    with duckdb.connect(str(db)) as con, CrmReceiver(SECRET) as crm:
        slots = con.execute("SELECT sum(free_slots) FROM centre_capacity").fetchone()
        report = advise(con, now=NOW)
        assert report == AdviceReport(new=1, escalated=0, unchanged=0, held=2)
        assert _leads(con) == {OK: ("new", None), NO_CUSTOMER: ("held", "no_customer"),
                               NO_CONSENT: ("held", "no_consent")}
        assert _outbox_vehicles(con) == [OK]
        # only the lead that may go out took a slot
        after = con.execute("SELECT sum(free_slots) FROM centre_capacity").fetchone()
        assert slots is not None and after is not None and after[0] == slots[0] - 1
        delivered = deliver_outbox(con, url=crm.url, secret=SECRET, now=NOW)
        assert delivered.delivered == 1
        assert [d["vehicle"]["vehicle_id"] for d in crm.leads()] == [OK]
        assert crm.received_count == 1
        # advice again: still held, nothing new queued
        assert advise(con, now=NOW).held == 2
        assert _outbox_vehicles(con) == [OK]


def test_a_held_lead_is_released_once_the_master_data_is_fixed(db: Path) -> None:
    with duckdb.connect(str(db)) as con, CrmReceiver(SECRET) as crm:
        advise(con, now=NOW)
        con.execute("UPDATE customers SET contact_consent = true WHERE customer_id = ?",
                    [f"cust-{NO_CONSENT}"])
        report = advise(con, now=NOW + dt.timedelta(hours=1))
        assert (report.released, report.held) == (1, 1)
        assert _leads(con)[NO_CONSENT] == ("new", None)
        deliver_outbox(con, url=crm.url, secret=SECRET, now=NOW + dt.timedelta(hours=1))
        sent = {d["vehicle"]["vehicle_id"]: d for d in crm.leads()}
    assert sorted(sent) == [OK, NO_CONSENT]
    assert sent[NO_CONSENT]["customer"]["customer_id"] == f"cust-{NO_CONSENT}"
    assert sent[NO_CONSENT]["proposed_appointment"] is not None


def test_ingests_urgent_path_holds_too(db: Path) -> None:
    with duckdb.connect(str(db)) as con, CrmReceiver(SECRET) as crm:
        add_dtc(con, NO_CUSTOMER, 29, "P0AA6")  # critical: the urgent path's lead
        hook = UrgentLeads(crm.url, SECRET, clock=lambda: NOW)
        hook(con, Committed((NO_CUSTOMER,)))
        assert hook.wait_idle(timeout=30)
        hook.close()
        assert hook.stats.leads_issued == 0
        assert crm.received_count == 0
        assert _leads(con) == {NO_CUSTOMER: ("held", "no_customer")}
        assert _outbox_vehicles(con) == []


def test_leads_list_held_and_the_health_check_show_them(db: Path) -> None:
    with duckdb.connect(str(db)) as con:
        advise(con, now=NOW)
        first = check_health(con, now=NOW)
        record_health(con, first)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCARE_")}
    done = subprocess.run([sys.executable, "-m", "flows.cli", "leads", "list", "--held",
                           "--db", str(db)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.strip().splitlines()
    assert header.split("\t") == ["lead_id", "vehicle", "component", "severity", "hold_reason",
                                  "why"]
    held = {line.split("\t")[1]: line.split("\t")[4] for line in lines}
    assert held == {NO_CUSTOMER: "no_customer", NO_CONSENT: "no_consent"}
    assert all("consent" in line or "no customer" in line for line in lines)
    (check,) = [c for c in first.checks if c.name == "held_leads"]
    assert check.healthy and check.detail == {
        "total": 2, "by_reason": {"no_consent": 1, "no_customer": 1}}
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE customers SET contact_consent = false WHERE customer_id = ?",
                    [f"cust-{OK}"])
        add_dtc(con, OK, 29, "C1B02")  # brake fluid loss: critical, the lead escalates...
        report = advise(con, now=NOW + dt.timedelta(hours=1))
        assert (report.escalated, report.held) == (0, 3)  # ...and is held now
        (later,) = [c for c in check_health(con, now=NOW + dt.timedelta(hours=1)).checks
                    if c.name == "held_leads"]
    assert not later.healthy
    assert later.value == 1.0
    assert "leads list --held" in later.message


def test_every_reason_has_one_rule_and_a_vehicle_unknown_to_the_register_is_held(
        db: Path) -> None:
    assert sorted(r.reason for r in HOLD_RULES) == sorted(HoldReason)
    with duckdb.connect(str(db)) as con:
        assert hold_reasons(con, [OK, NO_CUSTOMER, NO_CONSENT, "never-registered"]) == {
            NO_CUSTOMER: HoldReason.NO_CUSTOMER, NO_CONSENT: HoldReason.NO_CONSENT,
            "never-registered": HoldReason.NO_CUSTOMER}


def test_consent_withdrawn_before_delivery_withholds_the_queued_lead(db: Path) -> None:
    with duckdb.connect(str(db)) as con, CrmReceiver(SECRET) as crm:
        advise(con, now=NOW)  # OK's lead is queued, not delivered yet
        slots = con.execute("SELECT sum(free_slots) FROM centre_capacity").fetchone()
        con.execute("UPDATE customers SET contact_consent = false WHERE customer_id = ?",
                    [f"cust-{OK}"])
        assert advise(con, now=NOW + dt.timedelta(hours=1)).held == 3
        assert _leads(con)[OK] == ("held", "no_consent")
        assert _outbox_vehicles(con) == []  # its undelivered row is withdrawn
        after = con.execute("SELECT sum(free_slots) FROM centre_capacity").fetchone()
        assert slots is not None and after is not None and after[0] == slots[0] + 1
        assert deliver_outbox(con, url=crm.url, secret=SECRET,
                              now=NOW + dt.timedelta(hours=1)).delivered == 0
        assert crm.received_count == 0
        con.execute("UPDATE customers SET contact_consent = true WHERE customer_id = ?",
                    [f"cust-{OK}"])
        assert advise(con, now=NOW + dt.timedelta(hours=2)).released == 1
        deliver_outbox(con, url=crm.url, secret=SECRET, now=NOW + dt.timedelta(hours=2))
        assert [d["vehicle"]["vehicle_id"] for d in crm.leads()] == [OK]


def test_delivery_skips_any_row_of_a_held_lead(db: Path) -> None:
    with duckdb.connect(str(db)) as con, CrmReceiver(SECRET) as crm:
        advise(con, now=NOW)
        (lead_id,) = con.execute("SELECT lead_id FROM leads WHERE vehicle_id = ?",
                                 [NO_CUSTOMER]).fetchone() or ("",)
        con.execute("INSERT INTO outbox (event_id, lead_id, body, next_attempt_at) VALUES"
                    " ('stray', ?, '{}', ?)", [lead_id, NOW])
        report = deliver_outbox(con, url=crm.url, secret=SECRET, now=NOW)
        assert report.delivered == 1  # OK's lead only
        assert [d["vehicle"]["vehicle_id"] for d in crm.leads()] == [OK]
        assert con.execute("SELECT status FROM outbox WHERE event_id = 'stray'"
                           ).fetchone() == ("pending",)

"""Leads: who gets one, deduplication, escalation, critical faults, the documented shape."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb
import jsonschema
import pytest
from synth_fleet import START, Car, add_dtc, build_store, day, register_stand_in_models

import pipeline
from pipeline.leads.advice import AdviceReport, advise
from tests.master_data import import_master_data

NOW = START + dt.timedelta(days=29, hours=18)
SCHEMA = json.loads((Path(pipeline.__file__).parent / "leads" / "lead.schema.json").read_text())


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """Three vehicles with 30 days of telemetry, reference data and one model per component.

    The models are registry rows with a threshold of 0.5: advice reads scores and thresholds,
    never the model itself, so the scores below are written directly.
    """
    cars = [Car("ev-sick", fails={"brakes": 35}), Car("ev-ok"),
            Car("ice-ok", ev=False, region="south")]
    store = build_store(tmp_path / "fleet.duckdb", cars, 30)
    import_master_data(store, start=day(29))
    register_stand_in_models(store)
    return store


def _score(con: duckdb.DuckDBPyConnection, vehicle: str, comp: str, p: float,
           horizon_days: int = 30) -> None:
    con.execute("INSERT OR REPLACE INTO scores (vehicle_id, component, as_of, probability,"
                " horizon_days, model_id) VALUES (?, ?, ?, ?, ?, ?)",
                [vehicle, comp, day(29), p, horizon_days, f"m-{comp}"])


def _leads(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    rows = con.execute("SELECT document FROM leads ORDER BY vehicle_id, component").fetchall()
    return [json.loads(r[0]) for r in rows]


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def _free_slots(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT sum(free_slots) FROM centre_capacity").fetchone()
    assert row is not None
    return int(row[0])


def test_vehicle_near_failure_gets_a_lead_and_healthy_ones_none(
    con: duckdb.DuckDBPyConnection,
) -> None:
    _score(con, "ev-sick", "brakes", 0.9)
    _score(con, "ev-ok", "brakes", 0.1)
    _score(con, "ice-ok", "lv_battery", 0.3)
    slots = _free_slots(con)
    assert advise(con, now=NOW) == AdviceReport(new=1, escalated=0, unchanged=0)
    (lead,) = _leads(con)
    jsonschema.validate(lead, SCHEMA)
    assert (lead["vehicle"]["vehicle_id"], lead["component"]) == ("ev-sick", "brakes")
    assert lead["severity"] == "high"
    assert lead["roadside_assistance"] is False
    assert lead["customer"]["name"]
    assert lead["centre"]["centre_id"] == "centre-north"
    quoted = {item["signal"]: item for item in lead["evidence"]["signals"]}
    assert quoted["pad_wear_max"]["value"] > 80
    assert quoted["pad_wear_max"]["unit"] == "%"
    assert lead["recommended_work"]["total_eur"] > lead["recommended_work"]["parts_eur"]
    booked = dt.date.fromisoformat(lead["proposed_appointment"]["day"])
    assert day(29) < booked <= day(59)
    assert _free_slots(con) == slots - 1
    body, = con.execute("SELECT body FROM outbox").fetchone() or ()
    assert json.loads(body) == lead


def test_a_lead_promises_its_models_horizon_per_component(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """Brake models look 60 days ahead, 12 V ones 30 (``scores.horizon_days`` comes from the
    model's metrics): each lead carries its own horizon, says it in words, books within it."""
    _score(con, "ev-sick", "brakes", 0.9, horizon_days=60)
    _score(con, "ice-ok", "lv_battery", 0.7, horizon_days=30)
    assert advise(con, now=NOW).new == 2
    leads = {lead["component"]: lead for lead in _leads(con)}
    for component, horizon in (("brakes", 60), ("lv_battery", 30)):
        lead = leads[component]
        jsonschema.validate(lead, SCHEMA)
        assert lead["horizon_days"] == horizon
        assert lead["confidence"]["text"].endswith(f"chance of a failure within {horizon} days")
        booked = dt.date.fromisoformat(lead["proposed_appointment"]["day"])
        assert day(29) < booked <= day(29 + horizon)
    rows = dict(con.execute("SELECT component, horizon_days FROM leads").fetchall())
    assert rows == {"brakes": 60, "lv_battery": 30}


def test_advising_twice_issues_one_lead(con: duckdb.DuckDBPyConnection) -> None:
    _score(con, "ev-sick", "brakes", 0.7)
    advise(con, now=NOW)
    assert advise(con, now=NOW) == AdviceReport(new=0, escalated=0, unchanged=1)
    assert _count(con, "leads") == 1
    assert _count(con, "outbox") == 1


def test_escalation_reissues_the_same_lead(con: duckdb.DuckDBPyConnection) -> None:
    _score(con, "ev-sick", "brakes", 0.6)
    advise(con, now=NOW)
    slots = _free_slots(con)
    _score(con, "ev-sick", "brakes", 0.65)
    assert advise(con, now=NOW).unchanged == 1, "a small rise is not an escalation"
    _score(con, "ev-sick", "brakes", 0.95)
    assert advise(con, now=NOW) == AdviceReport(new=0, escalated=1, unchanged=0)
    (lead,) = _leads(con)
    jsonschema.validate(lead, SCHEMA)
    assert (lead["revision"], lead["severity"], lead["probability"]) == (2, "high", 0.95)
    events = [r[0] for r in con.execute("SELECT event_id FROM outbox ORDER BY event_id")
              .fetchall()]
    assert events == [f"{lead['lead_id']}.r1", f"{lead['lead_id']}.r2"]
    assert _free_slots(con) == slots, "the old slot is released, a new one taken"


def test_critical_fault_code_means_roadside_not_booking(
    con: duckdb.DuckDBPyConnection,
) -> None:
    add_dtc(con, "ev-ok", 29, "P0AA6")
    slots = _free_slots(con)
    assert advise(con, now=NOW).new == 1
    (lead,) = _leads(con)
    jsonschema.validate(lead, SCHEMA)
    assert lead["component"] == "traction_battery"
    assert (lead["severity"], lead["contact"], lead["roadside_assistance"]) == (
        "critical", "immediate", True)
    assert lead["proposed_appointment"] is None
    assert lead["probability"] is None
    assert lead["evidence"]["fault_codes"][0]["code"] == "P0AA6"
    assert "isolation" in lead["evidence"]["fault_codes"][0]["description"]
    assert _free_slots(con) == slots


def test_fault_code_escalates_a_model_lead(con: duckdb.DuckDBPyConnection) -> None:
    _score(con, "ev-sick", "brakes", 0.6)
    advise(con, now=NOW)
    add_dtc(con, "ev-sick", 29, "C1B01")
    assert advise(con, now=NOW).escalated == 1
    (lead,) = _leads(con)
    assert lead["severity"] == "critical"
    assert lead["probability"] == 0.6
    assert [c["code"] for c in lead["evidence"]["fault_codes"]] == ["C1B01"]


def test_unknown_cleared_and_future_codes_make_no_lead(
    con: duckdb.DuckDBPyConnection,
) -> None:
    add_dtc(con, "ev-ok", 20, "P0300")
    add_dtc(con, "ev-ok", 20, "P0562")
    add_dtc(con, "ev-ok", 21, "P0562", cleared=True)
    add_dtc(con, "ice-ok", 31, "C1B00")
    assert advise(con, now=NOW) == AdviceReport(0, 0, 0)


def test_done_lead_allows_a_new_one(con: duckdb.DuckDBPyConnection) -> None:
    _score(con, "ev-sick", "brakes", 0.9)
    advise(con, now=NOW)
    con.execute("UPDATE leads SET state = 'done'")
    assert advise(con, now=NOW).new == 1
    assert _count(con, "leads") == 2


def test_appointment_needs_a_free_bay_and_enough_technician_hours(
    con: duckdb.DuckDBPyConnection,
) -> None:
    _score(con, "ev-sick", "brakes", 0.9)
    labour = con.execute("SELECT labour_hours FROM service_catalogue"
                         " WHERE component = 'brakes'").fetchone()
    assert labour is not None
    con.execute("UPDATE centre_capacity SET free_slots = 0, technician_hours = 40")
    con.execute("UPDATE centre_capacity SET free_slots = 2, technician_hours = ?"
                " WHERE centre_id = 'centre-north' AND day = ?", [labour[0] / 2, day(31)])
    con.execute("UPDATE centre_capacity SET free_slots = 1, technician_hours = 12"
                " WHERE centre_id = 'centre-north' AND day = ?", [day(33)])
    advise(con, now=NOW)
    (lead,) = _leads(con)
    jsonschema.validate(lead, SCHEMA)
    assert lead["proposed_appointment"]["day"] == day(33).isoformat(), "day 31 lacks technicians"
    left = con.execute("SELECT free_slots, technician_hours FROM centre_capacity"
                       " WHERE centre_id = 'centre-north' AND day = ?", [day(33)]).fetchone()
    assert left == (0, 12 - labour[0])


@pytest.mark.parametrize("wrapped", [False, True], ids=["scoring-list", "object"])
def test_score_explanation_becomes_the_leads_top_factors(
    con: duckdb.DuckDBPyConnection, wrapped: bool,
) -> None:
    """pipeline.ml.scoring writes ``[{"feature", "value", "contribution"}, ...]``."""
    factors = [{"feature": f"f{i}", "value": float(i), "contribution": 1.0 / (i + 1)}
               for i in range(7)]
    _score(con, "ev-sick", "brakes", 0.9)
    has_column = con.execute("SELECT count(*) FROM information_schema.columns WHERE"
                             " table_name = 'scores' AND column_name = 'explanation'").fetchone()
    if not has_column or not has_column[0]:
        pytest.skip("scores.explanation (migration 005) is not in this tree")
    explanation = {"top_factors": factors} if wrapped else factors
    con.execute("UPDATE scores SET explanation = ?", [json.dumps(explanation)])
    advise(con, now=NOW)
    (lead,) = _leads(con)
    jsonschema.validate(lead, SCHEMA)
    assert [f["feature"] for f in lead["evidence"]["top_factors"]] == [
        f["feature"] for f in factors[:5]]
    assert [f["contribution"] for f in lead["evidence"]["top_factors"]] == [
        round(1.0 / (i + 1), 1) for i in range(5)]
    assert all(f["effect"].endswith("the risk") for f in lead["evidence"]["top_factors"])

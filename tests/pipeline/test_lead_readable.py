"""A lead a service advisor can act on (issue #19): a headline with the action and the reason,
evidence with units, meanings and days, confidence as a percentage and a word, who pays, the
slot in the centre's own time zone with its bay, stale evidence held, fault-code leads shown
as such, and the link to the console page."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import zoneinfo
from pathlib import Path
from typing import Any

import duckdb
import jsonschema
import pytest
from synth_fleet import START, Car, add_dtc, build_store, day, register_stand_in_models

import pipeline
from pipeline.crm.adapters import salesforce_composite
from pipeline.leads.advice import advise
from pipeline.leads.document import LeadSettings
from pipeline.leads.holds import HoldReason
from pipeline.leads.wording import headline
from pipeline.ops.health import check_health
from tests.e2e.replay_helpers import REPO
from tests.master_data import import_master_data
from tests.processes import cli, cli_env

NOW = START + dt.timedelta(days=29, hours=18)
SCHEMA = json.loads((Path(pipeline.__file__).parent / "leads" / "lead.schema.json").read_text())
SICK, ALSO_SICK, OK = "ev-sick", "ev-sick-2", "ev-ok"


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """Two EVs whose brakes wear out on day 35 and a healthy one, 30 days of telemetry,
    master data imported (centre-north: Europe/Stockholm), one model per component."""
    cars = [Car(SICK, fails={"brakes": 35}), Car(ALSO_SICK, fails={"brakes": 35}), Car(OK)]
    store = build_store(tmp_path / "fleet.duckdb", cars, 30)
    import_master_data(store, start=day(29))
    register_stand_in_models(store)
    return store


def _score(con: duckdb.DuckDBPyConnection, vehicle: str, p: float,
           explanation: list[dict[str, Any]] | None = None) -> None:
    con.execute("INSERT OR REPLACE INTO scores (vehicle_id, component, as_of, probability,"
                " horizon_days, model_id, explanation) VALUES (?, 'brakes', ?, ?, 30,"
                " 'm-brakes', ?)",
                [vehicle, day(29), p, None if explanation is None else json.dumps(explanation)])


def _lead(con: duckdb.DuckDBPyConnection, vehicle: str) -> dict[str, Any]:
    row = con.execute("SELECT document FROM leads WHERE vehicle_id = ?", [vehicle]).fetchone()
    assert row is not None, f"no lead for {vehicle}"
    document: dict[str, Any] = json.loads(row[0])
    jsonschema.validate(document, SCHEMA, format_checker=jsonschema.FormatChecker())
    return document


def test_headline_says_what_to_do_and_why_in_one_sentence(
    con: duckdb.DuckDBPyConnection,
) -> None:
    _score(con, SICK, 0.9)
    advise(con, now=NOW)
    lead = _lead(con, SICK)
    quoted = {i["signal"]: i for i in lead["evidence"]["signals"]}
    sentence = lead["headline"]
    assert sentence.startswith("Front brake pads about ")
    assert sentence.endswith(": book a pad replacement")
    assert f"{quoted['pad_wear_max']['value']:g} % worn" in sentence
    assert sentence.count(".") <= sentence.count("%") + 2, "one sentence, not a report"


def test_a_days_to_limit_cap_is_never_quoted_as_a_fact() -> None:
    """3650 days-to-limit is the feature's stand-in for "no trend", not a forecast."""
    values = {"pad_wear_max": 91.6, "pad_wear_fl": 91.6, "pad_wear_rl": 60.0,
              "pad_days_to_limit": 3650.0, "pad_km_to_limit": 4200.0}
    sentence = headline("brakes", "high", values, [], None)
    assert "3650" not in sentence and "days" not in sentence
    assert sentence == ("Front brake pads about 91.6 % worn, roughly 4200 km to the limit: "
                        "book a pad replacement")
    trending = headline("brakes", "high", {**values, "pad_days_to_limit": 11.2,
                                           "pad_km_to_limit": 537.6}, [], None)
    assert "roughly 11 days to the limit at this car's 48 km a day" in trending


def test_every_evidence_item_has_value_unit_meaning_and_day(
    con: duckdb.DuckDBPyConnection,
) -> None:
    _score(con, SICK, 0.9)
    advise(con, now=NOW)
    lead = _lead(con, SICK)
    items = {i["signal"]: i for i in lead["evidence"]["signals"]}
    assert items["pad_wear_fl"]["meaning"].startswith("front-left pad wear")
    assert items["pad_wear_fl"]["unit"] == "%"
    assert items["odometer_km"]["unit"] == "km"
    assert {i["as_of"] for i in items.values()} == {day(29).isoformat()}
    assert all(i["meaning"] and i["text"].startswith(i["meaning"]) for i in items.values())
    capped = [i for i in items.values() if i["signal"].endswith(("_days_to_limit",
                                                                  "_days_to_threshold"))]
    assert all(i["value"] < 3650 for i in capped)
    assert "soh_days_to_threshold" not in items, "a brake lead quotes brake evidence"


def test_confidence_is_a_rounded_percentage_and_a_word_and_factors_are_words(
    con: duckdb.DuckDBPyConnection,
) -> None:
    factors = [{"feature": "pad_wear_fl", "value": 91.63, "contribution": 27.663},
               {"feature": "ambient_temp", "value": 8.04, "contribution": -0.31}]
    _score(con, SICK, 0.999999862983438, factors)
    advise(con, now=NOW)
    lead = _lead(con, SICK)
    assert lead["confidence"]["percent"] == 99 and lead["confidence"]["level"] == "high"
    assert lead["confidence"]["text"].startswith("99 % (high)")
    first, second = lead["evidence"]["top_factors"]
    assert (first["contribution"], first["value"], first["unit"]) == (27.7, 91.6, "%")
    assert first["text"] == ("front-left pad wear (100 % is the wear limit) 91.6 % "
                             "strongly raises the risk")
    assert second["effect"] == "slightly lowers the risk"


def test_the_slot_is_hours_in_the_centres_time_zone_with_the_bay_it_holds(
    con: duckdb.DuckDBPyConnection,
) -> None:
    con.execute("UPDATE service_centres SET timezone = 'America/New_York'"
                " WHERE centre_id = 'centre-north'")
    con.execute("UPDATE centre_capacity SET free_slots = 0 WHERE centre_id = 'centre-north'")
    con.execute("UPDATE centre_capacity SET free_slots = 3, technician_hours = 40"
                " WHERE centre_id = 'centre-north' AND day = ?", [day(31)])
    con.execute("UPDATE service_centres SET bays = 3 WHERE centre_id = 'centre-north'")
    _score(con, SICK, 0.9)
    _score(con, ALSO_SICK, 0.9)
    advise(con, now=NOW)
    slots = [_lead(con, v)["proposed_appointment"] for v in (ALSO_SICK, SICK)]
    hours = con.execute("SELECT labour_hours FROM service_catalogue WHERE component = 'brakes'"
                        ).fetchone()
    assert hours is not None
    zone = zoneinfo.ZoneInfo("America/New_York")
    for slot in slots:
        start = dt.datetime.fromisoformat(slot["local_start"])
        end = dt.datetime.fromisoformat(slot["local_end"])
        assert slot["timezone"] == "America/New_York" and slot["day"] == day(31).isoformat()
        assert start == dt.datetime.combine(day(31), dt.time(8), tzinfo=zone)
        assert (end - start) == dt.timedelta(hours=max(1, -(-hours[0] // 1)))
        assert slot["window_start"] == start.astimezone(dt.UTC).isoformat().replace(
            "+00:00", "Z")
        assert "America/New_York" in slot["text"] and f"bay {slot['bay']}" in slot["text"]
    assert sorted(s["bay"] for s in slots) == [1, 2], "two proposals, two bays"
    held = con.execute("SELECT lead_id, bay FROM appointment_bays ORDER BY bay").fetchall()
    assert [b for _, b in held] == [1, 2]


def test_a_superseded_proposal_gives_its_bay_back(con: duckdb.DuckDBPyConnection) -> None:
    _score(con, SICK, 0.6)
    advise(con, now=NOW)
    first = _lead(con, SICK)["proposed_appointment"]
    _score(con, SICK, 0.95)
    assert advise(con, now=NOW).escalated == 1
    second = _lead(con, SICK)["proposed_appointment"]
    rows = con.execute("SELECT day, bay FROM appointment_bays").fetchall()
    assert rows == [(dt.date.fromisoformat(second["day"]), second["bay"])]
    assert (first["day"], first["bay"]) == (second["day"], second["bay"]), "same bay again"


def test_a_lead_on_stale_evidence_is_held_until_fresh_data_or_a_wider_limit(
    con: duckdb.DuckDBPyConnection, tmp_path: Path,
) -> None:
    _score(con, SICK, 0.9)
    later = NOW + dt.timedelta(days=40)  # the last telemetry is day 29
    report = advise(con, now=later, settings=LeadSettings(evidence_max_age_days=14))
    assert (report.new, report.held) == (0, 1)
    state, reason = con.execute("SELECT state, hold_reason FROM leads").fetchone() or ()
    assert (state, reason) == ("held", HoldReason.STALE_EVIDENCE.value)
    assert con.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM appointment_bays").fetchone() == (0,)
    (check,) = [c for c in check_health(con, now=later).checks if c.name == "held_leads"]
    assert check.detail["by_reason"] == {"stale_evidence": 1}
    con.close()
    db = tmp_path / "fleet.duckdb"
    done = subprocess.run(cli("leads", "list", "--held", "--db", str(db)), cwd=REPO,
                          env=cli_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.strip().splitlines()[1:]
    assert line.split("\t")[1:5] == [SICK, "brakes", "high", "stale_evidence"]
    assert "evidence_max_age_days" in line.split("\t")[5]
    con = duckdb.connect(str(db))
    report = advise(con, now=later, settings=LeadSettings(evidence_max_age_days=60))
    assert report.released == 1
    assert con.execute("SELECT state FROM leads").fetchone() == ("new",)
    con.close()


def test_payer_follows_the_catalogues_warranty_and_the_model_year(
    con: duckdb.DuckDBPyConnection,
) -> None:
    con.execute("UPDATE service_catalogue SET warranty_months = 24 WHERE component = 'brakes'")
    con.execute("UPDATE vehicles SET model_year = 2024 WHERE vehicle_id = ?", [SICK])
    con.execute("UPDATE vehicles SET model_year = 2020 WHERE vehicle_id = ?", [ALSO_SICK])
    con.execute("UPDATE vehicles SET model_year = NULL WHERE vehicle_id = ?", [OK])
    for vehicle in (SICK, ALSO_SICK, OK):
        _score(con, vehicle, 0.9)
    advise(con, now=NOW)  # 2025-01-30
    young, old, unknown = (_lead(con, v) for v in (SICK, ALSO_SICK, OK))
    assert (young["payer"], old["payer"], unknown["payer"]) == (
        "warranty", "customer", "customer")
    assert "until about 2026-07-01" in young["payer_basis"]
    assert "model year not on record" in unknown["payer_basis"]


def test_evidence_url_is_the_console_page_from_the_setting(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLEETCARE_PIPELINE__CONSOLE_BASE_URL", "https://console.example/fc/")
    _score(con, SICK, 0.9)
    advise(con, now=NOW)
    lead = _lead(con, SICK)
    assert lead["evidence_url"] == f"https://console.example/fc/leads/{lead['lead_id']}"


def test_leads_list_shows_a_fault_code_lead_by_its_code_not_probability_zero(
    con: duckdb.DuckDBPyConnection, tmp_path: Path,
) -> None:
    add_dtc(con, OK, 29, "P0AA6")
    _score(con, SICK, 0.9)
    advise(con, now=NOW)
    con.close()
    done = subprocess.run(cli("leads", "list", "--db", str(tmp_path / "fleet.duckdb")),
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.strip().splitlines()
    assert header.split("\t")[5] == "basis"
    basis = {line.split("\t")[1]: line.split("\t")[5] for line in lines}
    assert basis == {OK: "P0AA6 critical", SICK: "90 % high"}
    assert "0.00" not in done.stdout


def test_a_fault_code_lead_leads_with_the_code_and_roadside_help(
    con: duckdb.DuckDBPyConnection,
) -> None:
    add_dtc(con, OK, 29, "P0AA6")
    advise(con, now=NOW)
    lead = _lead(con, OK)
    assert lead["headline"] == (
        "Critical fault code P0AA6 (Hybrid/EV battery voltage system isolation fault): "
        "arrange roadside assistance and do not book a drive-in")
    assert lead["confidence"] == {"percent": None, "level": "high", "basis": "fault_codes",
                                  "text": "the car itself reports a critical fault code"}


def test_salesforce_carries_the_headline_vin_payer_and_console_link(
    con: duckdb.DuckDBPyConnection,
) -> None:
    _score(con, SICK, 0.9)
    advise(con, now=NOW)
    lead = _lead(con, SICK)
    upsert, appointment = salesforce_composite(lead)["compositeRequest"]
    body = upsert["body"]
    assert body["Description"].startswith(lead["headline"] + "\n")
    assert lead["proposed_appointment"]["text"] in body["Description"]
    assert (body["VIN__c"], body["Payer__c"], body["Evidence_Url__c"]) == (
        lead["vehicle"]["vin"], lead["payer"], lead["evidence_url"])
    assert body["Confidence_Percent__c"] == 90
    assert appointment["body"]["Subject"] == lead["headline"]
    assert appointment["body"]["Bay__c"] == lead["proposed_appointment"]["bay"]

"""Status updates from the CRM: signed, validated, kept durably, applied once, closed as labels."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from synth_fleet import START, Car, build_store, day

from pipeline.crm.inbound import INBOUND_PATH, Inbox, inbound_server
from pipeline.crm.outbox import deliver_outbox
from pipeline.crm.signing import new_secret, signed_headers
from pipeline.leads.advice import advise
from pipeline.leads.lifecycle import InboundReport, apply_inbound
from pipeline.sandbox.reference_crm import CrmReceiver
from tests.master_data import import_master_data

SECRET = "whsec_" + base64.b64encode(b"fleetcare-inbound-test-key").decode()
NOW = START + dt.timedelta(days=29, hours=18)


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """A store with one brake lead for ev-1, already delivered (state ``sent``)."""
    store = build_store(tmp_path / "fleet.duckdb", [Car("ev-1", fails={"brakes": 35})], 30)
    import_master_data(store, start=day(29))
    store.execute("INSERT INTO model_registry (model_id, component, features, metrics,"
                  " artifact, promoted) VALUES ('m', 'brakes', [], '{\"threshold\": 0.5}',"
                  " ''::BLOB, true)")
    store.execute("INSERT INTO scores (vehicle_id, component, as_of, probability, horizon_days,"
                  " model_id) VALUES ('ev-1', 'brakes', ?, 0.9, 30, 'm')", [day(29)])
    advise(store, now=NOW)
    return store


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    return Inbox(tmp_path / "inbox" / "status.jsonl")


@pytest.fixture
def endpoint(inbox: Inbox) -> Iterator[str]:
    with inbound_server(SECRET, inbox) as server:
        yield server.base_url + INBOUND_PATH


def _lead_id(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("SELECT lead_id FROM leads").fetchone()
    assert row is not None
    return str(row[0])


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _signed(url: str, update: dict[str, Any], key: str = SECRET) -> tuple[int, dict[str, Any]]:
    body = json.dumps(update).encode()
    return _post(url, body, signed_headers(key, update.get("update_id", "x"),
                                           int(time.time()), body))


def test_advisor_actions_flow_back_and_close_the_lead_as_a_label(
    con: duckdb.DuckDBPyConnection, inbox: Inbox, endpoint: str,
) -> None:
    lead_id = _lead_id(con)
    with CrmReceiver(SECRET, status_url=endpoint) as crm:
        assert deliver_outbox(con, url=crm.url, secret=SECRET, now=NOW).delivered == 1
        visit = "2025-02-03T10:00:00Z"
        for state, extra in (("acknowledged", {}), ("booked", {"appointment_day": "2025-02-03"}),
                             ("done", {"at": visit, "work_done": "front pads replaced"})):
            body = json.dumps({"state": state, **extra}).encode()
            status, answer = _post(f"{crm.url}/{lead_id}/status", body, {})
            assert (status, answer["status"]) == (200, "accepted"), answer
    report = apply_inbound(con, inbox, now=NOW)
    assert report == InboundReport(applied=3)
    assert con.execute("SELECT state FROM leads").fetchone() == ("done",)
    outcome = con.execute("SELECT outcome, component, reason FROM lead_outcomes").fetchall()
    assert outcome == [("done", "brakes", "front pads replaced")]
    due = con.execute("SELECT due_at FROM follow_ups WHERE lead_id = ?", [lead_id]).fetchone()
    assert due is not None
    assert due[0] == dt.datetime(2025, 2, 4, 10, tzinfo=dt.UTC)
    assert con.execute("SELECT count(*) FROM service_visits").fetchone() == (1,)
    again = apply_inbound(con, inbox, now=NOW)
    assert again == InboundReport(already_seen=3)


@pytest.mark.parametrize(("update", "complaint"), [
    ({"lead_id": "lead-" + "0" * 32, "state": "booked", "at": "2025-01-30T10:00:00Z"},
     "'update_id' is a required property"),
    ({"update_id": "u1", "lead_id": "lead-" + "0" * 32, "state": "finished",
      "at": "2025-01-30T10:00:00Z"}, 'state: must be one of ["acknowledged"'),
    ({"update_id": "u2", "lead_id": "L1", "state": "done", "at": "yesterday"}, "at: "),
    ({"update_id": "u3", "lead_id": "lead-" + "0" * 32, "state": "done",
      "at": "2025-01-30T10:00:00Z", "colour": "red"}, "'colour' was unexpected"),
])
def test_malformed_updates_are_refused_with_what_to_fix(
    inbox: Inbox, endpoint: str, update: dict[str, Any], complaint: str,
) -> None:
    status, answer = _signed(endpoint, update)
    assert status == 400
    assert complaint in answer["error"]
    assert "status_update.schema.json" in answer["error"]
    assert not inbox.path.exists()


def test_a_refusal_names_the_field_but_never_quotes_its_value(
    inbox: Inbox, endpoint: str, caplog: pytest.LogCaptureFixture,
) -> None:
    # Advisors' notes name customers: a schema error must not echo them to the sender or log.
    private = "Ada Lovelace, +44 20 7946 0000"
    update = {"update_id": "u9", "lead_id": "lead-" + "0" * 32, "state": "done",
              "at": "2025-01-30T10:00:00Z", "reason": {"note": private}}
    status, answer = _signed(endpoint, update)
    assert status == 400
    assert "reason: must be of type" in answer["error"]
    assert private not in answer["error"] and private not in caplog.text


def test_unsigned_tampered_and_non_json_updates_are_refused(
    inbox: Inbox, endpoint: str,
) -> None:
    update = {"update_id": "u9", "lead_id": "lead-" + "0" * 32, "state": "done",
              "at": "2025-01-30T10:00:00Z"}
    assert _signed(endpoint, update, key=new_secret())[0] == 401
    assert _post(endpoint, json.dumps(update).encode(), {})[0] == 400
    body = b"not json"
    status, answer = _post(endpoint, body, signed_headers(SECRET, "u9", int(time.time()), body))
    assert status == 400 and "not JSON" in answer["error"]
    assert not inbox.path.exists()


def test_out_of_order_unknown_and_repeated_updates_are_recorded_not_applied(
    con: duckdb.DuckDBPyConnection, inbox: Inbox, endpoint: str,
) -> None:
    lead_id = _lead_id(con)
    at = "2025-01-31T09:00:00Z"
    sends = [("a", lead_id, "dismissed"), ("b", lead_id, "booked"),
             ("c", lead_id, "dismissed"), ("d", "lead-" + "f" * 32, "acknowledged")]
    for update_id, lid, state in sends:
        update = {"update_id": update_id, "lead_id": lid, "state": state, "at": at,
                  "reason": "customer sold the car"}
        assert _signed(endpoint, update)[0] == 200
    assert _signed(endpoint, {"update_id": "a", "lead_id": lead_id, "state": "dismissed",
                              "at": at})[0] == 200  # the CRM retried: stored, applied once
    assert apply_inbound(con, inbox, now=NOW) == InboundReport(
        applied=1, already_seen=1, stale=1, rejected=2)
    events = dict(con.execute("SELECT update_id, outcome FROM lead_events").fetchall())
    assert events == {"a": "applied", "b": "rejected", "c": "stale", "d": "rejected"}
    why = con.execute("SELECT detail->>'reason_refused' FROM lead_events"
                      " WHERE update_id = 'b'").fetchone()
    assert why is not None and "already dismissed" in why[0]
    assert con.execute("SELECT outcome, reason FROM lead_outcomes").fetchall() == [
        ("dismissed", "customer sold the car")]


def test_a_torn_last_line_is_counted_not_fatal(
    con: duckdb.DuckDBPyConnection, inbox: Inbox, endpoint: str,
) -> None:
    update = {"update_id": "z", "lead_id": _lead_id(con), "state": "acknowledged",
              "at": "2025-01-31T09:00:00Z"}
    assert _signed(endpoint, update)[0] == 200
    with inbox.path.open("a") as fh:
        fh.write('{"update_id": "half')
    assert apply_inbound(con, inbox, now=NOW) == InboundReport(applied=1, unreadable=1)

"""Delivery under trouble: outages, 503s, lost acknowledgements, key rotation, the 3-day limit."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.crm.http_server import JsonHttpServer
from pipeline.crm.outbox import RETRY_WINDOW, DeliveryReport, deliver_outbox, new_secret
from pipeline.sandbox.reference_crm import CrmReceiver
from pipeline.store.connection import connect

SECRET = "whsec_" + base64.b64encode(b"fleetcare-delivery-test-key").decode()
NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
LEADS = [f"lead-{i}" for i in range(5)]


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """Five new leads, each with a pending outbox row due at NOW."""
    store = connect(tmp_path / "fleet.duckdb")
    for lead_id in LEADS:
        doc = json.dumps({"lead_id": lead_id, "revision": 1})
        store.execute("INSERT INTO leads (lead_id, vehicle_id, component, state, severity,"
                      " probability, horizon_days, document) VALUES (?, 'v', 'brakes', 'new',"
                      " 'high', 0.9, 30, ?)", [lead_id, doc])
        store.execute("INSERT INTO outbox (event_id, lead_id, body, next_attempt_at)"
                      " VALUES (?, ?, ?, ?)", [f"{lead_id}.r1", lead_id, doc, NOW])
    return store


class FlakyCrm:
    """A reference CRM behind a switch: while ``status`` is set, every POST gets that status."""

    def __init__(self, crm: CrmReceiver) -> None:
        self.crm, self.status = crm, 503
        self.server = JsonHttpServer({("POST", "/leads"): self._post})

    def _post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if self.status:
            return self.status, {"error": "maintenance window"}
        return self.crm.accept(headers, body)


def _statuses(con: duckdb.DuckDBPyConnection) -> Counter[str]:
    return Counter(r[0] for r in con.execute("SELECT status FROM outbox").fetchall())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_outage_then_recovery_delivers_every_lead_exactly_once(
    con: duckdb.DuckDBPyConnection,
) -> None:
    crm = CrmReceiver(SECRET)
    flaky = FlakyCrm(crm)
    with flaky.server:
        url = flaky.server.base_url + "/leads"
        clock = NOW
        assert deliver_outbox(con, url=url, secret=SECRET, now=clock).retrying == 5
        for _ in range(6):  # hours of 503s: every due row retried, none given up
            clock += dt.timedelta(hours=7)
            assert deliver_outbox(con, url=url, secret=SECRET, now=clock).retrying == 5
        flaky.status = 0
        clock += dt.timedelta(hours=7)
        assert deliver_outbox(con, url=url, secret=SECRET, now=clock).delivered == 5
        clock += dt.timedelta(days=1)
        assert deliver_outbox(con, url=url, secret=SECRET, now=clock) == DeliveryReport(0, 0, 0)
    assert sorted(d["lead_id"] for d in crm.leads()) == LEADS
    assert crm.received_count == 5
    assert _statuses(con) == Counter({"delivered": 5})
    attempts = con.execute("SELECT DISTINCT attempts FROM outbox").fetchall()
    assert attempts == [(8,)]
    assert con.execute("SELECT count(*) FROM leads WHERE state = 'sent'").fetchone() == (5,)


def test_a_lost_acknowledgement_is_redelivered_and_stored_once(
    con: duckdb.DuckDBPyConnection,
) -> None:
    with CrmReceiver(SECRET) as crm:
        assert deliver_outbox(con, url=crm.url, secret=SECRET, now=NOW).delivered == 5
        # The process died after the CRM's 2xx and before our commit: the rows are pending.
        con.execute("UPDATE outbox SET status = 'pending'")
        assert deliver_outbox(con, url=crm.url, secret=SECRET, now=NOW).delivered == 5
        assert crm.received_count == 10
        assert len(crm.leads()) == 5


def test_retries_stop_after_three_days_with_the_reason(con: duckdb.DuckDBPyConnection) -> None:
    url = f"http://127.0.0.1:{_free_port()}/leads"
    clock = NOW
    deliver_outbox(con, url=url, secret=SECRET, now=clock, timeout_s=1)
    while clock < NOW + RETRY_WINDOW:
        row = con.execute("SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending'"
                          ).fetchone()
        assert row is not None and row[0] is not None
        assert row[0] <= NOW + RETRY_WINDOW, "no retry is scheduled past the window"
        clock = row[0]
        deliver_outbox(con, url=url, secret=SECRET, now=clock, timeout_s=1)
    assert _statuses(con) == Counter({"dead": 5})
    reason, attempts = con.execute("SELECT last_error, attempts FROM outbox LIMIT 1").fetchone() \
        or ("", 0)
    assert "gave up after" in reason and "cannot reach" in reason
    assert attempts > 12, "a 3-day window with a 6 h cap takes well over 12 attempts"


def test_client_errors_are_dead_at_once_and_server_errors_retried(
    con: duckdb.DuckDBPyConnection,
) -> None:
    flaky = FlakyCrm(CrmReceiver(SECRET))
    with flaky.server:
        url = flaky.server.base_url + "/leads"
        flaky.status = 422
        report = deliver_outbox(con, url=url, secret=SECRET, now=NOW,
                                event_ids=["lead-0.r1", "lead-1.r1"])
        assert report == DeliveryReport(delivered=0, retrying=0, dead=2)
        for status in (500, 429, 408):
            flaky.status = status
            row = con.execute("SELECT event_id FROM outbox WHERE status = 'pending'"
                              " AND attempts = 0 LIMIT 1").fetchone()
            assert row is not None
            assert deliver_outbox(con, url=url, secret=SECRET, now=NOW,
                                  event_ids=[row[0]]).retrying == 1
    dead = con.execute("SELECT last_error FROM outbox WHERE status = 'dead'").fetchall()
    assert all("HTTP 422" in r[0] and "maintenance window" in r[0] for r in dead)


def test_key_rotation_keeps_in_flight_deliveries_working(
    con: duckdb.DuckDBPyConnection,
) -> None:
    old, new = SECRET, new_secret()
    port = _free_port()
    url = f"http://127.0.0.1:{port}/leads"
    assert deliver_outbox(con, url=url, secret=[old], now=NOW).retrying == 5  # CRM down
    # Rotation: the CRM accepts old and new, the sender now signs with the newest.
    with CrmReceiver([old, new], port=port) as crm:
        later = NOW + dt.timedelta(hours=1)
        assert deliver_outbox(con, url=url, secret=[old, new], now=later,
                              event_ids=["lead-0.r1", "lead-1.r1"]).delivered == 2
        crm.rotate([new])  # the old key retired: what is still in flight is signed anew
        assert deliver_outbox(con, url=url, secret=[old, new], now=later).delivered == 3
        assert crm.rejected_count == 0
        assert len(crm.leads()) == 5

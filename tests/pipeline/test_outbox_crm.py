"""Outbox delivery to a real reference CRM on 127.0.0.1: signed, retried, exactly once."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.crm.outbox import (
    DeliveryReport,
    SignatureError,
    backoff_s,
    deliver_outbox,
    new_secret,
    sign,
    verify,
)
from pipeline.sandbox.reference_crm import CrmReceiver
from pipeline.store.connection import connect

SECRET = "whsec_" + base64.b64encode(b"fleetcare-test-key-0123456789").decode()
NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """A store with one new lead and its pending outbox row."""
    store = connect(tmp_path / "fleet.duckdb")
    doc = {"lead_id": "lead-1", "revision": 1, "component": "brakes", "severity": "high"}
    store.execute("INSERT INTO leads (lead_id, vehicle_id, component, state, severity,"
                  " probability, horizon_days, document) VALUES ('lead-1', 'v1', 'brakes',"
                  " 'new', 'high', 0.9, 30, ?)", [json.dumps(doc)])
    store.execute("INSERT INTO outbox (event_id, lead_id, body, next_attempt_at)"
                  " VALUES ('lead-1.r1', 'lead-1', ?, ?)", [json.dumps(doc), NOW])
    return store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _outbox(con: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    row = con.execute("SELECT status, attempts, next_attempt_at, last_error FROM outbox"
                      " WHERE event_id = 'lead-1.r1'").fetchone()
    assert row is not None
    return row


def _lead_state(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("SELECT state FROM leads WHERE lead_id = 'lead-1'").fetchone()
    assert row is not None
    return str(row[0])


def test_sign_and_verify_round_trip_with_rotation() -> None:
    body = '{"a":1}'
    stamp = int(time.time())
    headers = {"Webhook-Id": "msg_1", "Webhook-Timestamp": str(stamp),
               "Webhook-Signature": "v1,bogus " + sign(SECRET, "msg_1", stamp, body)}
    assert verify([new_secret(), SECRET], headers, body, stamp) == "msg_1"
    with pytest.raises(SignatureError) as bad_body:
        verify(SECRET, headers, '{"a":2}', stamp)
    assert bad_body.value.status == 401
    with pytest.raises(SignatureError) as stale:
        verify(SECRET, headers, body, stamp + 301)
    assert stale.value.status == 400
    with pytest.raises(SignatureError):
        verify(new_secret(), headers, body, stamp)


def test_signature_is_hmac_of_id_timestamp_body() -> None:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, b"msg_1.1700000000.hello", hashlib.sha256).digest()
    assert sign(SECRET, "msg_1", 1_700_000_000, "hello") == "v1," + base64.b64encode(mac).decode()


def test_delivers_exactly_once_across_a_crm_outage(con: duckdb.DuckDBPyConnection) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/leads"
    down = deliver_outbox(con, url=url, secret=SECRET, now=NOW, timeout_s=2.0)
    assert down == DeliveryReport(delivered=0, retrying=1, dead=0)
    status, attempts, retry_at, error = _outbox(con)
    assert (status, attempts) == ("pending", 1)
    assert NOW < retry_at <= NOW + dt.timedelta(seconds=backoff_s(1) * 2)
    assert "cannot reach" in error
    assert deliver_outbox(con, url=url, secret=SECRET, now=NOW) == DeliveryReport(0, 0, 0)
    with CrmReceiver(SECRET, port=port) as crm:
        later = NOW + dt.timedelta(hours=1)
        assert deliver_outbox(con, url=crm.url, secret=SECRET, now=later).delivered == 1
        assert deliver_outbox(con, url=crm.url, secret=SECRET, now=later) == DeliveryReport(
            0, 0, 0)
        assert crm.received_count == 1
        assert [lead["lead_id"] for lead in crm.leads()] == ["lead-1"]
        with urllib.request.urlopen(crm.url) as answer:
            assert [lead["lead_id"] for lead in json.load(answer)] == ["lead-1"]
    assert _outbox(con)[:2] == ("delivered", 2)
    assert _lead_state(con) == "sent"


def _post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_receiver_rejects_tampering_and_stores_redeliveries_once() -> None:
    body = b'{"lead_id": "lead-9"}'
    stamp = int(time.time())
    good = {"webhook-id": "lead-9.r1", "webhook-timestamp": str(stamp),
            "webhook-signature": sign(SECRET, "lead-9.r1", stamp, body)}
    with CrmReceiver(SECRET) as crm:
        assert _post(crm.url, good, body.replace(b"9", b"8"))[0] == 401
        forged = good | {"webhook-signature": sign(new_secret(), "lead-9.r1", stamp, body)}
        assert _post(crm.url, forged, body)[0] == 401
        old = good | {"webhook-timestamp": str(stamp - 600)}
        status, answer = _post(crm.url, old, body)
        assert status == 400
        assert "timestamp" in answer["error"]
        assert _post(crm.url, {}, body)[0] == 400
        assert _post(crm.url, good, body) == (200, {"status": "stored", "webhook_id": "lead-9.r1"})
        assert _post(crm.url, good, body)[1]["status"] == "duplicate"
        assert len(crm.leads()) == 1
        assert crm.rejected_count == 4


def test_rejection_by_the_crm_is_dead_not_retried(con: duckdb.DuckDBPyConnection) -> None:
    with CrmReceiver(new_secret()) as crm:
        report = deliver_outbox(con, url=crm.url, secret=SECRET, now=NOW)
    assert report == DeliveryReport(delivered=0, retrying=0, dead=1)
    status, _, _, error = _outbox(con)
    assert status == "dead"
    assert "401" in error
    assert _lead_state(con) == "new"


def test_gives_up_after_max_attempts(con: duckdb.DuckDBPyConnection) -> None:
    url = f"http://127.0.0.1:{_free_port()}/leads"
    assert deliver_outbox(con, url=url, secret=SECRET, now=NOW, max_attempts=1).dead == 1
    assert _outbox(con)[0] == "dead"


def test_backoff_grows_and_is_capped() -> None:
    assert 15 <= backoff_s(1) <= 30
    assert 60 <= backoff_s(3) <= 120
    assert backoff_s(40) <= 6 * 3600

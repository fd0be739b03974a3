"""Outbox delivery against a CRM that misbehaves on the wire, in process and through the CLI.

:class:`RudeCrm` is a raw-socket HTTP server on 127.0.0.1 that answers each webhook the way
its plan says for that ``webhook-id``: a proper 200, a 302, a body cut short, bytes that are
not HTTP, a connection reset, or a complete 200 trickled out far slower than the deadline.
Nothing about it is a mock of our code: the client under test is the production one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import duckdb
import orjson
import pytest

from pipeline.config import SecretError, load_pipeline_settings
from pipeline.crm.outbox import BACKOFF_BASE_S, DeliveryReport, OutboxSender, deliver_outbox
from pipeline.crm.signing import SignatureError, new_secret, verify
from pipeline.errors import TerminalPipelineError
from pipeline.store.connection import connect

SECRET: Final = new_secret()
DEADLINE_S: Final = 4.0
"""Generous, so a loaded machine answers the good rows in time; the trickle needs far more."""
TRICKLE_GAP_S: Final = 0.5
_GOOD_BODY: Final = b'{"status":"stored"}'


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the server read it."""

    connection: int
    method: str
    path: str
    webhook_id: str
    authentic: bool


class RudeCrm:
    """An HTTP/1.1 server that misbehaves per ``webhook-id`` (``plan``; default: a good 200).

    Each connection is served by its own thread, so a trickle does not hold the next one.
    """

    def __init__(self, plan: dict[str, str]) -> None:
        self.plan = plan
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/leads"
        self._connections = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> RudeCrm:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)
        self._listener.close()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)  # closing a listener does not wake a blocked accept()
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self._connections += 1
                number = self._connections
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        buffer = b""
        with conn:
            while not self._stopping.is_set():
                request, buffer = _read_request(conn, buffer)
                if request is None:
                    return
                method, path, headers, body = request
                webhook_id = headers.get("webhook-id", "")
                try:
                    verify(SECRET, headers, body, time.time())
                    authentic = True
                except SignatureError:
                    authentic = False
                with self._lock:
                    self.received.append(Received(number, method, path, webhook_id, authentic))
                if not self._answer(conn, self.plan.get(webhook_id, "good")):
                    return

    def _answer(self, conn: socket.socket, how: str) -> bool:
        """Answer one request; False when the connection is finished with."""
        try:
            if how == "good":
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(_GOOD_BODY), _GOOD_BODY))
                return True
            if how == "redirect":
                conn.sendall(b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:%d/moved\r\n"
                             b"content-length: 0\r\n\r\n" % self.port)
                return True
            if how == "truncated":
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"stat")
            elif how == "garbage":
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n\r\n")
            elif how == "reset":  # linger 0: close sends RST, not FIN
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif how == "trickle":  # a complete, valid 200 that takes ~60 s to arrive
                answer = (b"HTTP/1.1 200 OK\r\nx-padding: " + b"." * 60 + b"\r\n"
                          b"content-length: %d\r\n\r\n%s" % (len(_GOOD_BODY), _GOOD_BODY))
                for byte in answer:
                    conn.sendall(bytes([byte]))
                    if self._stopping.wait(TRICKLE_GAP_S):
                        break
                return True
            else:
                raise AssertionError(f"no such behaviour {how!r}")
        except OSError:  # the client gave up on us: what we wanted
            return False
        return False

    def requests_for(self, webhook_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.webhook_id == webhook_id]


def _read_request(conn: socket.socket, buffer: bytes
                  ) -> tuple[tuple[str, str, dict[str, str], bytes] | None, bytes]:
    """One request (method, path, lower-cased headers, body) and what is left of the buffer."""
    while b"\r\n\r\n" not in buffer:
        try:
            chunk = conn.recv(65536)
        except OSError:
            return None, b""
        if not chunk:
            return None, b""
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        try:
            chunk = conn.recv(65536)
        except OSError:
            return None, b""
        if not chunk:
            return None, b""
        rest += chunk
    return (method, path, headers, rest[:length]), rest[length:]


def _seed(path: Path, event_ids: list[str], due: dt.datetime) -> None:
    """One new lead and one pending outbox row per event id, all due at ``due``."""
    with connect(path) as store:
        for event_id in event_ids:
            lead_id = event_id.split(".")[0]
            doc = json.dumps({"lead_id": lead_id, "revision": 1})
            store.execute("INSERT INTO leads (lead_id, vehicle_id, component, state, severity,"
                          " probability, horizon_days, document) VALUES (?, 'v', 'brakes',"
                          " 'new', 'high', 0.9, 30, ?)", [lead_id, doc])
            store.execute("INSERT INTO outbox (event_id, lead_id, body, next_attempt_at)"
                          " VALUES (?, ?, ?, ?)", [event_id, lead_id, doc, due])


def _rows(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    columns = ["status", "attempts", "next_attempt_at", "first_failed_at", "delivered_at",
               "last_error", "lead_state"]
    rows = con.execute("SELECT o.event_id, o.status, o.attempts, o.next_attempt_at,"
                       " o.first_failed_at, o.delivered_at, o.last_error, l.state"
                       " FROM outbox o JOIN leads l USING (lead_id)").fetchall()
    return {r[0]: dict(zip(columns, r[1:], strict=True)) for r in rows}


PLAN: Final = {"b-redirect.r1": "redirect", "c-truncated.r1": "truncated",
               "d-garbage.r1": "garbage", "e-reset.r1": "reset", "f-trickle.r1": "trickle"}
GOOD: Final = ["a1-good.r1", "a2-good.r1", "g-good.r1"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    path = tmp_path / "fleet.duckdb"
    _seed(path, sorted([*PLAN, *GOOD]), dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    with connect(path) as con:
        yield con


def test_each_misbehaviour_is_a_retryable_failure_on_its_row_and_good_rows_deliver(
    store: duckdb.DuckDBPyConnection,
) -> None:
    with RudeCrm(dict(PLAN)) as crm:
        before = dt.datetime.now(dt.UTC)
        report = deliver_outbox(store, url=crm.url, secret=SECRET, timeout_s=DEADLINE_S)
        assert report == DeliveryReport(delivered=3, retrying=5, dead=0)
        rows = _rows(store)
        for event_id in GOOD:
            assert rows[event_id]["status"] == "delivered", rows[event_id]
            assert rows[event_id]["lead_state"] == "sent"
        for event_id in PLAN:
            row = rows[event_id]
            assert (row["status"], row["attempts"], row["lead_state"]) == ("pending", 1, "new")
        errors = {event_id: rows[event_id]["last_error"] for event_id in PLAN}
        assert "HTTP 302" in errors["b-redirect.r1"] and "/moved" in errors["b-redirect.r1"]
        assert "not followed" in errors["b-redirect.r1"]
        for broken in ("c-truncated.r1", "d-garbage.r1", "e-reset.r1"):
            assert errors[broken].startswith("broken answer from"), errors[broken]
        assert "deadline" in errors["f-trickle.r1"], errors["f-trickle.r1"]

        # The redirect was not followed, and every request was a signed POST to /leads.
        assert all((r.method, r.path, r.authentic) == ("POST", "/leads", True)
                   for r in crm.received), crm.received
        assert len(crm.received) == 8
        # Rows in a row share one kept-alive connection.
        first, second = crm.requests_for("a1-good.r1")[0], crm.requests_for("a2-good.r1")[0]
        assert first.connection == second.connection

        # The trickle could only fail once its deadline had passed, so the rows after it were
        # attempted at least that much later than the run began, and each retry is timed
        # from its own attempt, not from the start of the run.
        late = before + dt.timedelta(seconds=DEADLINE_S)
        trickle = rows["f-trickle.r1"]
        assert trickle["first_failed_at"] >= late
        assert trickle["next_attempt_at"] >= trickle["first_failed_at"] + dt.timedelta(
            seconds=BACKOFF_BASE_S / 2)
        assert rows["g-good.r1"]["delivered_at"] >= late

        # Once the CRM behaves, the next due run delivers the rest: nothing was stuck.
        crm.plan.clear()
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        assert deliver_outbox(store, url=crm.url, secret=SECRET, now=later,
                              timeout_s=DEADLINE_S) == DeliveryReport(5, 0, 0)
        assert {r["status"] for r in _rows(store).values()} == {"delivered"}
        assert {r.webhook_id for r in crm.received} == {*PLAN, *GOOD}


def test_a_malformed_secret_or_url_sends_nothing_and_touches_no_row(
    store: duckdb.DuckDBPyConnection,
) -> None:
    for bad in ("not-a-secret", "whsec_", "whsec_@@@@", f"{SECRET} whsec_b2x"):
        with pytest.raises(SecretError):
            deliver_outbox(store, url="http://127.0.0.1:9/leads", secret=bad)
    with pytest.raises(TerminalPipelineError, match="http"):
        deliver_outbox(store, url="ftp://127.0.0.1/leads", secret=SECRET)
    assert {r["attempts"] for r in _rows(store).values()} == {0}


def test_settings_refuse_a_crm_secret_that_is_not_whsec_base64() -> None:
    assert load_pipeline_settings(crm_secret=f"{SECRET}, {new_secret()}").crm_secret
    assert load_pipeline_settings(crm_secret="").crm_secret.get_secret_value() == ""
    for bad in ("hunter2-hunter2", "whsec_not base64!", f"{SECRET} sk_live_abcdef"):
        with pytest.raises(TerminalPipelineError, match="crm_secret") as refused:
            load_pipeline_settings(crm_secret=bad)
        assert "whsec_" in str(refused.value)
        assert all(part not in str(refused.value) for part in bad.split())


def _fleetcare(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True,
                          text=True, timeout=180, check=False, env={**os.environ, **env})


def test_crm_deliver_command_keeps_going_past_bad_rows(tmp_path: Path) -> None:
    db = tmp_path / "fleet.duckdb"
    plan = {"a-garbage.r1": "garbage", "c-redirect.r1": "redirect", "d-reset.r1": "reset"}
    _seed(db, [*plan, "b-good.r1", "e-good.r1"], dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    with RudeCrm(plan) as crm:
        done = _fleetcare("crm", "deliver", "--db", str(db), "--url", crm.url,
                          env={"FLEETCARE_PIPELINE__CRM_SECRET": SECRET})
        assert done.returncode == 0, done.stderr
        assert orjson.loads(done.stdout) == {"delivered": 2, "retrying": 3, "dead": 0}
        assert {r.webhook_id for r in crm.received} == {*plan, "b-good.r1", "e-good.r1"}
    with connect(db) as con:
        rows = _rows(con)
    assert {k: (v["status"], v["attempts"]) for k, v in rows.items()} == {
        "a-garbage.r1": ("pending", 1), "b-good.r1": ("delivered", 1),
        "c-redirect.r1": ("pending", 1), "d-reset.r1": ("pending", 1),
        "e-good.r1": ("delivered", 1)}
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("secret", "url"), [
    ("hunter2", "http://127.0.0.1:9/leads"),
    (SECRET, "ftp://127.0.0.1/leads"),
], ids=["secret-not-whsec", "url-not-http"])  # stable ids: SECRET is new in every process
def test_crm_deliver_refuses_a_bad_secret_or_url_in_one_line_writing_nothing(
    tmp_path: Path, secret: str, url: str,
) -> None:
    db = tmp_path / "fleet.duckdb"
    done = _fleetcare("crm", "deliver", "--db", str(db), "--url", url,
                      env={"FLEETCARE_PIPELINE__CRM_SECRET": secret})
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert ("whsec_" if secret != SECRET else "http") in done.stderr
    assert secret.removeprefix("whsec_") not in done.stderr
    assert not db.exists()


def test_a_kept_sender_reuses_its_connection_from_run_to_run_and_reconnects_after_a_reset(
    tmp_path: Path,
) -> None:
    """Urgent leads deliver one run per lead through one :class:`OutboxSender`: the second
    lead goes over the connection the first opened; after the CRM reset one, the next lead
    opens a new one and is delivered."""
    path = tmp_path / "fleet.duckdb"
    events = ["k1.r1", "k2.r1", "k3-reset.r1", "k4.r1"]
    _seed(path, events, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    with (connect(path) as con, RudeCrm({"k3-reset.r1": "reset"}) as crm,
          OutboxSender(crm.url, SECRET, DEADLINE_S) as sender):
        reports = [deliver_outbox(con, url=crm.url, secret=SECRET, timeout_s=DEADLINE_S,
                                  event_ids=[event_id], sender=sender) for event_id in events]
        assert reports == [DeliveryReport(1, 0, 0), DeliveryReport(1, 0, 0),
                           DeliveryReport(0, 1, 0), DeliveryReport(1, 0, 0)]
        first, second, reset, after = (crm.requests_for(e)[0].connection for e in events)
        assert first == second == reset
        assert after != first
        assert [r["status"] for _, r in sorted(_rows(con).items())] == [
            "delivered", "delivered", "pending", "delivered"]

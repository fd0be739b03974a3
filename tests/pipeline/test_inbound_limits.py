"""Inbound surfaces over real HTTP: every refusal path of the CRM receiver and status endpoint.

Bodies are bounded before they are read (413 on the announced length, a capped chunked read,
411 without a length, 408 for a client that stalls), then webhook headers, timestamps and
signatures are checked, then the payload's shape; nothing refused reaches the inbox, and ADF
XML with a DTD (entity expansion, external entities) is refused by the CRM, which stores nothing.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.crm.http_server import JsonHttpServer
from pipeline.crm.inbound import INBOUND_PATH, Inbox, inbound_server
from pipeline.crm.signing import new_secret, signed_headers
from pipeline.sandbox.reference_crm import CrmReceiver

SECRET = "whsec_" + base64.b64encode(b"fleetcare-inbound-limits-key").decode()
LIMIT = 2_000
UPDATE = {"update_id": "upd-1", "lead_id": "lead-" + "0" * 32, "state": "booked",
          "at": "2026-11-23T09:00:00Z"}


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    return Inbox(tmp_path / "status.jsonl")


@pytest.fixture
def inbound(inbox: Inbox) -> Iterator[JsonHttpServer]:
    with inbound_server(SECRET, inbox, max_body=LIMIT) as server:
        yield server


def _signed(doc: Any, msg_id: str = "upd-1", stamp: int | None = None,
            key: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(doc).encode()
    headers = signed_headers(key, msg_id, int(time.time()) if stamp is None else stamp, body)
    return body, {"content-type": "application/json", **headers}


def _post(server: JsonHttpServer, path: str, body: bytes | Iterable[bytes] | None,
          headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    host, port = server.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        chunked = body is not None and not isinstance(body, bytes)
        conn.request("POST", path, body=body, headers=headers, encode_chunked=chunked)
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        conn.close()


def _raw(server: JsonHttpServer, head: bytes) -> tuple[int, dict[str, Any]]:
    """Send raw request bytes (headers, maybe part of a body); the status and answer.

    The test's socket waits up to 10 s: a server that kept reading would time it out.
    """
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.split(b"\r\n\r\n", 1)[1])


def test_a_valid_update_is_accepted_once_chunked_or_not(inbound: JsonHttpServer,
                                                        inbox: Inbox) -> None:
    body, headers = _signed(UPDATE)
    assert _post(inbound, INBOUND_PATH, body, headers)[0] == 200
    second, headers2 = _signed(UPDATE | {"update_id": "upd-2"}, "upd-2")
    pieces = [second[:10], second[10:]]
    assert _post(inbound, INBOUND_PATH, iter(pieces), headers2)[0] == 200
    assert [u.update_id for u in inbox.read()[0]] == ["upd-1", "upd-2"]


def test_an_announced_oversize_body_is_refused_before_it_is_sent(inbound: JsonHttpServer,
                                                                 inbox: Inbox) -> None:
    head = (f"POST {INBOUND_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {10**9}\r\n"
            "Content-Type: application/json\r\n\r\n").encode()
    status, answer = _raw(inbound, head)  # no body follows: the answer cannot wait for it
    assert status == 413 and str(LIMIT) in answer["error"]
    assert inbound.refused_count == 1
    assert inbox.read() == ([], 0)


def test_a_chunked_body_is_cut_off_at_the_limit(inbound: JsonHttpServer, inbox: Inbox) -> None:
    body, headers = _signed(UPDATE | {"reason": "x" * 900})
    chunks = (body[i:i + 500] for i in range(0, len(body), 500))
    endless = iter(list(chunks) + [b" " * 500] * 10)  # valid JSON padding past the limit
    status, answer = _post(inbound, INBOUND_PATH, endless, headers)
    assert status == 413 and "chunked" in answer["error"]
    assert inbox.read() == ([], 0)


@pytest.mark.parametrize(("head", "status", "words"), [
    (b"Content-Type: application/json\r\n", 411, "Content-Length"),
    (b"Content-Length: lots\r\n", 400, "not a number"),
    (b"Content-Length: -5\r\n", 400, "negative"),
    (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400, "not both"),
    (b"Transfer-Encoding: gzip\r\n", 400, "unsupported"),
    (b"Content-Length: 5\r\nContent-Length: 500000\r\n", 400, "several different"),
], ids=["no-length", "bad-length", "negative", "both", "gzip", "two-lengths"])
def test_malformed_framing_is_refused(inbound: JsonHttpServer, head: bytes, status: int,
                                      words: str) -> None:
    got, answer = _raw(inbound, b"POST /status HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
    assert got == status and words in answer["error"]


def test_a_client_that_stalls_mid_body_is_cut_off(inbox: Inbox) -> None:
    server = JsonHttpServer({("POST", "/status"): lambda p, h, b: (200, {})},
                            request_timeout_s=0.3)
    with server:
        status, answer = _raw(  # the server answers; the test's socket did not time out
            server, b"POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
                    b"{\"half\":")
    assert status == 408 and "no body" in answer["error"]


@pytest.mark.parametrize(("case", "status", "words"), [
    ("unsigned", 400, "missing webhook-id"),
    ("stale", 400, "more than 300 s"),
    ("future", 400, "more than 300 s"),
    ("bad-stamp", 400, "not Unix seconds"),
    ("forged", 401, "no webhook-signature"),
    ("tampered", 401, "no webhook-signature"),
    ("schema", 400, "invalid status update"),
    ("not-json", 400, "not JSON"),
])
def test_inbound_refuses_each_bad_update(inbound: JsonHttpServer, inbox: Inbox, case: str,
                                         status: int, words: str) -> None:
    now = int(time.time())
    body, headers = _signed(UPDATE)
    if case == "unsigned":
        headers = {"content-type": "application/json"}
    elif case in ("stale", "future"):
        body, headers = _signed(UPDATE, stamp=now - 600 if case == "stale" else now + 600)
    elif case == "bad-stamp":
        headers = headers | {"webhook-timestamp": "yesterday"}
    elif case == "forged":
        body, headers = _signed(UPDATE, key=new_secret())
    elif case == "tampered":
        body = body.replace(b"booked", b"done")
    elif case == "schema":
        body, headers = _signed(UPDATE | {"state": "paid", "extra": 1})
    elif case == "not-json":
        body = b"state=booked"
        headers = headers | signed_headers(SECRET, "upd-1", now, body)
    got, answer = _post(inbound, INBOUND_PATH, body, headers)
    assert got == status and words in answer["error"]
    assert inbox.read() == ([], 0)


def test_crm_receiver_bounds_bodies_and_checks_lead_shapes() -> None:
    with CrmReceiver(SECRET, max_body=LIMIT, validate=True) as crm:
        head = b"POST /leads HTTP/1.1\r\nHost: x\r\nContent-Length: 2001\r\n\r\n"
        assert _raw(crm, head)[0] == 413

        body, headers = _signed({"lead_id": "lead-1"}, "lead-1.r1")
        status, answer = _post(crm, "/leads", body, headers)
        assert status == 400 and "lead.schema.json" in answer["error"]

        composite = {"allOrNone": True, "compositeRequest": [
            {"method": "PATCH", "url": "/x", "referenceId": "lead", "body": {}}]}
        body, headers = _signed(composite, "lead-2.r1")
        assert _post(crm, "/leads", body, headers)[0] == 200
        body, headers = _signed({"compositeRequest": []}, "lead-3.r1")
        assert _post(crm, "/leads", body, headers)[0] == 400

        adf = b'<?xml version="1.0"?>\n<?adf version="1.0"?>\n<adf><prospect/></adf>\n'
        headers = signed_headers(SECRET, "lead-4.r1", int(time.time()), adf)
        assert _post(crm, "/leads", adf, headers | {"content-type": "application/xml"})[0] == 200
        bomb = (b'<?xml version="1.0"?><!DOCTYPE adf [<!ENTITY a "aaaa">]><adf>&a;</adf>')
        headers = signed_headers(SECRET, "lead-5.r1", int(time.time()), bomb)
        status, answer = _post(crm, "/leads", bomb, headers | {"content-type": "text/xml"})
        assert status == 400 and "DTD" in answer["error"]

        stale, headers = _signed(composite, "lead-6.r1", stamp=int(time.time()) - 301)
        assert _post(crm, "/leads", stale, headers)[0] == 400
        assert [d.get("format") for d in crm.leads()] == [None, "adf"]
        assert crm.rejected_count == 5


_LAUGHS = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE adf [<!ENTITY lol0 "lol">'
                  f"{_LAUGHS}]><adf><prospect>&lol9;</prospect></adf>").encode()


@pytest.mark.parametrize("kind", ["billion-laughs", "external-entity", "external-dtd"])
def test_crm_receiver_refuses_xml_entity_tricks_and_stores_nothing(kind: str,
                                                                    tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("not for the CRM\n")
    documents = {
        "billion-laughs": BILLION_LAUGHS,
        "external-entity": (f'<?xml version="1.0"?><!DOCTYPE adf [<!ENTITY leak SYSTEM '
                            f'"{secret_file.as_uri()}">]><adf><prospect>&leak;</prospect></adf>'
                            ).encode(),
        "external-dtd": (f'<?xml version="1.0"?><!DOCTYPE adf SYSTEM "{secret_file.as_uri()}">'
                         "<adf><prospect/></adf>").encode(),
    }
    xml = documents[kind]
    with CrmReceiver(SECRET) as crm:  # refused whether or not lead shapes are validated
        headers = signed_headers(SECRET, "lead-7.r1", int(time.time()), xml)
        status, answer = _post(crm, "/leads", xml, headers | {"content-type": "application/xml"})
        assert status == 400 and "DTD" in answer["error"]
        assert crm.leads() == [] and crm.received_count == 0 and crm.rejected_count == 1

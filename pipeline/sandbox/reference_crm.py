"""A small but real reference CRM: receives signed lead webhooks, lets advisors act on them.

It is what tests and the demo deliver to, and a model for a dealer integration: verify the
Standard Webhooks signature and timestamp before trusting a byte, store each ``webhook-id``
once (a redelivery is answered 200 and stored nothing), answer fast. When an advisor
acknowledges, books, finishes or dismisses a lead, the CRM sends a signed status update to
fleetcare's inbound endpoint (``status_url``), the way a dealer CRM's outbound webhook would.

Endpoints: ``POST /leads`` (a lead: JSON, or ADF XML), ``GET /leads`` (every stored delivery),
``POST /leads/<lead_id>/status`` (an advisor's action: ``{"state": "booked", ...}``).

What it refuses, in the order it checks: what :mod:`pipeline.crm.http_server` refuses for
every endpoint (too many connections 503; bad framing 400, no length 411, a body over
``max_body`` bytes 413, all unread; a request not complete within ``request_timeout_s`` 408),
missing or malformed webhook headers or a timestamp more than five minutes off (400), a
signature no live key made (401), a body that is neither JSON nor XML, XML with a DTD (entity
expansion, external entities: defusedxml refuses any DTD before the parser could act on it),
and, with ``validate``, a JSON lead that breaks ``lead.schema.json``, a Salesforce composite
request of the wrong shape or XML that is not ADF (400, every problem listed). ``validate``
is off by default because tests post bare documents to it; ``fleetcare crm serve`` turns it
on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import jsonschema
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from pipeline.broker.auth import redact_url
from pipeline.config import load_pipeline_settings
from pipeline.crm.http_server import MAX_BODY, MAX_CONNECTIONS, REQUEST_TIMEOUT_S, JsonHttpServer
from pipeline.crm.problems import schema_problems
from pipeline.crm.signing import SignatureError, key_list, newest, signed_headers, verify
from pipeline.errors import TerminalPipelineError
from pipeline.foreground import run_until_terminated
from pipeline.leads.appointments import iso

log = logging.getLogger(__name__)

PATH: Final = "/leads"
STATUS_PATH: Final = PATH + "/{lead_id}/status"
LEAD_SCHEMA: Final = Path(__file__).resolve().parents[1] / "leads" / "lead.schema.json"
_LEAD_VALIDATOR: Final = jsonschema.Draft202012Validator(
    json.loads(LEAD_SCHEMA.read_text(encoding="utf-8")),
    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


class PayloadError(TerminalPipelineError):
    """A verified delivery whose body is not a lead the CRM can take; says every problem."""


class CrmReceiver(JsonHttpServer):
    """An HTTP server in a background thread that stores verified leads in memory.

    Args:
        secret: the ``whsec_`` key, or every key live during a rotation.
        host: interface to listen on.
        port: TCP port (0: any free port; read it back from :attr:`url`).
        status_url: fleetcare's inbound endpoint for advisors' status updates (optional).
        status_secret: key that signs those updates (default: the newest of ``secret``).
        max_body: largest body read, in bytes (413 beyond, before reading it).
        request_timeout_s: time a client has to send a whole request (408 beyond).
        max_connections: connections served at once (a request on one more: 503).
        validate: check each lead's shape (JSON schema, Salesforce composite, ADF root).
    """

    def __init__(self, secret: str | Sequence[str], *, host: str = "127.0.0.1", port: int = 0,
                 status_url: str | None = None, status_secret: str | None = None,
                 max_body: int = MAX_BODY, request_timeout_s: float = REQUEST_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS, validate: bool = False) -> None:
        self._secrets = key_list(secret)
        self.status_url = status_url
        self._status_secret = status_secret or newest(self._secrets)
        self._lock = threading.Lock()
        self._leads: dict[str, dict[str, Any]] = {}
        self._received = 0
        self._rejected = 0
        self.validate = validate
        super().__init__({("POST", PATH): self._post_lead, ("GET", PATH): self._get,
                          ("POST", STATUS_PATH): self._post_status},
                         host=host, port=port, max_body=max_body,
                         request_timeout_s=request_timeout_s, max_connections=max_connections)

    @property
    def url(self) -> str:
        """The POST endpoint, e.g. ``http://127.0.0.1:41234/leads``."""
        return self.base_url + PATH

    @property
    def received_count(self) -> int:
        """Verified POSTs received, redeliveries included."""
        with self._lock:
            return self._received

    @property
    def rejected_count(self) -> int:
        """POSTs refused (bad signature, stale timestamp, malformed body, too large)."""
        with self._lock:
            return self._rejected + self.refused_count

    def leads(self) -> list[dict[str, Any]]:
        """Stored deliveries, one per distinct webhook-id, in arrival order."""
        with self._lock:
            return list(self._leads.values())

    def rotate(self, secrets: Sequence[str]) -> None:
        """Replace the accepted keys (a rotation: list old and new until senders switched)."""
        with self._lock:
            self._secrets = list(secrets)

    def accept(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Verify and store one delivery; return (HTTP status, JSON answer)."""
        with self._lock:
            keys = list(self._secrets)
        try:
            msg_id = verify(keys, headers, body, time.time())
            doc = _parse(headers, body)
            if self.validate:
                check_lead(doc)
        except SignatureError as exc:
            return self._reject(exc.status, str(exc))
        except PayloadError as exc:
            return self._reject(400, str(exc))
        except (ValueError, ParseError) as exc:
            return self._reject(400, f"body is neither JSON nor XML: {exc}")
        with self._lock:
            self._received += 1
            duplicate = msg_id in self._leads
            self._leads.setdefault(msg_id, doc)
        return 200, {"status": "duplicate" if duplicate else "stored", "webhook_id": msg_id}

    def set_status(self, lead_id: str, state: str, **detail: Any) -> tuple[int, dict[str, Any]]:
        """An advisor acts on a lead: send the signed update to fleetcare; its answer back."""
        if self.status_url is None:
            return 409, {"error": "this CRM has no status_url to report to"}
        update = {"update_id": f"upd-{uuid.uuid4().hex}", "lead_id": lead_id, "state": state,
                  "at": detail.pop("at", None) or iso(dt.datetime.now(dt.UTC)), **detail}
        body = json.dumps(update).encode()
        headers = signed_headers(self._status_secret, update["update_id"], int(time.time()),
                                 body)
        request = urllib.request.Request(self.status_url, data=body, method="POST", headers={
            "content-type": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)
        except OSError as exc:
            return 502, {"error": f"cannot reach {redact_url(self.status_url)}: {exc}"}

    def _post_lead(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        return self.accept(headers, body)

    def _post_status(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        lead_id = path.removeprefix(PATH + "/").removesuffix("/status")
        try:
            request = json.loads(body)
            state = request.pop("state")
        except (ValueError, KeyError, AttributeError):
            return 400, {"error": 'send {"state": "acknowledged|booked|done|dismissed", ...}'}
        return self.set_status(lead_id, state, **request)

    def _get(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        return 200, self.leads()

    def _reject(self, status: int, reason: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self._rejected += 1
        log.warning("CRM rejected a delivery (%d): %s", status, reason)
        return status, {"error": reason}


def _parse(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """A JSON body as is; an XML body (ADF) kept whole after checking it parses.

    XML is parsed by defusedxml with every DTD forbidden: no lead needs one, and a DTD is what
    entity expansion ("billion laughs") and external entities (reading local files, fetching
    URLs) need. It is refused as the parser meets it, before any entity is defined, however
    the document is encoded.

    Raises:
        PayloadError: XML with a DTD, entities or external references.
        ValueError, ParseError: neither JSON nor XML.
    """
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    if "xml" in content_type:
        try:
            root = fromstring(body, forbid_dtd=True)
        except DefusedXmlException:
            raise PayloadError("XML with a DTD or entities is refused; ADF needs neither"
                               ) from None
        return {"format": root.tag, "xml": body.decode()}
    doc: dict[str, Any] = json.loads(body)
    return doc


def check_lead(doc: Any) -> None:
    """Check a parsed delivery's shape: a lead document, a Salesforce composite, or ADF.

    Raises:
        PayloadError: the shape is wrong; every problem is listed.
    """
    if not isinstance(doc, dict):
        raise PayloadError(f"a lead must be a JSON object, not {type(doc).__name__}")
    if "xml" in doc and "format" in doc:
        if doc["format"] != "adf":
            raise PayloadError(f"XML root is <{doc['format']}>; an ADF lead's root is <adf>")
        return
    if "compositeRequest" in doc:
        parts = doc["compositeRequest"]
        bad = not isinstance(parts, list) or not parts or not all(
            isinstance(p, dict) and {"method", "url", "referenceId"} <= p.keys() for p in parts)
        if bad:
            raise PayloadError("compositeRequest must be a non-empty list of subrequests, "
                               "each with method, url and referenceId")
        return
    where = schema_problems(_LEAD_VALIDATOR.iter_errors(doc))
    if where:
        raise PayloadError(f"invalid lead ({where}); see {LEAD_SCHEMA.name}")


def serve_forever(secret: str | Sequence[str], port: int, host: str = "127.0.0.1",
                  status_url: str | None = None, max_body: int | None = None,
                  request_timeout_s: float | None = None,
                  max_connections: int | None = None) -> None:
    """Run a receiver until SIGINT or SIGTERM (for the CLI); leads validated.

    The caller blocks (the server's own thread serves); the limits default to the settings'
    ``http_max_body_bytes``, ``http_request_timeout_s`` and ``http_max_connections``.
    """
    settings = load_pipeline_settings()
    receiver = CrmReceiver(
        secret, host=host, port=port, status_url=status_url,
        max_body=max_body or settings.http_max_body_bytes,
        request_timeout_s=request_timeout_s or settings.http_request_timeout_s,
        max_connections=max_connections or settings.http_max_connections, validate=True)
    log.info("reference CRM listening on %s", receiver.url)
    run_until_terminated(receiver)

"""Status updates coming back from the CRM: verified, validated, and kept durably first.

DuckDB has one writer process, and an HTTP endpoint must answer fast, so the endpoint does not
touch the store. It verifies the Standard Webhooks signature, validates the body against
``status_update.schema.json`` (answering 400 with every problem spelled out), and appends the
update to an append-only JSONL inbox, flushed and fsynced before it answers 200. The writer
applies the inbox later with :func:`pipeline.leads.lifecycle.apply_inbound`, idempotently on
``update_id``, so an update the CRM sends twice, or one the inbox holds after a crash, counts
once.

Checks, cheapest first, so nothing unauthenticated costs more than a header check: the
connection cap, the body's framing, size and deadline (over ``max_body`` bytes: 413 before it
is read; see :mod:`pipeline.crm.http_server`), the webhook headers and a timestamp within five
minutes (400), the signature (401), then the schema (400). Only a request that passes them all
touches the disk.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jsonschema

from pipeline.crm.http_server import MAX_BODY, MAX_CONNECTIONS, REQUEST_TIMEOUT_S, JsonHttpServer
from pipeline.crm.problems import schema_problems
from pipeline.crm.signing import SignatureError, verify
from pipeline.errors import TerminalPipelineError

log = logging.getLogger(__name__)

SCHEMA_PATH: Final = Path(__file__).with_name("status_update.schema.json")
_VALIDATOR: Final = jsonschema.Draft202012Validator(
    json.loads(SCHEMA_PATH.read_text(encoding="utf-8")),
    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


class InboundError(TerminalPipelineError):
    """A status update that cannot be accepted; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """One validated update, as the inbox keeps it."""

    update_id: str
    lead_id: str
    state: str
    at: str
    detail: dict[str, Any]


def parse_update(body: bytes | str) -> StatusUpdate:
    """Decode and validate one update.

    Raises:
        InboundError: the body is not JSON or breaks the schema; every problem is listed.
    """
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise InboundError(f"status update is not JSON: {exc}") from None
    where = schema_problems(_VALIDATOR.iter_errors(doc), limit=50)
    if where:
        raise InboundError(f"invalid status update ({where}); see {SCHEMA_PATH.name}")
    detail = {k: v for k, v in doc.items() if k not in ("update_id", "lead_id", "state", "at")}
    return StatusUpdate(doc["update_id"], doc["lead_id"], doc["state"], doc["at"], detail)


class Inbox:
    """An append-only JSONL file of accepted updates; each append is fsynced before it returns.

    A torn last line (power lost mid-write) is skipped and counted by :meth:`read`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, update: StatusUpdate) -> None:
        """Write one update durably."""
        line = json.dumps({"update_id": update.update_id, "lead_id": update.lead_id,
                           "state": update.state, "at": update.at, **update.detail})
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def read(self) -> tuple[list[StatusUpdate], int]:
        """Every update in the file, in arrival order, and how many lines were unreadable."""
        updates, bad = [], 0
        for line in self._lines():
            try:
                updates.append(parse_update(line))
            except InboundError as exc:
                bad += 1
                log.error("inbox %s: skipping unreadable line: %s", self.path, exc)
        return updates, bad

    def _lines(self) -> Iterator[str]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield line


def accept(secrets: str | Sequence[str], inbox: Inbox, headers: dict[str, str],
           body: bytes) -> tuple[int, dict[str, Any]]:
    """Handle one inbound POST: (HTTP status, JSON answer). Nothing is kept unless 200."""
    try:
        verify(secrets, headers, body, time.time())
        update = parse_update(body)
    except SignatureError as exc:
        log.warning("inbound status update refused (%d): %s", exc.status, exc)
        return exc.status, {"error": str(exc)}
    except InboundError as exc:
        log.warning("inbound status update refused (400): %s", exc)
        return 400, {"error": str(exc)}
    inbox.append(update)
    return 200, {"status": "accepted", "update_id": update.update_id}


INBOUND_PATH: Final = "/status"


def inbound_server(secrets: str | Sequence[str], inbox: Inbox, *, host: str = "127.0.0.1",
                   port: int = 0, max_body: int = MAX_BODY,
                   request_timeout_s: float = REQUEST_TIMEOUT_S,
                   max_connections: int = MAX_CONNECTIONS) -> JsonHttpServer:
    """The HTTP endpoint a CRM posts status updates to: ``POST /status``.

    ``max_body`` bounds a request body in bytes (an update is well under 1 KB),
    ``request_timeout_s`` the time a client has to send a whole request, and
    ``max_connections`` the connections served at once (see :class:`JsonHttpServer`).
    Not started: use it as a context manager, or call ``start()``.
    """
    def handle(path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        return accept(secrets, inbox, headers, body)

    return JsonHttpServer({("POST", INBOUND_PATH): handle}, host=host, port=port,
                          max_body=max_body, request_timeout_s=request_timeout_s,
                          max_connections=max_connections)

"""Deliver the lead outbox to a CRM as signed webhooks (Standard Webhooks).

Each outbox row is POSTed with ``webhook-id`` (the row's event_id, the idempotency key the CRM
deduplicates on), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` (see
:mod:`pipeline.crm.signing`; the newest of the given keys signs). A 2xx marks the row delivered and
the lead sent. A 5xx, 408, 429, timeout or refused connection is the CRM's trouble, not the
lead's: the row is retried with exponential backoff and jitter for up to
:data:`RETRY_WINDOW` after its first failure. Any other 4xx says the request itself is wrong
(bad signature, a body the CRM cannot take), so retrying would only repeat it: the row is dead
at once, with the CRM's answer as the reason. Each row's outcome is committed right after its
request, so a crash re-sends at most one row, which the CRM drops as a duplicate.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

import duckdb
import orjson

from pipeline.broker.auth import redact_url
from pipeline.crm.adapters import render
from pipeline.crm.signing import (
    SECRET_PREFIX,
    SignatureError,
    check_secret,
    key_list,
    new_secret,
    sign,
    signed_headers,
    verify,
)
from pipeline.errors import DeliveryError, RejectedError
from pipeline.store.connection import transaction

__all__ = ["BACKOFF_BASE_S", "BACKOFF_CAP_S", "RETRY_WINDOW", "SECRET_PREFIX", "DeliveryReport",
           "SignatureError", "backoff_s", "deliver_outbox", "new_secret", "sign", "verify"]

log = logging.getLogger(__name__)

BACKOFF_BASE_S: Final = 30.0
BACKOFF_CAP_S: Final = 6 * 3600.0
RETRY_WINDOW: Final = dt.timedelta(days=3)
"""A row that still fails this long after its first failure is dead."""
_RETRY_STATUSES: Final = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Outcome of one :func:`deliver_outbox` run (rows, not leads)."""

    delivered: int
    retrying: int
    dead: int


@dataclass(frozen=True, slots=True)
class _Row:
    event_id: str
    lead_id: str
    body: str
    attempt: int
    first_failed_at: dt.datetime | None
    payload_format: str


def deliver_outbox(
    con: duckdb.DuckDBPyConnection,
    *,
    url: str,
    secret: str | Sequence[str],
    now: dt.datetime | None = None,
    timeout_s: float = 5.0,
    max_attempts: int | None = None,
    payload_format: str = "json",
    event_ids: Collection[str] | None = None,
) -> DeliveryReport:
    """POST every pending outbox row that is due at ``now`` to ``url``.

    Args:
        con: the store (this process is its writer).
        url: the CRM endpoint.
        secret: the ``whsec_`` key, or the live keys of a rotation, newest last (a list, or
            one string with the keys separated by spaces).
        now: decides which rows are due and when retries are scheduled (default: now). The
            signed ``webhook-timestamp`` is always the real send time, which receivers check.
        timeout_s: per request.
        max_attempts: give up sooner than the retry window (None: only the window counts).
        payload_format: ``json``, ``salesforce`` or ``adf`` for rows that do not name one.
        event_ids: only these rows (urgent leads deliver their own rows at once).
    """
    now = now or dt.datetime.now(dt.UTC)
    keys = key_list(secret)
    if not keys:
        raise ValueError("no webhook secret given: set FLEETCARE_PIPELINE__CRM_SECRET")
    for key in keys:
        check_secret(key)
    rows = con.execute(
        "SELECT event_id, lead_id, CAST(body AS VARCHAR), attempts + 1, first_failed_at,"
        " coalesce(payload_format, ?) FROM outbox WHERE status = 'pending'"
        " AND next_attempt_at <= ? AND (? OR list_contains(?, event_id))"
        " ORDER BY next_attempt_at, event_id",
        [payload_format, now, event_ids is None, list(event_ids or ())]).fetchall()
    tally = {"delivered": 0, "retrying": 0, "dead": 0}
    for row in rows:
        outcome = _deliver_one(con, url, secret, timeout_s, _Row(*row), max_attempts, now)
        tally[outcome] += 1
    if rows:
        log.info("outbox delivery to %s: %s", redact_url(url), tally)
    return DeliveryReport(**tally)


def _deliver_one(
    con: duckdb.DuckDBPyConnection, url: str, secret: str | Sequence[str], timeout_s: float,
    row: _Row, max_attempts: int | None, now: dt.datetime,
) -> str:
    try:
        body, content_type = render(orjson.loads(row.body), row.payload_format) \
            if row.payload_format != "json" else (row.body.encode(), "application/json")
        _post(url, secret, row.event_id, body, content_type, timeout_s)
    except (RejectedError, ValueError) as exc:
        return _mark_dead(con, row.event_id, row.attempt, str(exc))
    except DeliveryError as exc:
        first = row.first_failed_at or now
        out_of_time = now - first >= RETRY_WINDOW
        if out_of_time or (max_attempts is not None and row.attempt >= max_attempts):
            why = f"gave up after {row.attempt} attempts since {first:%Y-%m-%d %H:%M} UTC"
            return _mark_dead(con, row.event_id, row.attempt, f"{why}: {exc}")
        retry_at = min(now + dt.timedelta(seconds=backoff_s(row.attempt)), first + RETRY_WINDOW)
        con.execute("UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?,"
                    " first_failed_at = ? WHERE event_id = ?",
                    [row.attempt, retry_at, str(exc), first, row.event_id])
        log.warning("delivery of %s failed (attempt %d), retry at %s: %s",
                    row.event_id, row.attempt, retry_at, exc)
        return "retrying"
    _mark_delivered(con, row.event_id, row.lead_id, row.attempt, now)
    return "delivered"


def _mark_delivered(con: duckdb.DuckDBPyConnection, event_id: str, lead_id: str,
                    attempt: int, now: dt.datetime) -> None:
    """Record the delivery and move the lead from new to sent, together."""
    with transaction(con):
        con.execute("UPDATE outbox SET status = 'delivered', attempts = ?, delivered_at = ?,"
                    " last_error = NULL WHERE event_id = ?", [attempt, now, event_id])
        con.execute("UPDATE leads SET state = 'sent', updated_at = ? WHERE lead_id = ?"
                    " AND state = 'new'", [now, lead_id])


def _mark_dead(con: duckdb.DuckDBPyConnection, event_id: str, attempt: int, reason: str) -> str:
    con.execute("UPDATE outbox SET status = 'dead', attempts = ?, last_error = ?"
                " WHERE event_id = ?", [attempt, reason, event_id])
    log.error("outbox row %s is dead: %s", event_id, reason)
    return "dead"


def backoff_s(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Doubles from :data:`BACKOFF_BASE_S` up to :data:`BACKOFF_CAP_S`, then keeps a random
    50-100 % of it, so many leads failing together do not retry in lockstep.
    """
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(attempt - 1, 30))
    return ceiling * (0.5 + 0.5 * (rng or random).random())


def _post(url: str, secret: str | Sequence[str], event_id: str, body: bytes,
          content_type: str, timeout_s: float) -> None:
    """Send one webhook.

    Raises:
        RejectedError: the CRM answered a 4xx other than 408/429.
        DeliveryError: a 5xx, 408, 429, timeout or network error.
    """
    headers = signed_headers(secret, event_id, int(time.time()), body)
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"content-type": content_type, **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode(errors="replace")
        message = f"HTTP {exc.code} from {redact_url(url)}: {detail}"
        if exc.code >= 500 or exc.code in _RETRY_STATUSES:
            raise DeliveryError(message) from exc
        raise RejectedError(message) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        raise DeliveryError(f"cannot reach {redact_url(url)}: {exc}") from exc

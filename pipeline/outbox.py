"""Deliver the lead outbox to a CRM as signed webhooks (Standard Webhooks).

Each outbox row is POSTed with ``webhook-id`` (the row's event_id, the idempotency key the CRM
deduplicates on), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``
(``v1,`` + base64 HMAC-SHA256 of ``"{id}.{timestamp}.{body}"`` keyed with the secret, which
is written ``whsec_<base64 key>``). A 2xx marks the row delivered and the lead sent; a 5xx,
408, 429, timeout or refused connection schedules a retry with exponential backoff and jitter;
any other 4xx, or running out of attempts, marks it dead with the reason. Each row's outcome is
committed right after its request, so a crash re-sends at most one row, which the CRM drops
as a duplicate.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import logging
import random
import secrets as _secrets
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import duckdb

from pipeline.errors import DeliveryError, RejectedError, TerminalPipelineError

log = logging.getLogger(__name__)

SECRET_PREFIX: Final = "whsec_"
BACKOFF_BASE_S: Final = 30.0
BACKOFF_CAP_S: Final = 6 * 3600.0
_RETRY_STATUSES: Final = frozenset({408, 429})


class SignatureError(TerminalPipelineError):
    """A webhook failed verification; ``status`` is the HTTP status a receiver should answer."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Outcome of one :func:`deliver_outbox` run (rows, not leads)."""

    delivered: int
    retrying: int
    dead: int


def new_secret() -> str:
    """A fresh random signing secret in ``whsec_<base64>`` form (24 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("webhook secret must be 'whsec_' followed by base64") from exc


def sign(secret: str, msg_id: str, timestamp: int, body: str | bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for one message."""
    payload = body.decode() if isinstance(body, bytes) else body
    content = f"{msg_id}.{timestamp}.{payload}".encode()
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secrets: str | Sequence[str],
    headers: Mapping[str, str],
    body: str | bytes,
    now: dt.datetime | float,
    tolerance_s: float = 300,
) -> str:
    """Check a received webhook; return its ``webhook-id`` when authentic and fresh.

    Accepts several secrets (key rotation) and several space-separated signatures.

    Raises:
        SignatureError: a header is missing or malformed (status 400), the timestamp is more
            than ``tolerance_s`` away from ``now`` (status 400), or no signature matches
            (status 401).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp = lower.get("webhook-id"), lower.get("webhook-timestamp")
    sigs = lower.get("webhook-signature")
    if not msg_id or not stamp or not sigs:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature", 400)
    try:
        ts = int(stamp)
    except ValueError:
        raise SignatureError(f"webhook-timestamp {stamp!r} is not Unix seconds", 400) from None
    clock = now.timestamp() if isinstance(now, dt.datetime) else float(now)
    if abs(clock - ts) > tolerance_s:
        raise SignatureError(
            f"webhook-timestamp {ts} is more than {tolerance_s:.0f} s from now", 400)
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    expected = {sign(k, msg_id, ts, body).split(",", 1)[1] for k in keys}
    for candidate in sigs.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and any(hmac.compare_digest(value, e) for e in expected):
            return msg_id
    raise SignatureError("no webhook-signature matches the body", 401)


def deliver_outbox(
    con: duckdb.DuckDBPyConnection,
    *,
    url: str,
    secret: str,
    now: dt.datetime | None = None,
    timeout_s: float = 5.0,
    max_attempts: int = 12,
) -> DeliveryReport:
    """POST every pending outbox row that is due at ``now`` to ``url``.

    ``now`` decides which rows are due and when retries are scheduled; the signed
    ``webhook-timestamp`` is always the real send time, which receivers check against their
    clock.
    """
    now = now or dt.datetime.now(dt.UTC)
    _key(secret)
    rows = con.execute(
        "SELECT event_id, lead_id, CAST(body AS VARCHAR), attempts FROM outbox"
        " WHERE status = 'pending' AND next_attempt_at <= ?"
        " ORDER BY next_attempt_at, event_id", [now]).fetchall()
    tally = {"delivered": 0, "retrying": 0, "dead": 0}
    for event_id, lead_id, body, attempts in rows:
        outcome = _deliver_one(con, url, secret, timeout_s, (event_id, lead_id, body),
                               attempts + 1, max_attempts, now)
        tally[outcome] += 1
    if rows:
        log.info("outbox delivery to %s: %s", url, tally)
    return DeliveryReport(**tally)


def _deliver_one(
    con: duckdb.DuckDBPyConnection, url: str, secret: str, timeout_s: float,
    row: tuple[str, str, str], attempt: int, max_attempts: int, now: dt.datetime,
) -> str:
    event_id, lead_id, body = row
    try:
        _post(url, secret, event_id, body, timeout_s)
    except RejectedError as exc:
        return _mark_dead(con, event_id, attempt, str(exc))
    except DeliveryError as exc:
        if attempt >= max_attempts:
            return _mark_dead(con, event_id, attempt, f"gave up after {attempt}: {exc}")
        retry_at = now + dt.timedelta(seconds=backoff_s(attempt))
        con.execute("UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?"
                    " WHERE event_id = ?", [attempt, retry_at, str(exc), event_id])
        log.warning("delivery of %s failed (attempt %d), retry at %s: %s",
                    event_id, attempt, retry_at, exc)
        return "retrying"
    _mark_delivered(con, event_id, lead_id, attempt, now)
    return "delivered"


def _mark_delivered(con: duckdb.DuckDBPyConnection, event_id: str, lead_id: str,
                    attempt: int, now: dt.datetime) -> None:
    """Record the delivery and move the lead from new to sent, together."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("UPDATE outbox SET status = 'delivered', attempts = ?, delivered_at = ?,"
                    " last_error = NULL WHERE event_id = ?", [attempt, now, event_id])
        con.execute("UPDATE leads SET state = 'sent', updated_at = ? WHERE lead_id = ?"
                    " AND state = 'new'", [now, lead_id])
        con.execute("COMMIT")
    except duckdb.Error:
        con.execute("ROLLBACK")
        raise


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
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
    return ceiling * (0.5 + 0.5 * (rng or random).random())


def _post(url: str, secret: str, event_id: str, body: str, timeout_s: float) -> None:
    """Send one webhook.

    Raises:
        RejectedError: the CRM answered a 4xx other than 408/429.
        DeliveryError: a 5xx, 408, 429, timeout or network error.
    """
    stamp = int(time.time())
    request = urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, event_id, stamp, body),
    })
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode(errors="replace")
        message = f"HTTP {exc.code} from {url}: {detail}"
        if exc.code >= 500 or exc.code in _RETRY_STATUSES:
            raise DeliveryError(message) from exc
        raise RejectedError(message) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        raise DeliveryError(f"cannot reach {url}: {exc}") from exc

"""Deliver the lead outbox to a CRM as signed webhooks (Standard Webhooks).

Each outbox row is POSTed with ``webhook-id`` (the row's event_id, the idempotency key the CRM
deduplicates on), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` (see
:mod:`pipeline.crm.signing`; the newest of the given keys signs).

Only a complete, well-formed 2xx answer, read to its end within the request's deadline, marks
the row delivered and the lead sent. Everything else is sorted by whose trouble it is:

* The CRM's or the network's (retried with exponential backoff and jitter for up to
  :data:`RETRY_WINDOW` after the row's first failure): a 5xx, 408 or 429; a refused or reset
  connection; an answer cut short, or bytes that are not HTTP; the deadline passing.
* The endpoint's address (retried the same way): a 3xx. No redirect is followed: a client
  that follows one re-sends the POST as a GET (301/302/303) or to an address nobody
  configured, and a 2xx from there proves nothing about delivery. A redirect is the answer
  for *every* lead until someone points ``crm_url`` at the final address, so dead-lettering
  would bury the whole outbox over a setting; the row stays pending with the ``Location`` in
  ``last_error`` and delivers once the URL is fixed, inside the retry window.
* The request's (dead at once, with the CRM's answer as the reason): any other 4xx, which
  says the request itself is wrong (bad signature, a body the CRM cannot take), and a row
  whose body cannot be rendered in its payload format. Retrying would only repeat them.

Every failure is recorded on its own row and the run goes on with the next one; only the
store failing stops it. Each row's outcome is committed right after its request, so a crash
re-sends at most one row, which the CRM drops as a duplicate. The next attempt is timed from
the attempt that failed, not from the start of the run, so rows late in a slow run still get
their full backoff.

One deadline per request covers connecting, sending and reading the whole answer: every
socket wait is cut to what is left of it, so an answer trickled a byte at a time cannot hold a
request past it (per-read timeouts alone would reset at every byte). One HTTP/1.1 connection
is kept alive and reused from row to row; a connection that failed is dropped and the next
row opens a new one. Proxy environment variables are not consulted (a proxied request would
bypass the deadline); the CRM is reached directly, its certificate checked against the
system's trust store.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random
import ssl
import time
import typing
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import duckdb
import httpcore
import httpx
import orjson

from pipeline.broker.auth import redact_url
from pipeline.crm.adapters import render
from pipeline.crm.signing import (
    SECRET_PREFIX,
    SignatureError,
    check_secrets,
    new_secret,
    sign,
    signed_headers,
    verify,
)
from pipeline.errors import DeliveryError, RejectedError, TerminalPipelineError
from pipeline.store.connection import transaction

__all__ = ["BACKOFF_BASE_S", "BACKOFF_CAP_S", "RETRY_WINDOW", "SECRET_PREFIX", "DeliveryReport",
           "OutboxSender", "SignatureError", "backoff_s", "check_endpoint", "deliver_outbox",
           "new_secret", "sign", "verify"]

log = logging.getLogger(__name__)

BACKOFF_BASE_S: Final = 30.0
BACKOFF_CAP_S: Final = 6 * 3600.0
RETRY_WINDOW: Final = dt.timedelta(days=3)
"""A row that still fails this long after its first failure is dead."""
_RETRY_STATUSES: Final = frozenset({408, 429})
_DETAIL_BYTES: Final = 200
"""How much of an answer's body is kept for ``last_error`` (the rest is read and dropped)."""
_WRITE_PIECE: Final = 16 * 1024
"""Request bodies are written in pieces this size, the deadline checked before each one."""


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


def check_endpoint(url: str) -> str:
    """``url`` if it can be a CRM endpoint: ``http://`` or ``https://`` and a host.

    Checked before any row is touched, so a typo is one error at start, not a failure
    recorded on every row.

    Raises:
        TerminalPipelineError: anything else (the message shows the URL, password hidden).
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise TerminalPipelineError(f"CRM URL {redact_url(url)!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise TerminalPipelineError(
            f"CRM URL {redact_url(url)!r} must be http:// or https:// with a host")
    return url


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
    sender: OutboxSender | None = None,
) -> DeliveryReport:
    """POST every pending outbox row that is due to ``url``, each row's outcome on its row.

    Args:
        con: the store (this process is its writer).
        url: the CRM endpoint.
        secret: the ``whsec_`` key, or the live keys of a rotation, newest last (a list, or
            one string with the keys separated by spaces).
        now: the clock of the whole run, for tests and simulated time: it decides which rows
            are due and is the time of every attempt. Default: the real clock, read again
            at each attempt, so each retry is timed from its own attempt. The signed
            ``webhook-timestamp`` is always the real send time, which receivers check.
        timeout_s: the deadline of each request, connecting, sending and reading included.
        max_attempts: give up sooner than the retry window (None: only the window counts).
        payload_format: ``json``, ``salesforce`` or ``adf`` for rows that do not name one.
        event_ids: only these rows (urgent leads deliver their own rows at once).
        sender: an :class:`OutboxSender` kept open by the caller for the same ``url``,
            keys and deadline, so its connection to the CRM outlives this run (default: one
            for this run, closed at its end).

    Raises:
        SecretError: no key, or a key that is not ``whsec_`` + base64 (nothing is sent).
        TerminalPipelineError: ``url`` is not an http(s) URL (nothing is sent).
    """
    keys = check_secrets(secret)
    check_endpoint(url)
    if not timeout_s > 0:
        raise TerminalPipelineError(f"the request deadline must be positive, not {timeout_s}")
    fixed = now
    clock: Callable[[], dt.datetime] = (
        (lambda: fixed) if fixed is not None else (lambda: dt.datetime.now(dt.UTC)))
    rows = con.execute(
        "SELECT event_id, lead_id, CAST(body AS VARCHAR), attempts + 1, first_failed_at,"
        " coalesce(payload_format, ?) FROM outbox WHERE status = 'pending'"
        " AND next_attempt_at <= ? AND (? OR list_contains(?, event_id))"
        # a held lead (pipeline.leads.holds) is never sent, whatever rows it has
        " AND lead_id NOT IN (SELECT lead_id FROM leads WHERE state = 'held')"
        " ORDER BY next_attempt_at, event_id",
        [payload_format, clock(), event_ids is None, list(event_ids or ())]).fetchall()
    tally = {"delivered": 0, "retrying": 0, "dead": 0}
    if not rows:
        return DeliveryReport(**tally)
    with nullcontext(sender) if sender is not None else OutboxSender(
            url, keys, timeout_s) as open_sender:
        for row in rows:
            outcome = _deliver_one(con, open_sender, _Row(*row), max_attempts, clock)
            tally[outcome] += 1
    log.info("outbox delivery to %s: %s", redact_url(url), tally)
    return DeliveryReport(**tally)


def _deliver_one(con: duckdb.DuckDBPyConnection, sender: OutboxSender, row: _Row,
                 max_attempts: int | None, clock: Callable[[], dt.datetime]) -> str:
    try:
        body, content_type = render(orjson.loads(row.body), row.payload_format) \
            if row.payload_format != "json" else (row.body.encode(), "application/json")
    except (KeyError, TypeError, ValueError) as exc:  # a document the format cannot express
        return _mark_dead(con, row.event_id, row.attempt,
                          f"cannot render as {row.payload_format}: {exc!r}")
    try:
        sender.post(row.event_id, body, content_type)
    except RejectedError as exc:
        return _mark_dead(con, row.event_id, row.attempt, str(exc))
    except DeliveryError as exc:
        attempted_at = clock()
        first = row.first_failed_at or attempted_at
        out_of_time = attempted_at - first >= RETRY_WINDOW
        if out_of_time or (max_attempts is not None and row.attempt >= max_attempts):
            why = f"gave up after {row.attempt} attempts since {first:%Y-%m-%d %H:%M} UTC"
            return _mark_dead(con, row.event_id, row.attempt, f"{why}: {exc}")
        retry_at = min(attempted_at + dt.timedelta(seconds=backoff_s(row.attempt)),
                       first + RETRY_WINDOW)
        con.execute("UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?,"
                    " first_failed_at = ? WHERE event_id = ?",
                    [row.attempt, retry_at, str(exc), first, row.event_id])
        log.warning("delivery of %s failed (attempt %d), retry at %s: %s",
                    row.event_id, row.attempt, retry_at, exc)
        return "retrying"
    _mark_delivered(con, row.event_id, row.lead_id, row.attempt, clock())
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


class OutboxSender:
    """An HTTP client that signs and POSTs rows over one reused keep-alive connection.

    :func:`deliver_outbox` opens one per run. A long-running caller that delivers now and
    then (ingest's urgent leads) keeps one open and passes it to every run: each lead then
    reuses the connection the last one opened, when the CRM kept it alive, instead of
    connecting (and on https, shaking hands) again. One thread at a time uses it; close it
    (or use it as a context manager) when done.
    """

    def __init__(self, url: str, secret: str | Sequence[str], timeout_s: float) -> None:
        keys = check_secrets(secret)
        check_endpoint(url)
        self.url, self._keys, self._timeout_s = url, list(keys), timeout_s
        self._shown = redact_url(url)
        self._deadline = _Deadline()
        # Per-operation timeouts stay as a ceiling; the deadline is what actually binds.
        self._client = httpx.Client(transport=_DeadlineTransport(self._deadline),
                                    timeout=httpx.Timeout(timeout_s), follow_redirects=False,
                                    trust_env=False)

    def __enter__(self) -> OutboxSender:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (a later post would open a new one)."""
        self._client.close()

    def post(self, event_id: str, body: bytes, content_type: str) -> None:
        """Send one webhook; return only when the CRM answered a 2xx in full.

        Raises:
            RejectedError: the CRM answered a 4xx other than 408/429.
            DeliveryError: anything else that is not a 2xx (see the module docstring).
        """
        headers = {"content-type": content_type, "accept-encoding": "identity",
                   **signed_headers(self._keys, event_id, int(time.time()), body)}
        self._deadline.arm(self._timeout_s)
        try:
            with self._client.stream("POST", self.url, content=body,
                                     headers=headers) as response:
                detail = _drain(response.iter_raw())
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise DeliveryError(f"cannot reach {self._shown}: {_reason(exc)}") from exc
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"no complete answer from {self._shown} within the "
                                f"{self._timeout_s:g} s deadline ({_reason(exc)})") from exc
        except httpx.HTTPError as exc:  # reset, cut short, not HTTP, a broken chunk...
            raise DeliveryError(f"broken answer from {self._shown}: {_reason(exc)}") from exc
        finally:
            self._deadline.disarm()
        self._judge(response, detail)

    def _judge(self, response: httpx.Response, detail: str) -> None:
        code = response.status_code
        if 200 <= code < 300:
            return
        head = f"HTTP {code} from {self._shown}"
        if 300 <= code < 400:
            target = redact_url(response.headers.get("location", "(no Location)"))[:200]
            raise DeliveryError(f"{head}: a redirect to {target}, not followed (a POST counts "
                                "only when crm_url itself answers 2xx; set crm_url to the "
                                "final address)")
        if 400 <= code < 500 and code not in _RETRY_STATUSES:
            raise RejectedError(f"{head}: {detail}")
        raise DeliveryError(f"{head}: {detail}")


def _drain(chunks: Iterable[bytes]) -> str:
    """Read an answer to its end (a cut-short one raises); keep its first bytes as text."""
    kept = bytearray()
    for chunk in chunks:
        if len(kept) < _DETAIL_BYTES:
            kept += chunk[:_DETAIL_BYTES - len(kept)]
    return kept.decode(errors="replace")


def _reason(exc: BaseException) -> str:
    """The error's kind and text, short (the text may quote what the server sent)."""
    text = str(exc) or "no detail"
    return f"{type(exc).__name__}: {text[:_DETAIL_BYTES]}"


class _Deadline:
    """When the request in flight must be over, shared by one client's connections.

    Every socket wait of a connection is cut to what is left, and a wait that would start
    after the deadline fails at once. Disarmed (no limit beyond the per-operation timeouts)
    between requests, when the pool only checks or closes idle connections. A client and
    its deadline belong to one thread.
    """

    def __init__(self) -> None:
        self._at: float | None = None

    def arm(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds

    def disarm(self) -> None:
        self._at = None

    def cut(self, timeout: float | None, expired: type[httpcore.TimeoutException]
            ) -> float | None:
        """``timeout`` shortened to the time left; ``expired`` raised when none is left."""
        if self._at is None:
            return timeout
        left = self._at - time.monotonic()
        if left <= 0:
            raise expired("the request's deadline passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose reads, writes and TLS handshake all end by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.cut(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # Piece by piece: a peer that reads slowly could otherwise keep one long write going.
        for start in range(0, len(buffer), _WRITE_PIECE):
            self._inner.write(buffer[start:start + _WRITE_PIECE],
                              self._deadline.cut(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(ssl_context, server_hostname,
                                    self._deadline.cut(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's blocking sockets, each connection bound to the deadline."""

    def __init__(self, deadline: _Deadline) -> None:
        self._inner, self._deadline = httpcore.SyncBackend(), deadline

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port,
                                         self._deadline.cut(timeout, httpcore.ConnectTimeout),
                                         local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@functools.cache
def trust_store() -> ssl.SSLContext:
    """The system's trust store, as before httpx, read once per process: loading it took
    20-80 ms of every delivery run, each urgent lead's included (a long-running sender may
    call this early, so that its first delivery does not pay it either)."""
    return ssl.create_default_context()


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport on a one-connection pool whose sockets obey the deadline.

    httpx 0.28 (pinned) gives no way to choose the network backend, so the pool it builds is
    replaced by one that has it; everything else (request mapping, error mapping, response
    streaming) is httpx's own. The deadline tests fail if a later httpx stops using it.
    """

    def __init__(self, deadline: _Deadline) -> None:
        context = trust_store()
        super().__init__(verify=context, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=context, max_connections=1, max_keepalive_connections=1,
            keepalive_expiry=5.0, network_backend=_DeadlineBackend(deadline))

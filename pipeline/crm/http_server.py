"""JSON webhook endpoints on Starlette and uvicorn, guarded for a port anyone can reach.

The reference CRM and the inbound status endpoint are both "verify, store, answer fast"
services; this is the part they share. Starlette routes each ``(method, path)`` to a handler
``(path, headers, body) -> (status, JSON-able answer)`` that runs in a worker thread, so a
handler may block (an fsync, an outbound POST). uvicorn speaks HTTP/1.1 (h11) on an event
loop of its own, in a background thread; :class:`JsonHttpServer` starts and stops it.

Anyone who can reach the port can send anything before a signature is checked, so a request
is bounded before its body is read:

* **connections**: with more than ``max_connections`` open, a request is answered 503;
* **framing**: several different ``Content-Length`` headers, a length that is not a number
  or is negative, a length together with ``Transfer-Encoding``, or an encoding other than
  chunked: 400; a POST with neither header: 411; an announced length over ``max_body``: 413
  without reading a byte of the body; a chunked body is refused (413) as soon as it passes
  ``max_body``;
* **time**: the whole request, head and body, must arrive within ``request_timeout_s`` of
  its first byte (of the connection, for its first request). A client that trickles its body
  byte by byte is answered 408 at that deadline, however steadily it sends; one that trickles
  its head gets the same 408 from the connection itself, before any handler runs.

h11 refuses some malformed framing itself, before the application sees the request; the
connection then words the refusal the same way. Every answer, refusals included, is a JSON
document (``{"error": ...}`` for refusals), and a refusal closes the connection. The unread
rest of a body may still be arriving then, and closing a socket with unread input makes the
kernel send a reset that can destroy the answer before the client reads it; so the server
stops writing and discards what still arrives for a moment (at most ``LINGER_S`` and
``LINGER_BYTES``), then closes.

Stopping is quick: the listening socket closes, idle connections close, a request still
waiting for its body is answered 503 at once, and handlers already running are given
``SHUTDOWN_GRACE_S`` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import re
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Final, Self

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from pipeline.errors import TerminalPipelineError

log = logging.getLogger(__name__)

MAX_BODY: Final = 1_000_000
"""Default limit on a request body, in bytes (leads and status updates are a few KB)."""
REQUEST_TIMEOUT_S: Final = 10.0
"""Default time a client has to send a whole request, head and body."""
MAX_CONNECTIONS: Final = 64
"""Default number of connections served at once; a request on one more is answered 503."""
MAX_HEAD_BYTES: Final = 16 * 1024
"""Largest request head (request line and headers) h11 buffers; beyond it: 431."""
KEEP_ALIVE_S: Final = 5
"""How long an idle keep-alive connection stays open between requests."""
SHUTDOWN_GRACE_S: Final = 5
"""On stop, how long running handlers may take before their tasks are cancelled."""
LINGER_S: Final = 1.0
LINGER_BYTES: Final = 4 * 2**20
"""After a refusal, discard at most this much of the unread body, for at most LINGER_S."""
BACKLOG: Final = 128

Handler = Callable[[str, dict[str, str], bytes], tuple[int, Any]]
"""(path, headers with lower-case names, body) -> (HTTP status, JSON-able answer)."""

_DEADLINE_EXTENSION: Final = "fleetcare.deadline"
"""ASGI scope extension the connection fills in: {"at": the request's deadline, loop time}."""
_HEAD_END: Final = re.compile(rb"\r?\n\r?\n")
_DIGITS: Final = re.compile(r"[0-9]+")
_NEGATIVE: Final = re.compile(r"-[0-9]+")
_QUOTED: Final = re.compile("b?'[^']*'|b?\"[^\"]*\"")


class HttpServerError(TerminalPipelineError):
    """The server cannot listen on its address, cannot be (re)started, or has a bad limit."""


class BodyRefused(TerminalPipelineError):
    """A request body not read: ``status`` is the HTTP status to answer, ``reason`` why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def framing_problem(headers: Iterable[tuple[str, str]]) -> str | None:
    """What is wrong with the way a request announces its body, or None when nothing is.

    ``headers`` are (name, value) pairs in any case, repeats included. Ambiguous framing is
    refused rather than resolved: a proxy in front of us may have resolved it differently
    (request smuggling).
    """
    lengths: list[str] = []
    encodings: list[str] = []
    for name, value in headers:
        key = name.strip().lower()
        if key == "content-length":
            lengths.append(value.strip())
        elif key == "transfer-encoding":
            encodings.append(value.strip().lower())
    if len(set(lengths)) > 1:
        return "several different Content-Length headers"
    if lengths and encodings:
        return "send Content-Length or Transfer-Encoding, not both"
    if encodings and encodings != ["chunked"]:
        return f"unsupported Transfer-Encoding {', '.join(encodings)!r}"
    if lengths and _NEGATIVE.fullmatch(lengths[0]):
        return f"Content-Length {lengths[0]} is negative"
    if lengths and not _DIGITS.fullmatch(lengths[0]):
        return f"Content-Length {lengths[0]!r} is not a number"
    return None


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused before it is read when its framing or announced size is bad.

    Raises:
        BodyRefused: 400 bad framing (see :func:`framing_problem`) or a client that hung up
            mid-body, 411 no length given, 413 over ``limit`` (announced, or reached by a
            chunked body, which is not read further).
    """
    problem = framing_problem(request.headers.items())
    if problem is not None:
        raise BodyRefused(400, problem)
    if "transfer-encoding" not in request.headers:
        length = request.headers.get("content-length")
        if length is None:
            raise BodyRefused(411, "a POST needs a Content-Length (or chunked encoding)")
        if int(length) > limit:
            raise BodyRefused(413, f"body of {int(length)} bytes is over the {limit}-byte limit")
    body = bytearray()
    try:
        async with contextlib.aclosing(request.stream()) as chunks:
            async for chunk in chunks:
                body += chunk
                if len(body) > limit:
                    raise BodyRefused(413, f"chunked body passed the {limit}-byte limit")
    except ClientDisconnect:
        raise BodyRefused(400, f"the client hung up after {len(body)} bytes of body") from None
    return bytes(body)


class JsonHttpServer:
    """Serve ``routes`` on ``host:port`` from a background thread; see the module docstring.

    The socket is bound when the server is made, so :attr:`base_url` is known (port 0: a
    free port the OS chose) before :meth:`start`, which returns once connections are served.
    Use it as a context manager, or call :meth:`start` and :meth:`stop`; a stopped server
    cannot be started again.

    Args:
        routes: {(method, path): handler}; ``method`` is ``GET`` or ``POST``, ``path`` a
            Starlette path (``/leads/{lead_id}/status``). Other paths get 404, other methods
            405, both as JSON.
        host, port: where to listen.
        max_body: the largest request body read, in bytes; larger ones get 413.
        request_timeout_s: time a client has to send a whole request; later: 408.
        max_connections: connections served at once; a request on one more gets 503.

    Raises:
        HttpServerError: a limit is not positive, or the address cannot be bound.
    """

    def __init__(self, routes: Mapping[tuple[str, str], Handler], *, host: str = "127.0.0.1",
                 port: int = 0, max_body: int = MAX_BODY,
                 request_timeout_s: float = REQUEST_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        for name, value in (("max_body", max_body), ("request_timeout_s", request_timeout_s),
                            ("max_connections", max_connections)):
            if value <= 0:
                raise HttpServerError(f"{name} must be positive, not {value}")
        self.max_body = max_body
        self.request_timeout_s = request_timeout_s
        self.max_connections = max_connections
        self._refused = 0
        self._refused_lock = threading.Lock()
        self._stopping = False  # these two belong to the server's event loop thread
        self._deadlines: set[asyncio.Timeout] = set()
        self._socket = _listen(host, port)
        bound_host, bound_port = self._socket.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._base_url = f"http://{shown}:{bound_port}"
        self._app = Starlette(
            routes=[Route(path, self._endpoint(method, handler), methods=[method])
                    for (method, path), handler in routes.items()],
            exception_handlers={HTTPException: _http_error, Exception: _server_error})
        self._app.router.redirect_slashes = False  # a POST is not redirected
        config = uvicorn.Config(
            self._guard, host=host, port=bound_port, loop="asyncio",
            http=_protocol_class(_Guards(request_timeout_s, self._count_refusal)),
            ws="none", lifespan="off", interface="asgi3", log_config=None,
            proxy_headers=False, server_header=False, timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES, backlog=BACKLOG)
        self._server = _Server(config, self._on_shutdown)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` actually bound."""
        return self._base_url

    @property
    def refused_count(self) -> int:
        """Requests refused before their body was read (framing, size, time, capacity)."""
        with self._refused_lock:
            return self._refused

    def _count_refusal(self) -> None:
        with self._refused_lock:
            self._refused += 1

    def start(self) -> Self:
        """Serve in a background thread; returns self once the port is served.

        Raises:
            HttpServerError: the server was started before, or its event loop failed.
        """
        if self._thread is not None or self._socket.fileno() == -1:
            raise HttpServerError(f"the server on {self.base_url} was started before; "
                                  "make a new one")
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name=f"http-{self.base_url}")
        self._thread.start()
        self._server.serving.wait()
        if self._failure is not None:
            self.stop()
            raise HttpServerError(f"cannot serve on {self.base_url}: "
                                  f"{self._failure!r}") from self._failure
        return self

    def stop(self) -> None:
        """Stop serving and free the port (see the module docstring for what stops how)."""
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join()
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _serve(self) -> None:
        """The server thread: uvicorn's event loop, until :meth:`stop`."""
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # uvicorn exits start-up failures with SystemExit
            self._failure = exc
            log.error("http server on %s failed: %r", self.base_url, exc)
        finally:
            self._server.serving.set()  # never leave start() waiting

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI application: the connection cap first, then Starlette's routes."""
        if (scope["type"] == "http"
                and len(self._server.server_state.connections) > self.max_connections):
            reason = f"more than {self.max_connections} connections at once; retry shortly"
            response = self._refuse(scope, 503, reason, {"retry-after": "1"})
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)

    def _endpoint(self, method: str, handler: Handler) -> Callable[[Request],
                                                                    Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            body = b""
            if method == "POST":
                try:
                    body = await self._body_in_time(request)
                except BodyRefused as refused:
                    return self._refuse(request.scope, refused.status, refused.reason)
            path = request.url.path
            status, doc = await run_in_threadpool(handler, path, dict(request.headers.items()),
                                                  body)
            log.debug("http %s: %s %s -> %d", _client(request.scope), method, path, status)
            return _json(status, doc)

        return endpoint

    async def _body_in_time(self, request: Request) -> bytes:
        """:func:`read_body`, within the request's deadline (408) unless the server stops (503)."""
        loop = asyncio.get_running_loop()
        deadline = request.scope.get("extensions", {}).get(_DEADLINE_EXTENSION, {}).get("at")
        at = float(deadline) if deadline is not None else loop.time() + self.request_timeout_s
        try:
            async with asyncio.timeout_at(at) as timeout:
                self._deadlines.add(timeout)
                try:
                    return await read_body(request, self.max_body)
                finally:
                    self._deadlines.discard(timeout)
        except TimeoutError:
            if self._stopping:
                raise BodyRefused(503, "the server is stopping; send it again") from None
            raise BodyRefused(408, f"no body within the {self.request_timeout_s:g} s "
                                   "request deadline") from None

    def _refuse(self, scope: Scope, status: int, reason: str,
                headers: Mapping[str, str] | None = None) -> Response:
        self._count_refusal()
        log.warning("http %s: refused %s %s (%d): %s", _client(scope), scope.get("method"),
                    scope.get("path"), status, reason)
        return _json(status, {"error": reason}, close=True, headers=headers)

    def _on_shutdown(self) -> None:
        """On the loop, as uvicorn starts to stop: a request still reading its body ends now."""
        self._stopping = True
        now = asyncio.get_running_loop().time()
        for timeout in list(self._deadlines):
            timeout.reschedule(now)


def _json(status: int, doc: Any, *, close: bool = False,
          headers: Mapping[str, str] | None = None) -> Response:
    """``doc`` as the JSON answer (plain ``json.dumps``: the stored leads come back as sent)."""
    extra = dict(headers or {})
    if close:
        extra["connection"] = "close"
    return Response(json.dumps(doc), status_code=status, media_type="application/json",
                    headers=extra)


def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such path, wrong method) as JSON."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    headers = exc.headers if isinstance(exc, HTTPException) else None
    if status == 404:
        what = f"no such endpoint {request.method} {request.url.path}"
    elif status == 405:
        what = f"{request.method} is not allowed on {request.url.path}"
    else:
        what = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return _json(status, {"error": what}, headers=headers)


def _server_error(request: Request, exc: Exception) -> Response:
    """A handler that raised: 500 as JSON (uvicorn logs the traceback)."""
    return _json(500, {"error": "internal error; the server's log has the details"},
                 close=True)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        raise HttpServerError(f"cannot listen on {host}:{port}: "
                              f"{exc.strerror or exc}") from None


class _Server(uvicorn.Server):
    """uvicorn's server, saying when it serves and letting requests know when it stops."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self.serving = threading.Event()
        self._on_shutdown = on_shutdown

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.serving.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_shutdown()
        await super().shutdown(sockets=sockets)


@dataclass(frozen=True, slots=True)
class _Guards:
    """What a connection needs from its server: the deadline, and a refusal counter."""

    request_timeout_s: float
    count_refusal: Callable[[], None]


def _protocol_class(guards: _Guards) -> type[_GuardedProtocol]:
    """The connection class uvicorn instantiates, bound to one server's guards."""

    class BoundProtocol(_GuardedProtocol):
        pass

    BoundProtocol.guards = guards
    return BoundProtocol


class _RecordingConnection(h11.Connection):
    """h11's connection, remembering why it refused a request (uvicorn keeps only that it did)."""

    last_error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.last_error = exc
            raise


class _GuardedProtocol(H11Protocol):
    """uvicorn's h11 connection with the request deadline, JSON refusals and lingering close.

    Deadline: armed when a request's first byte arrives (for a connection's first request,
    when it opens). While the head is incomplete the connection enforces it (raw 408); once
    the head is parsed it hands the deadline to the application in the scope, which keeps to
    it while reading the body. Closing goes through :meth:`_close`, which lingers when the
    client may still be sending (see the module docstring).
    """

    guards: ClassVar[_Guards]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._h11 = _RecordingConnection(h11.SERVER, MAX_HEAD_BYTES)
        self.conn = self._h11
        self.access_log = False  # requests are logged by the application, at DEBUG
        self._wire: _Wire | None = None
        self._head = bytearray()  # the current request's head as received, to word refusals
        self._deadline_at: float | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._linger_left: int | None = None  # not None: lingering, this many bytes to discard
        self._linger: asyncio.TimerHandle | None = None
        self._must_linger = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        super().connection_made(transport)
        self._wire = _Wire(transport, self._close, lambda: self._linger_left is not None)
        self.transport = self._wire
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._linger_left is not None:
            self._linger_left -= len(data)
            if self._linger_left <= 0:
                self._close_now()
            return
        if self.conn.their_state is h11.IDLE:  # these bytes start or continue a request head
            if self._deadline_at is None:
                self._arm_deadline()
            if len(self._head) < 2 * MAX_HEAD_BYTES:
                self._head += data
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._head.clear()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not None and self.cycle is not before:  # a head was just parsed
            if self._deadline_at is None:  # a pipelined request: its clock starts now
                self._arm_deadline()
            assert self._deadline_at is not None
            extension: dict[object, object] = {"at": self._deadline_at}
            self.cycle.scope.setdefault("extensions", {})[_DEADLINE_EXTENSION] = extension
            self._cancel_deadline()  # the application keeps to it from here

    def shutdown(self) -> None:
        if self._linger_left is None:  # a lingering connection ends by itself, soon
            super().shutdown()

    def on_response_complete(self) -> None:
        self._cancel_deadline()
        self._deadline_at = None
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            # answered without reading the body (404, 405): do not wait for the rest of it
            self.server_state.total_requests += 1
            self.transport.close()
            return
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """h11 refused the request: answer in JSON, with our wording where we have one."""
        self._refuse_raw(*self._explain_refusal())

    def _explain_refusal(self) -> tuple[int, str]:
        head = bytes(self._head)
        end = _HEAD_END.search(head)
        if end is not None:
            lines = head[:end.start()].split(b"\n")[1:]  # the header lines
            pairs = [(n.decode("latin-1"), v.decode("latin-1"))
                     for n, sep, v in (line.partition(b":") for line in lines) if sep]
            problem = framing_problem(pairs)
            if problem is not None:
                return 400, problem
        error = self._h11.last_error
        if error is None:
            return 400, "malformed HTTP request"
        # h11 quotes the bad bytes in some messages; they are the sender's, not for the log
        return error.error_status_hint, f"malformed HTTP request: {_QUOTED.sub('…', str(error))}"

    def _refuse_raw(self, status: int, reason: str) -> None:
        """Answer ``status`` in JSON and close, before (or instead of) h11's own response."""
        self.guards.count_refusal()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        log.warning("http %s: refused a request (%d): %s", client, status, reason)
        body = json.dumps({"error": reason}).encode()
        head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
                "content-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
        self._must_linger = True
        self.transport.write(head.encode("ascii") + body)
        self.transport.close()

    def _arm_deadline(self) -> None:
        self._cancel_deadline()
        self._deadline_at = self.loop.time() + self.guards.request_timeout_s
        self._deadline = self.loop.call_at(self._deadline_at, self._deadline_passed)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # the application has the request and keeps to the deadline itself
        if not self.transport.is_closing():
            self._refuse_raw(408, "no complete request head within the "
                                  f"{self.guards.request_timeout_s:g} s request deadline")

    def _close(self) -> None:
        """Close the connection, lingering when the client may still be sending."""
        assert self._wire is not None
        if self._linger_left is not None or self._wire.real.is_closing():
            return
        if not (self._must_linger or self.conn.their_state is h11.SEND_BODY):
            self._wire.real.close()
            return
        self._linger_left = LINGER_BYTES
        self.flow.resume_reading()
        if self._wire.real.can_write_eof():
            self._wire.real.write_eof()  # the answer is flushed first, then a FIN
        self._linger = self.loop.call_later(LINGER_S, self._close_now)

    def _close_now(self) -> None:
        assert self._wire is not None
        if self._linger is not None:
            self._linger.cancel()
        self._wire.real.close()


class _Wire(asyncio.Transport):
    """A connection's transport as uvicorn sees it: the same, except that closing goes
    through the connection, which may linger first (uvicorn closes transports directly)."""

    def __init__(self, real: asyncio.Transport, close: Callable[[], None],
                 lingering: Callable[[], bool]) -> None:
        super().__init__()
        self.real = real
        self._close = close
        self._lingering = lingering

    def close(self) -> None:
        self._close()

    def is_closing(self) -> bool:
        return self._lingering() or self.real.is_closing()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.real.write(data)

    def write_eof(self) -> None:
        self.real.write_eof()

    def can_write_eof(self) -> bool:
        return self.real.can_write_eof()

    def abort(self) -> None:
        self.real.abort()

    def pause_reading(self) -> None:
        self.real.pause_reading()

    def resume_reading(self) -> None:
        self.real.resume_reading()

    def is_reading(self) -> bool:
        return self.real.is_reading()

    def get_write_buffer_size(self) -> int:
        return self.real.get_write_buffer_size()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.real.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.real.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.real.get_protocol()

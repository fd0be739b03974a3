"""A tiny threaded JSON-over-HTTP server in the background, for our webhook endpoints.

The reference CRM and the inbound status endpoint are both "verify, store, answer fast"
services; this is the part they share: routing by method and path prefix, a body size
limit, JSON answers, start/stop as a context manager, a port chosen by the OS when 0.

Anyone who can reach the port can send anything, before any signature is checked, so the
body is bounded before it is read: a ``Content-Length`` over ``max_body`` is answered 413
without reading a byte of the body, a chunked body is read chunk by chunk and refused as soon
as it passes the limit, a POST with neither header is answered 411, and a client that stops
sending mid-body is cut off after ``read_timeout_s`` (408) instead of holding a thread.
Refusals close the connection, since the unread rest of the body is still on it.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Self

from pipeline.errors import TerminalPipelineError

log = logging.getLogger(__name__)

MAX_BODY: Final = 1_000_000
"""Default limit on a request body, in bytes (leads and status updates are a few KB)."""
READ_TIMEOUT_S: Final = 10.0
LINGER_S: Final = 1.0
LINGER_BYTES: Final = 4 * 2**20
"""After a refusal, discard at most this much of the unread body, for at most LINGER_S."""
MAX_TRAILERS: Final = 32
Handler = Callable[[str, dict[str, str], bytes], tuple[int, Any]]
"""(path, headers, body) -> (HTTP status, JSON-able answer)."""


class BodyRefused(TerminalPipelineError):
    """A request body not read: ``status`` is the HTTP status to answer, ``reason`` why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class JsonHttpServer:
    """Serve ``routes`` ({(method, path prefix): handler}) on ``host:port`` in a thread.

    Args:
        routes: {(method, path prefix): handler}.
        host, port: where to listen (port 0: any free port).
        max_body: the largest request body read, in bytes; larger ones get 413.
        read_timeout_s: how long a silent client may hold a connection.
    """

    def __init__(self, routes: dict[tuple[str, str], Handler], *, host: str = "127.0.0.1",
                 port: int = 0, max_body: int = MAX_BODY,
                 read_timeout_s: float = READ_TIMEOUT_S) -> None:
        if max_body <= 0:
            raise ValueError(f"max_body must be positive, not {max_body}")
        self._routes = routes
        self.max_body = max_body
        self._refused = 0
        self._refused_lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port),
                                           _request_handler(self, read_timeout_s))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def refused_count(self) -> int:
        """Requests whose body was refused unread (too large, no length, too slow)."""
        with self._refused_lock:
            return self._refused

    def count_refusal(self) -> None:
        """Count one refused body (called by the request handler)."""
        with self._refused_lock:
            self._refused += 1

    @property
    def base_url(self) -> str:
        """``http://host:port`` actually bound."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def dispatch(self, method: str, path: str, headers: dict[str, str],
                 body: bytes) -> tuple[int, Any]:
        """Route one request; 404 when nothing matches (longest prefix wins)."""
        matches = [p for (m, p) in self._routes if m == method and path.startswith(p)]
        if not matches:
            return 404, {"error": f"no such endpoint {method} {path}"}
        return self._routes[(method, max(matches, key=len))](path, headers, body)

    def start(self) -> Self:
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"http-{self.base_url}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def read_body(headers: Any, stream: Any, limit: int) -> bytes:
    """The request body from ``stream``, never reading more than ``limit`` bytes of it.

    ``headers`` is the request's ``http.client.HTTPMessage``; ``stream`` its input file.

    Raises:
        BodyRefused: 413 over the limit, 411 no length given, 400 a malformed length or
            chunk, or a body shorter than announced (the client hung up).
    """
    lengths = set(headers.get_all("content-length") or ())
    if len(lengths) > 1:  # which one would a proxy in front of us have believed?
        raise BodyRefused(400, "several different Content-Length headers")
    length_header = headers.get("content-length")
    encoding = (headers.get("transfer-encoding") or "").strip().lower()
    if encoding:
        if length_header is not None:  # both: the classic request-smuggling ambiguity
            raise BodyRefused(400, "send Content-Length or Transfer-Encoding, not both")
        if encoding != "chunked":
            raise BodyRefused(400, f"unsupported Transfer-Encoding {encoding!r}")
        return _read_chunked(stream, limit)
    if length_header is None:
        raise BodyRefused(411, "a POST needs a Content-Length (or chunked encoding)")
    try:
        length = int(length_header)
    except ValueError:
        raise BodyRefused(400, f"Content-Length {length_header!r} is not a number") from None
    if length < 0:
        raise BodyRefused(400, f"Content-Length {length} is negative")
    if length > limit:
        raise BodyRefused(413, f"body of {length} bytes is over the {limit}-byte limit")
    body: bytes = stream.read(length)
    if len(body) < length:
        raise BodyRefused(400, f"body ended after {len(body)} of {length} bytes")
    return body


def _read_chunked(stream: Any, limit: int) -> bytes:
    """Decode a chunked body, refusing it as soon as it passes ``limit``."""
    parts: list[bytes] = []
    total = 0
    while True:
        line = stream.readline(1024)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BodyRefused(400, "malformed chunk size in a chunked body") from None
        if size < 0:
            raise BodyRefused(400, "negative chunk size in a chunked body")
        if size == 0:
            for _ in range(MAX_TRAILERS):  # trailers: not used, read to the blank line
                if stream.readline(1024) in (b"\r\n", b"\n", b""):
                    return b"".join(parts)
            raise BodyRefused(400, f"more than {MAX_TRAILERS} trailer lines")
        total += size
        if total > limit:
            raise BodyRefused(413, f"chunked body passed the {limit}-byte limit")
        chunk = stream.read(size)
        if len(chunk) < size or stream.read(2) not in (b"\r\n",):
            raise BodyRefused(400, "chunked body ended early or is malformed")
        parts.append(chunk)


def _request_handler(server: JsonHttpServer,
                     read_timeout_s: float) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        timeout = read_timeout_s  # socket timeout: a silent client cannot hold the thread

        def do_POST(self) -> None:
            try:
                body = read_body(self.headers, self.rfile, server.max_body)
            except BodyRefused as refused:
                return self._refuse(refused.status, refused.reason)
            except TimeoutError:
                return self._refuse(408, f"no body within {read_timeout_s:g} s")
            self._answer(*server.dispatch("POST", self.path, dict(self.headers.items()), body))

        def _refuse(self, status: int, reason: str) -> None:
            server.count_refusal()
            log.warning("http %s: refused POST %s (%d): %s", self.address_string(),
                        self.path, status, reason)
            self.close_connection = True
            self._answer(status, {"error": reason}, close=True)
            self._linger()

        def _linger(self) -> None:
            """Let the client read the refusal before the connection closes.

            Closing a socket with unread input makes the kernel send a reset, and a client
            still sending its body then loses the answer too. So: flush, stop writing, and
            discard what still arrives for a moment (bounded in bytes and time).
            """
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_WR)
                deadline, left = time.monotonic() + LINGER_S, LINGER_BYTES
                while left > 0 and (wait := deadline - time.monotonic()) > 0:
                    self.connection.settimeout(wait)
                    data = self.connection.recv(65536)
                    if not data:
                        break
                    left -= len(data)
            except OSError:
                pass  # the client is gone or slow: either way we are done with it

        def do_GET(self) -> None:
            self._answer(*server.dispatch("GET", self.path, dict(self.headers.items()), b""))

        def _answer(self, status: int, doc: Any, close: bool = False) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            if close:
                self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http %s: " + format, self.address_string(), *args)

    return RequestHandler


_NAMES_KEYS_ONLY: Final = frozenset({"required", "additionalProperties", "dependentRequired"})
_PHRASES: Final = {"enum": "must be one of {}", "type": "must be of type {}",
                   "const": "must be {}", "pattern": "must match {}", "format": "must be a {}",
                   "minimum": "must be at least {}", "maximum": "must be at most {}",
                   "minLength": "must be at least {} characters",
                   "maxLength": "must be at most {} characters"}


def schema_problems(errors: Iterable[Any], limit: int = 20) -> str:
    """JSON-schema errors as ``path: what is wrong``, without quoting the offending values.

    jsonschema's own messages quote the value (``'Ada Lovelace' is not of type 'integer'``);
    these bodies carry customer data, and the answer is logged and returned to the sender,
    so only the path and the rule broken are shown (the keys of ``required`` and
    ``additionalProperties`` are the schema's or the sender's field names, not data).
    """
    ordered = sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])
    parts = []
    for error in ordered[:limit]:
        where = "/".join(map(str, error.absolute_path)) or "(body)"
        rule = json.dumps(error.validator_value, default=str)
        if error.validator in _NAMES_KEYS_ONLY:
            what = error.message
        elif error.validator in _PHRASES:
            what = _PHRASES[error.validator].format(rule)
        else:
            what = f"breaks {error.validator!s} {rule}"
        parts.append(f"{where}: {what}")
    return "; ".join(parts)

"""A tiny threaded JSON-over-HTTP server in the background, for our webhook endpoints.

The reference CRM and the inbound status endpoint are both "verify, store, answer fast"
services; this is the part they share: routing by method and path prefix, a body size
limit, JSON answers, start/stop as a context manager, a port chosen by the OS when 0.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Self

log = logging.getLogger(__name__)

MAX_BODY: Final = 1_000_000
Handler = Callable[[str, dict[str, str], bytes], tuple[int, Any]]
"""(path, headers, body) -> (HTTP status, JSON-able answer)."""


class JsonHttpServer:
    """Serve ``routes`` ({(method, path prefix): handler}) on ``host:port`` in a thread."""

    def __init__(self, routes: dict[tuple[str, str], Handler], *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self._routes = routes
        self._server = ThreadingHTTPServer((host, port), _request_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

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


def _request_handler(server: JsonHttpServer) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                return self._answer(413, {"error": f"body over {MAX_BODY} bytes"})
            self._answer(*server.dispatch("POST", self.path, dict(self.headers.items()),
                                          self.rfile.read(length)))

        def do_GET(self) -> None:
            self._answer(*server.dispatch("GET", self.path, dict(self.headers.items()), b""))

        def _answer(self, status: int, doc: Any) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http %s: " + format, self.address_string(), *args)

    return RequestHandler

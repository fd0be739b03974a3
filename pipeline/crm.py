"""A small but real reference CRM: an HTTP endpoint that receives signed lead webhooks.

It is what tests and the demo deliver to, and a model for a dealer integration: verify the
Standard Webhooks signature and timestamp before trusting a byte, store each ``webhook-id``
once (a redelivery is answered 200 and stored nothing), answer fast.

Endpoints: ``POST /leads`` (a lead document), ``GET /leads`` (every stored lead as JSON).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final

from pipeline.lifecycle import run_until_terminated
from pipeline.outbox import SignatureError, verify

log = logging.getLogger(__name__)

PATH: Final = "/leads"
MAX_BODY: Final = 1_000_000


class CrmReceiver:
    """A threaded HTTP server in the background that stores verified leads in memory.

    Args:
        secret: the shared ``whsec_`` signing secret.
        host: interface to listen on.
        port: TCP port (0: any free port; read it back from :attr:`url`).
    """

    def __init__(self, secret: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._secret = secret
        self._lock = threading.Lock()
        self._leads: dict[str, dict[str, Any]] = {}
        self._received = 0
        self._rejected = 0
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The POST endpoint, e.g. ``http://127.0.0.1:41234/leads``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{PATH}"

    @property
    def received_count(self) -> int:
        """Verified POSTs received, redeliveries included."""
        with self._lock:
            return self._received

    @property
    def rejected_count(self) -> int:
        """POSTs refused (bad signature, stale timestamp, malformed body)."""
        with self._lock:
            return self._rejected

    def leads(self) -> list[dict[str, Any]]:
        """Stored lead documents, one per distinct webhook-id, in arrival order."""
        with self._lock:
            return list(self._leads.values())

    def start(self) -> CrmReceiver:
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="crm",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> CrmReceiver:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def accept(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Verify and store one delivery; return (HTTP status, JSON answer)."""
        try:
            msg_id = verify(self._secret, headers, body, time.time())
            doc = json.loads(body)
        except SignatureError as exc:
            return self._reject(exc.status, str(exc))
        except ValueError as exc:
            return self._reject(400, f"body is not JSON: {exc}")
        with self._lock:
            self._received += 1
            duplicate = msg_id in self._leads
            self._leads.setdefault(msg_id, doc)
        return 200, {"status": "duplicate" if duplicate else "stored", "webhook_id": msg_id}

    def _reject(self, status: int, reason: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self._rejected += 1
        log.warning("CRM rejected a delivery (%d): %s", status, reason)
        return status, {"error": reason}


def _handler_for(receiver: CrmReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != PATH:
                return self._answer(404, {"error": f"no such endpoint {self.path}"})
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                return self._answer(413, {"error": "body too large"})
            body = self.rfile.read(length)
            status, answer = receiver.accept(dict(self.headers.items()), body)
            self._answer(status, answer)

        def do_GET(self) -> None:
            if self.path != PATH:
                return self._answer(404, {"error": f"no such endpoint {self.path}"})
            self._answer(200, receiver.leads())

        def _answer(self, status: int, doc: Any) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("crm %s: " + format, self.address_string(), *args)

    return Handler


def serve_forever(secret: str, port: int, host: str = "127.0.0.1") -> None:
    """Run a receiver in the foreground until interrupted (for the CLI)."""
    receiver = CrmReceiver(secret, host=host, port=port)
    log.info("reference CRM listening on %s", receiver.url)
    run_until_terminated(receiver)

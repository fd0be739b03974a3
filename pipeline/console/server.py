"""Serving the console app with uvicorn in a thread, as a context manager.

The ``fleetcare`` services stop the same way (:func:`pipeline.foreground.run_until_terminated`):
SIGINT or SIGTERM ends the block, the server finishes the requests it is answering, and the
command exits 0. uvicorn run on the main thread would take the signals itself and re-raise
them after shutting down, so the command would die by SIGTERM instead of exiting.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Final, Self

import uvicorn
from starlette.types import ASGIApp

from pipeline.errors import ConsoleError

SHUTDOWN_GRACE_S: Final = 5
"""How long a stopping console lets requests in progress finish."""


class ConsoleServer:
    """uvicorn serving ``app`` on an already listening ``sock`` while the block runs."""

    def __init__(self, app: ASGIApp, sock: socket.socket) -> None:
        config = uvicorn.Config(app, log_config=None, lifespan="off", server_header=False,
                                access_log=False, ws="none",
                                timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
        self._server = uvicorn.Server(config)
        self._socket = sock
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="console", daemon=True)

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # uvicorn ends start-up failures with SystemExit
            self._failure = exc

    def __enter__(self) -> Self:
        self._thread.start()
        while not self._server.started and self._thread.is_alive():
            self._thread.join(0.05)
        if not self._server.started:
            raise ConsoleError(f"the console could not start serving: {self._failure!r}")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._server.should_exit = True
        self._thread.join()

"""systemd's notify protocol: tell the service manager we are ready, and feed its watchdog.

With ``Type=notify`` systemd waits for ``READY=1`` before it counts the agent as started;
with ``WatchdogSec`` it restarts the agent when ``WATCHDOG=1`` stops arriving. The watchdog
is fed only while the agent's read loop makes progress, so a hung loop gets the agent
restarted instead of being kept alive by a thread that merely still runs. Without a notify
socket (not started by systemd) this does nothing.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def notify(socket_path: str | None, state: str) -> bool:
    """Send one notification (``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``…); False if none."""
    if not socket_path:
        return False
    address = "\0" + socket_path[1:] if socket_path.startswith("@") else socket_path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", socket_path, exc)
        return False
    return True


class Watchdog:
    """Sends READY=1 on start and WATCHDOG=1 at half the watchdog period while progressing.

    Args:
        socket_path: ``$NOTIFY_SOCKET``, or None.
        watchdog_usec: ``$WATCHDOG_USEC``, or None (no watchdog).
        progress: a counter that grows while the agent works.
    """

    def __init__(self, socket_path: str | None, watchdog_usec: int | None,
                 progress: Callable[[], int]) -> None:
        self._socket = socket_path
        self._period = watchdog_usec / 2e6 if watchdog_usec else None
        self._progress = progress
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pings = 0
        self._seen = progress()

    def start(self) -> None:
        """Report readiness and start feeding the watchdog."""
        notify(self._socket, "READY=1")
        if self._socket and self._period:
            self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Tell systemd we are stopping and stop feeding."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        notify(self._socket, "STOPPING=1")

    def tick(self) -> bool:
        """Feed the watchdog if the agent progressed since the last tick; True if fed."""
        now = self._progress()
        fed = now != self._seen and notify(self._socket, "WATCHDOG=1")
        self._seen = now
        if fed:
            self.pings += 1
        return fed

    def _run(self) -> None:
        assert self._period is not None
        while not self._stop.wait(self._period):
            self.tick()

"""Running a long-lived service in the foreground until the operator stops it."""

from __future__ import annotations

import signal
import threading
from contextlib import AbstractContextManager
from types import FrameType
from typing import Any


def run_until_terminated(service: AbstractContextManager[Any]) -> None:
    """Enter ``service``, block until SIGINT or SIGTERM, then leave it cleanly.

    The previous signal handlers are restored afterwards, so callers (and tests) are left as
    they were. Must be called from the main thread, as Python requires for signal handlers.
    """
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with service:
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

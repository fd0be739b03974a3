"""Waiting for an outcome in tests: poll a condition until it holds or a generous time passes.

The timeout is a bound on how long a broken run may hang, not a speed the code must reach:
tests assert what happened, and a shared, loaded CI machine may take many times longer than
a quiet laptop.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, step: float = 0.05) -> bool:
    """Poll ``condition`` every ``step`` seconds; True once it holds, else its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()

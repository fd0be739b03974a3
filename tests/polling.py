"""Waiting for an outcome in tests: poll a condition until it holds or a generous time passes.

The timeout is a bound on how long a broken run may hang, not a speed the code must reach:
tests assert what happened, and a shared, loaded CI machine may take many times longer than
a quiet laptop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _first_truthy(predicate: Callable[[], T], timeout: float, step: float) -> T:
    """``predicate()`` every ``step`` seconds: its first truthy answer, else its last."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(step)
    return predicate()


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, step: float = 0.05) -> bool:
    """Poll ``condition`` every ``step`` seconds; True once it holds, else its last answer."""
    return _first_truthy(condition, timeout, step)


def poll(what: str, predicate: Callable[[], T], timeout: float = 120.0, step: float = 0.1) -> T:
    """``predicate()``'s first truthy value, polled until ``timeout``; fails naming ``what``.

    For a wait whose outcome the test uses (a pid, a line), and whose failure should say what
    never came rather than ``assert False``.
    """
    value = _first_truthy(predicate, timeout, step)
    if not value:
        raise AssertionError(f"no {what} within {timeout:g} s")
    return value

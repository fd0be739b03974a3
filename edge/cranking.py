"""Cranking detection: the 12 V battery's rest voltage and its dip while the starter turns.

How deep the 12 V battery sags while cranking, compared with its rest voltage just before, is
a known indicator of its health (internal resistance grows as it ages). The detector watches
two decoded signals, the 12 V voltage and the engine speed, in bus time:

- **rest**: the engine is stopped (speed below ``crank_rpm``); the rest voltage is the last
  voltage seen at least ``pre_s`` before the crank began (the starter's inrush can pull the
  voltage down before the engine speed registers).
- **cranking**: the speed rises to ``crank_rpm`` or more; the minimum voltage from ``pre_s``
  before that moment on is tracked.
- **running**: the speed reaches ``running_rpm``: one crank event (``started`` = 1). A crank
  that falls back to rest without reaching it is a failed start (``started`` = 0).

A key-on with the engine off draws current but never turns the engine, so it is no crank.
An engine already running when the agent starts is not a crank either.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from edge.collect import Sample

EVENT_PREFIX = "Event.Crank"


@dataclass(frozen=True, slots=True)
class CrankRule:
    """Which signals to watch (``<Message>.<Signal>``) and the engine-speed thresholds."""

    voltage: str
    engine_speed: str
    crank_rpm: float = 50.0
    running_rpm: float = 400.0
    pre_s: float = 0.5


class CrankDetector:
    """Turns voltage and engine-speed samples into crank events (samples named Event.Crank.*)."""

    def __init__(self, rule: CrankRule) -> None:
        self.rule = rule
        self.events = 0
        self._state = "unknown"
        self._volts: deque[tuple[float, float]] = deque()
        self._start = 0.0
        self._rest: float | None = None
        self._min = 0.0

    def on_voltage(self, ts: float, volts: float) -> None:
        """Feed a 12 V voltage sample."""
        self._volts.append((ts, volts))
        while len(self._volts) > 2 and self._volts[1][0] <= ts - self.rule.pre_s:
            self._volts.popleft()  # keep one sample at least pre_s old, for the rest voltage
        if self._state == "cranking":
            self._min = min(self._min, volts)

    def on_speed(self, ts: float, rpm: float) -> list[Sample]:
        """Feed an engine-speed sample; returns a crank event's samples when one completes."""
        rule, state = self.rule, self._state
        if rpm < rule.crank_rpm:
            self._state = "rest"
            return self._event(ts, started=False) if state == "cranking" else []
        if state == "rest":
            self._begin(ts)
            state = self._state
        if state == "cranking" and rpm >= rule.running_rpm:
            self._state = "running"
            return self._event(ts, started=True)
        if state == "unknown":
            self._state = "running"  # already running when we started listening
        return []

    def _begin(self, ts: float) -> None:
        self._state, self._start = "cranking", ts
        before = [v for t, v in self._volts if t <= ts - self.rule.pre_s]
        self._rest = before[-1] if before else None
        recent = [v for t, v in self._volts if t > ts - self.rule.pre_s]
        self._min = min(recent, default=float("inf"))

    def _event(self, ts: float, *, started: bool) -> list[Sample]:
        if self._rest is None or self._min == float("inf"):
            return []  # no voltage seen around the crank: nothing honest to report
        self.events += 1
        start, p = self._start, EVENT_PREFIX
        return [(start, f"{p}.RestVoltage", self._rest), (start, f"{p}.MinVoltage", self._min),
                (start, f"{p}.Dip", self._rest - self._min),
                (start, f"{p}.Duration", ts - start), (start, f"{p}.Started", float(started))]

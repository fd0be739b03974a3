"""Per-signal collection modes: every sample, a fixed window, or on change.

Time is the frames' own time (bus time), never the wall clock, so a replayed log or a
simulation gives the same output however fast it runs. A collector turns one decoded sample
into zero or more published samples ``(ts, name, value)``; ``flush`` closes whatever is open
when the agent stops, so nothing it read is held back.

- **window**: per fixed window of ``window_s`` seconds, four samples: ``<name>:min``,
  ``<name>:max``, ``<name>:mean`` and ``<name>`` (the last value), stamped with the last
  sample's time. Min and max keep a short dip visible that a mean would smooth away.
- **on_change**: a sample is published when it differs from the last published one by more
  than ``deadband_abs`` or by more than ``deadband_rel`` × |last| (either deadband suffices),
  or when ``max_silence_s`` has passed since the last published sample.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

Sample = tuple[float, str, float]


class Collector(ABC):
    """What to publish for one signal."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def feed(self, ts: float, value: float) -> list[Sample]:
        """Take one decoded sample; return what to publish now."""

    def flush(self) -> list[Sample]:
        """Publish what is still held (the agent is stopping)."""
        return []


class WindowCollector(Collector):
    """Min, max, mean and last per fixed window of bus time."""

    def __init__(self, name: str, window_s: float) -> None:
        super().__init__(name)
        self._window_s = window_s
        self._start: float | None = None
        self._n = 0
        self._sum = self._min = self._max = self._last = self._last_ts = 0.0

    def feed(self, ts: float, value: float) -> list[Sample]:
        out: list[Sample] = []
        if self._start is not None and ts >= self._start + self._window_s:
            out = self.flush()
        if self._start is None:
            self._start = ts - (ts % self._window_s)  # windows aligned to the bus clock
            self._min = self._max = value
        self._n += 1
        self._sum += value
        self._min = min(self._min, value)
        self._max = max(self._max, value)
        self._last, self._last_ts = value, ts
        return out

    def flush(self) -> list[Sample]:
        if self._start is None:
            return []
        ts, name = self._last_ts, self.name
        out = [(ts, f"{name}:min", self._min), (ts, f"{name}:max", self._max),
               (ts, f"{name}:mean", self._sum / self._n), (ts, name, self._last)]
        self._start, self._n, self._sum = None, 0, 0.0
        return out


class OnChangeCollector(Collector):
    """Publish on a change beyond a deadband, or after a maximum silence."""

    def __init__(self, name: str, *, deadband_abs: float = 0.0, deadband_rel: float = 0.0,
                 max_silence_s: float | None = None) -> None:
        super().__init__(name)
        self._abs, self._rel, self._silence = deadband_abs, deadband_rel, max_silence_s
        self._last: float | None = None
        self._last_ts = 0.0

    def feed(self, ts: float, value: float) -> list[Sample]:
        last = self._last
        if last is not None:
            change = abs(value - last)
            if self._abs or self._rel:  # either deadband being exceeded is news
                changed = ((self._abs > 0 and change > self._abs)
                           or (self._rel > 0 and change > self._rel * abs(last)))
            else:
                changed = change > 0
            silent = self._silence is not None and ts - self._last_ts >= self._silence
            if not changed and not silent:
                return []
        self._last, self._last_ts = value, ts
        return [(ts, self.name, value)]

"""Where frames come from: a live bus through python-can, or a recorded log replayed.

:class:`FrameSource` owns the public ``recv(timeout)`` and drivers implement only
``_read_internal`` (python-can's template method). Drivers are registered by name and built
only when chosen, so a gateway that reads SocketCAN never imports a log reader's optional
dependencies. Any python-can interface name (``socketcan``, ``virtual``, ``pcan``, ``kvaser``,
``slcan``…) is a :class:`BusSource`; ``replay`` is a :class:`ReplaySource` over log files.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import can

from edge.errors import ConfigError
from edge.logfile import LogCounters, read_log

_BURST_S = 0.002
"""A paced replay hands out every frame due within this many seconds at once, as a driver's
receive buffer does, instead of waking once per frame."""


class FrameReader(Protocol):
    """A python-can bus or an :class:`edge.source.FrameSource`."""

    def recv(self, timeout: float | None = None) -> can.Message | None:
        """The next frame, or None after ``timeout`` seconds."""


class FrameSource(ABC):
    """One reader of one source of frames."""

    def recv(self, timeout: float | None = None) -> can.Message | None:
        """The next frame, or None when none arrived within ``timeout`` seconds."""
        return self._read_internal(timeout)

    @property
    def exhausted(self) -> bool:
        """True when no frame will ever come again (the end of a recording)."""
        return False

    @abstractmethod
    def _read_internal(self, timeout: float | None) -> can.Message | None:
        """Driver hook: wait at most ``timeout`` seconds for one frame."""

    def shutdown(self) -> None:  # noqa: B027 - most sources hold nothing to release
        """Release the source (idempotent)."""


class BusSource(FrameSource):
    """A live bus through any python-can interface, with kernel/driver filters where possible.

    Args:
        interface: python-can interface name.
        channel: the channel (``can0``, a virtual channel name, a serial port…).
        can_filters: python-can filters (SocketCAN applies them in the kernel).
        options: extra keyword arguments for the driver (``bitrate``, ``fd``…).
    """

    def __init__(self, interface: str, channel: str, *,
                 can_filters: list[dict[str, Any]] | None = None, **options: Any) -> None:
        try:
            self.bus = can.Bus(interface=interface, channel=channel, ignore_config=True,
                               can_filters=can_filters, **options)
        except (can.CanError, ValueError, OSError, NotImplementedError, ImportError) as exc:
            raise ConfigError(f"cannot open CAN interface {interface!r} channel {channel!r}: "
                              f"{exc}") from exc

    def _read_internal(self, timeout: float | None) -> can.Message | None:
        return self.bus.recv(timeout=timeout)

    def shutdown(self) -> None:
        self.bus.shutdown()


class ReplaySource(FrameSource):
    """Recorded logs, one after the other, at recorded speed × ``speed`` or as fast as possible.

    Args:
        paths: the recordings (candump text, ASC, BLF, TRC, MF4), read in the order given.
        speed: 0 reads as fast as possible; 1 at the recorded pace; N at N times it.
        strict: fail on the first malformed text line instead of counting and skipping it.
    """

    def __init__(self, paths: Sequence[str | Path], *, speed: float = 0.0,
                 strict: bool = False) -> None:
        if speed < 0:
            raise ConfigError(f"replay speed {speed} must be 0 (as fast as possible) or more")
        for path in paths:
            if not Path(path).is_file():
                raise ConfigError(f"CAN log {path} does not exist")
        self.counters = LogCounters()
        self.checkpoint_key = "replay:" + "|".join(str(Path(p).resolve()) for p in paths)
        """Names this recording in the spool's checkpoints."""
        self.position = 0
        """Frames handed out so far (skipped ones included)."""
        self._frames = self._chain(paths, strict)
        self._speed = speed
        self._done = False
        self._next: can.Message | None = None
        self._origin: tuple[float, float] | None = None

    def _chain(self, paths: Sequence[str | Path], strict: bool) -> Iterator[can.Message]:
        for path in paths:
            yield from read_log(path, self.counters, strict=strict)

    @property
    def exhausted(self) -> bool:
        return self._done and self._next is None

    def skip(self, frames: int) -> int:
        """Resume after a checkpoint: pass over ``frames`` frames; returns how many there were."""
        skipped = 0
        while skipped < frames and next(self._frames, None) is not None:
            skipped += 1
        self.position += skipped
        return skipped

    def _read_internal(self, timeout: float | None) -> can.Message | None:
        if self._next is None:
            self._next = next(self._frames, None)
            if self._next is None:
                self._done = True
                return None
        frame = self._next
        if self._speed > 0:
            wait = self._due(frame.timestamp) - time.monotonic()
            if wait > _BURST_S:
                time.sleep(wait if timeout is None else min(wait, timeout))
                if self._due(frame.timestamp) - time.monotonic() > _BURST_S:
                    return None
        self._next = None
        self.position += 1
        return frame

    def _due(self, ts: float) -> float:
        if self._origin is None:
            self._origin = (ts, time.monotonic())
        first_ts, started = self._origin
        return started + max(0.0, ts - first_ts) / self._speed


SourceFactory = Callable[..., FrameSource]

_REGISTRY: dict[str, SourceFactory] = {"replay": lambda channel, **kw: ReplaySource(
    [p for p in channel.split(",") if p], **kw)}


def register_source(name: str, factory: SourceFactory) -> None:
    """Add (or replace) a driver under ``name`` (plugins, tests)."""
    _REGISTRY[name] = factory


def open_source(interface: str, channel: str, **options: Any) -> FrameSource:
    """Build the named driver; any name not registered here is a python-can interface.

    For ``replay`` the channel is a comma-separated list of log files.

    Raises:
        ConfigError: the driver cannot be built (unknown interface, missing file, …).
    """
    factory = _REGISTRY.get(interface)
    if factory is not None:
        return factory(channel, **options)
    return BusSource(interface, channel, **options)

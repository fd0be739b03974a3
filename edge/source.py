"""Where frames come from: a live bus through python-can, or a recorded log replayed.

:class:`FrameSource` owns the public ``recv(timeout)`` and drivers implement only
``_read_internal`` (python-can's template method). Drivers are registered by name and built
only when chosen, so a gateway that reads SocketCAN never imports a log reader's optional
dependencies. Any python-can interface name (``socketcan``, ``virtual``, ``pcan``, ``kvaser``,
``slcan``…) is a :class:`BusSource`; ``replay`` is a :class:`ReplaySource` over log files.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import can

from edge.errors import ConfigError
from edge.logfile import LogCounters, RawFrame, check_log, read_log, read_raw

_BURST_S = 0.002
"""A paced replay hands out every frame due within this many seconds at once, as a driver's
receive buffer does, instead of waking once per frame."""

_RAW_WAKE_S = 0.05
"""Paced raw reads come this far apart: each round hands out every frame that came due since
the last, as a reader polling a driver's receive buffer does: twenty rounds a second (225
frames each on a full bus) instead of thousands, unless the reader falls behind. Each wake-up of the
read loop also wakes the spool writer, the publisher and paho's thread once for what that
block completed; on this 2-core VM such a round costs about 1 ms of CPU, and at 10 ms
intervals the rounds took a third of the agent's CPU on a loaded bus (bench/edge.py). No
frame is handed out before it is due; a frame may wait up to this long, which the latency
figures include."""


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

    Read it either with :meth:`recv` (python-can messages, for frame taps) or with
    :meth:`recv_raw` (many bare frames per call, the agent's fast path), not both.

    Args:
        paths: the recordings (candump text, ASC, BLF, TRC, MF4), read in the order given.
        speed: 0 reads as fast as possible; 1 at the recorded pace; N at N times it.
        strict: fail on the first malformed text line instead of counting and skipping it.
        start_at: re-stamp the frames (Unix time) so the recording's first frame is at this
            time and every interval is kept: a drive recorded years ago replayed as today's.
            None keeps the recorded times.
    """

    def __init__(self, paths: Sequence[str | Path], *, speed: float = 0.0,
                 strict: bool = False, start_at: float | None = None) -> None:
        if not speed >= 0:  # NaN too
            raise ConfigError(f"replay speed {speed} must be 0 (as fast as possible) or more")
        if not paths:
            raise ConfigError("a replay needs at least one CAN log")
        for path in paths:
            check_log(path)
        self.counters = LogCounters()
        self.checkpoint_key = replay_checkpoint_key(paths)
        """Names this recording in the spool's checkpoints."""
        self.position = 0
        """Frames handed out so far (skipped ones included)."""
        self._paths, self._strict = list(paths), strict
        self._frames: Iterator[can.Message] | None = None
        self._chunks = self._raw_chain()
        self._buffer: list[RawFrame] = []
        self._at = 0
        self._speed = speed
        self._done = False
        self._next: can.Message | None = None
        self._origin: tuple[float, float] | None = None
        self._last_round = -math.inf
        """Monotonic time of the last paced raw round (see :meth:`_pace`)."""
        self._start_at = start_at
        self._shift: float | None = None if start_at is not None else 0.0
        """Seconds added to every recorded time; fixed by the recording's first frame."""

    def _chain(self, counters: LogCounters) -> Iterator[can.Message]:
        for path in self._paths:
            yield from read_log(path, counters, strict=self._strict)

    def _raw_chain(self) -> Generator[list[RawFrame], None, None]:
        for path in self._paths:
            yield from read_raw(path, self.counters, strict=self._strict)

    @property
    def bytes_read(self) -> int:
        """How far into the recordings reading has got, in bytes (see ``LogCounters``)."""
        return self.counters.bytes_read

    @property
    def exhausted(self) -> bool:
        return self._done and self._next is None and self._at >= len(self._buffer)

    def holds_no_frames(self, *, frame_by_frame: bool = False) -> bool:
        """True when the recordings yield no frame at all (before reading: looks ahead).

        Reads only up to the first frame, which stays to be handed out; ``frame_by_frame``
        looks ahead the way :meth:`recv` reads (for frame taps), so nothing is read twice.
        After :meth:`skip` or any read it is False: frames were there.

        Raises:
            LogFormatError: a strict replay met a malformed line before the first frame.
        """
        if self.position:
            return False
        self.counters.quiet = True  # an unusable log is one line, said by the caller
        try:
            if frame_by_frame:
                self._start_frames()
                assert self._frames is not None
                if self._next is None:
                    self._next = next(self._frames, None)
                self._done = self._next is None
                empty = self._done
            else:
                empty = not self._fill()
        finally:
            self.counters.quiet = False
        if not empty:
            self.counters.report_held()
        return empty

    def skip(self, frames: int) -> int:
        """Resume after a checkpoint: pass over ``frames`` frames; returns how many there were."""
        skipped = 0
        while skipped < frames and self._fill():
            step = min(frames - skipped, len(self._buffer) - self._at)
            self._at += step
            skipped += step
        self.position += skipped
        return skipped

    def _fill(self) -> bool:
        """Make sure a raw frame is waiting; False at the end of the recording."""
        if self._at < len(self._buffer):
            return True
        self._buffer, self._at = next(self._chunks, []), 0
        if not self._buffer:
            self._done = True
        elif self._shift is None:
            self._fix_shift(self._buffer[0][0])
        return bool(self._buffer)

    def _fix_shift(self, first_ts: float) -> None:
        """The re-stamping offset, from the recording's first frame (read or skipped)."""
        assert self._start_at is not None
        self._shift = self._start_at - first_ts

    def recv_raw(self, timeout: float | None = None, limit: int = 1024) -> list[RawFrame]:
        """Up to ``limit`` frames at once (all that are due, when paced); [] after ``timeout``.

        Paced, one call is one round of the agent's loop: it hands out every frame due, up to
        ``limit``, across the reader's chunks of the file (a chunk ending mid-round does not
        split the round in two), and the next round comes :data:`_RAW_WAKE_S` after this one
        unless the reader has fallen behind (see :meth:`_pace`).

        Raises:
            ConfigError: the source was already read with :meth:`recv`.
        """
        if self._frames is not None:
            raise ConfigError("a replay read frame by frame cannot switch to raw reads")
        if not self._fill():
            return []
        if self._speed > 0:
            return self._paced_round(timeout, limit)
        buffer, at = self._buffer, self._at
        end = min(len(buffer), at + limit)
        return self._take(buffer, at, end)

    def _paced_round(self, timeout: float | None, limit: int) -> list[RawFrame]:
        """One paced round: wait as :meth:`_pace` says, then everything due, up to ``limit``."""
        now = self._pace(timeout)
        if now is None:
            return []
        self._last_round = now
        assert self._origin is not None
        first_ts, started = self._origin
        horizon = first_ts + (now - started) * self._speed
        out: list[RawFrame] = []
        while len(out) < limit and self._fill():
            buffer, at = self._buffer, self._at
            end = min(len(buffer), at + limit - len(out))
            stop = at
            while stop < end and buffer[stop][0] <= horizon:
                stop += 1
            if stop == at:
                break  # the next frame is not due yet
            piece = self._take(buffer, at, stop)
            if not out and (stop < len(buffer) or len(piece) == limit):
                return piece  # the whole round from one chunk: no copy
            out += piece
            if stop < end:
                break
        return out

    def _pace(self, timeout: float | None) -> float | None:
        """Sleep until the next round is due; its (monotonic) time, or None: nothing due yet.

        A round is due when its first frame is and :data:`_RAW_WAKE_S` has passed since the
        last round. The frames that come due while the agent works on a round (a few ms) wait
        for the next one instead of making a mini-round of their own: on a full bus each wake
        otherwise gave two rounds, the second of a dozen frames and costing the spool writer,
        the publisher and paho a wake-up each all the same. A reader that has fallen behind
        (its first frame waited a whole interval already) gets the next round at once.
        """
        buffer, at = self._buffer, self._at
        now = time.monotonic()
        due = self._due(buffer[at][0])
        if due > now:  # nothing due: sleep at least an interval, as ever
            wait = max(due - now, _RAW_WAKE_S)
            time.sleep(wait if timeout is None else min(wait, timeout))
            now = time.monotonic()
            return None if due > now else now
        if now - due >= _RAW_WAKE_S:
            return now  # behind: no wait
        wait = self._last_round + _RAW_WAKE_S - now
        if wait > 0:
            time.sleep(wait if timeout is None else min(wait, timeout))
            now = time.monotonic()
        return now

    def _take(self, buffer: list[RawFrame], at: int, end: int) -> list[RawFrame]:
        """Hand out ``buffer[at:end]`` (re-stamped when asked) and move past it."""
        self._at = end
        self.position += end - at
        shift = self._shift
        if shift:
            return [(ts + shift, key, data) for ts, key, data in buffer[at:end]]
        return buffer[at:end]

    def _read_internal(self, timeout: float | None) -> can.Message | None:
        self._start_frames()
        assert self._frames is not None
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
        if self._shift is None:  # frame by frame from the start: this is the first frame
            self._fix_shift(frame.timestamp)
        self.position += 1
        if self._shift:
            frame.timestamp += self._shift
        return frame

    def _start_frames(self) -> None:
        """Switch to reading frame by frame (once): a message reader, counting afresh from
        the start of the recording, placed where the raw reader stood (after skip(), usually)."""
        if self._frames is not None:
            return
        self._chunks.close()
        self._buffer, self._at, self._done = [], 0, False
        self.counters.frames = self.counters.malformed = 0
        self.counters.malformed_at.clear()
        self._frames = self._chain(self.counters)
        for _ in range(self.position):
            next(self._frames, None)

    def _due(self, ts: float) -> float:
        if self._origin is None:
            self._origin = (ts, time.monotonic())
        first_ts, started = self._origin
        return started + max(0.0, ts - first_ts) / self._speed


def replay_checkpoint_key(paths: Sequence[str | Path]) -> str:
    """The name under which a replay of these recordings records its position in a spool."""
    return "replay:" + "|".join(str(Path(p).resolve()) for p in paths)


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

"""Reading recorded CAN logs: candump text (our own tolerant parser), ASC, BLF, TRC and MF4.

``candump -l`` text is parsed here rather than by python-can because a recording with one bad
line must not be lost as a whole, and the person fixing it needs the file and line number.
Both variants are accepted: the plain ``(ts) can0 123#DEADBEEF`` and the one python-can's
writer produces, with a trailing `` R``/`` T`` (received/transmitted). CAN FD (``123##1…``),
remote (``123#R``) and error frames are understood.

:func:`read_raw` reads the same recordings as lists of bare ``(timestamp, key, payload)``
tuples instead of python-can messages: the agent's fast path, where building a message object
per frame would cost more than decoding it. Plain lines are split by a short parser; any other
line goes through :func:`parse_candump_line`, so both readers accept, reject and count exactly
the same lines.

Policy for malformed lines: by default each is counted, logged with ``file:line`` and skipped
(the rest of the recording is still worth having); with ``strict=True`` the first one raises
a :class:`LogFormatError` naming the file and line. Binary formats are read with python-can's
readers (MF4 needs the optional ``asammdf``); a reader failure names the file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import can

from edge.errors import ConfigError, TerminalEdgeError

log = logging.getLogger(__name__)

_CAN_ERR_FLAG = 0x20000000
_BINARY_SUFFIXES = (".asc", ".blf", ".trc", ".mf4")
_KEEP_LOCATIONS = 20
_CAN_EFF_FLAG = 0x80000000
_SUFFIXES = frozenset(("R", "T", "r", "t"))

RawFrame = tuple[float, int, bytes]
"""``(timestamp, key, payload)``: ``key`` is the frame id, ``| 0x80000000`` for a 29-bit id
(the DBC convention, as :mod:`edge.decode` keys frames), or :data:`NOT_DATA`."""

NOT_DATA = -1
"""The key of error and remote frames: read and counted, never decoded."""


class LogFormatError(TerminalEdgeError):
    """A recorded CAN log cannot be read; the message names the file (and line, for text)."""


@dataclass
class LogCounters:
    """What the reader saw; ``malformed_at`` keeps the first few ``file:line: reason``."""

    frames: int = 0
    malformed: int = 0
    malformed_at: list[str] = field(default_factory=list)

    def bad_line(self, where: str) -> None:
        """Count one malformed line and remember where it was (the first few only)."""
        self.malformed += 1
        if len(self.malformed_at) < _KEEP_LOCATIONS:
            self.malformed_at.append(where)
        log.warning("skipping malformed log line %s", where)


def read_log(path: str | Path, counters: LogCounters | None = None, *,
             strict: bool = False) -> Iterator[can.Message]:
    """Yield the frames of one recording, in file order.

    Raises:
        ConfigError: the file is missing, or its format needs a package that is not installed.
        LogFormatError: ``strict`` and a candump line is malformed, or a binary log is corrupt.
    """
    path = Path(path)
    counters = counters if counters is not None else LogCounters()
    if not path.is_file():
        raise ConfigError(f"CAN log {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in _BINARY_SUFFIXES:
        yield from _read_binary(path, counters)
    else:
        yield from _read_candump(path, counters, strict)


def _read_candump(path: Path, counters: LogCounters, strict: bool) -> Iterator[can.Message]:
    with open(path, encoding="ascii", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            frame = _checked_line(path, number, line, counters, strict)
            if frame is not None:
                counters.frames += 1
                yield frame


def _checked_line(path: Path, number: int, line: str, counters: LogCounters,
                  strict: bool) -> can.Message | None:
    """One line of a candump log: a frame, or None for a blank line, a comment or (counted,
    or raised when ``strict``) a malformed line, named by file and line number."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    try:
        return parse_candump_line(text)
    except ValueError as exc:
        where = f"{path}:{number}: {exc}"
        if strict:
            raise LogFormatError(f"malformed candump line {where}") from exc
        counters.bad_line(where)
        return None


def parse_candump_line(text: str) -> can.Message:
    """One ``(ts) channel ID#DATA [R|T]`` line to a frame.

    Raises:
        ValueError: with a message saying what is wrong with the line.
    """
    parts = text.split()
    if len(parts) == 4 and parts[3] in ("R", "T", "r", "t"):
        parts = parts[:3]
    if len(parts) != 3 or not (parts[0].startswith("(") and parts[0].endswith(")")):
        raise ValueError(f"expected '(timestamp) channel ID#DATA [R|T]', got {text[:60]!r}")
    stamp, channel, frame = parts
    try:
        timestamp = float(stamp[1:-1])
    except ValueError:
        raise ValueError(f"timestamp {stamp!r} is not a number") from None
    ident, sep, data = frame.partition("#")
    if not sep or len(ident) not in (3, 8):
        raise ValueError(f"frame {frame[:40]!r} needs a 3- or 8-digit hex id before '#'")
    can_id = _hex(ident, "id")
    if can_id & _CAN_ERR_FLAG:
        return can.Message(timestamp=timestamp, is_error_frame=True, channel=channel)
    is_fd = data.startswith("#")
    flags = _hex(data[1], "CAN FD flags") if is_fd and len(data) > 1 else 0
    data = data[2:] if is_fd else data
    if data[:1] in ("R", "r"):
        dlc = int(data[1:]) if data[1:].isdigit() else 0
        return can.Message(timestamp=timestamp, arbitration_id=can_id & 0x1FFFFFFF,
                           is_extended_id=len(ident) == 8, is_remote_frame=True, dlc=dlc,
                           channel=channel)
    if len(data) % 2 or len(data) > 128:
        raise ValueError(f"data {data[:40]!r} is not whole bytes of hex (at most 64)")
    payload = bytes.fromhex(data) if data else b""
    return can.Message(timestamp=timestamp, arbitration_id=can_id & 0x1FFFFFFF,
                       is_extended_id=len(ident) == 8, is_fd=is_fd, bitrate_switch=bool(flags & 1),
                       error_state_indicator=bool(flags & 2), data=payload, channel=channel)


def _hex(text: str, what: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not hexadecimal") from None


def _read_binary(path: Path, counters: LogCounters) -> Iterator[can.Message]:
    try:
        reader = can.LogReader(str(path))
    except ImportError as exc:
        raise ConfigError(f"reading {path} needs an optional package ({exc}); install it with "
                          "pip install 'fleetcare[replay]' (asammdf for MF4)") from exc
    except Exception as exc:  # python-can's readers raise many unrelated types
        raise LogFormatError(f"CAN log {path} cannot be opened: {exc}") from exc
    try:
        for frame in reader:
            counters.frames += 1
            yield frame
    except Exception as exc:
        raise LogFormatError(f"CAN log {path} is corrupt after frame {counters.frames}: "
                             f"{exc}") from exc
    finally:
        reader.stop()


def read_raw(path: str | Path, counters: LogCounters | None = None, *, strict: bool = False,
             chunk: int = 1024) -> Iterator[list[RawFrame]]:
    """Yield the frames of one recording, in file order, as lists of about ``chunk`` frames.

    Accepts, rejects and counts exactly what :func:`read_log` does (same errors).
    """
    path = Path(path)
    counters = counters if counters is not None else LogCounters()
    if not path.is_file():
        raise ConfigError(f"CAN log {path} does not exist")
    if path.suffix.lower() in _BINARY_SUFFIXES:
        frames = (to_raw(frame) for frame in _read_binary(path, counters))
        while batch := list(islice(frames, chunk)):
            yield batch
    else:
        yield from _raw_candump(path, counters, strict, chunk)


def to_raw(frame: can.Message) -> RawFrame:
    """A python-can message as a raw frame."""
    if frame.is_error_frame or frame.is_remote_frame:
        return frame.timestamp, NOT_DATA, b""
    key = frame.arbitration_id
    if frame.is_extended_id:
        key = (key & 0x1FFFFFFF) | _CAN_EFF_FLAG
    return frame.timestamp, key, bytes(frame.data)


def _raw_candump(path: Path, counters: LogCounters, strict: bool,
                 chunk: int) -> Iterator[list[RawFrame]]:
    keys: dict[str, int] = {}  # id text -> key, for the ids of plain data frames
    fromhex = bytes.fromhex
    number = 0
    with open(path, encoding="ascii", errors="replace") as handle:
        while lines := handle.readlines(chunk * 40):  # a candump line is ~40 characters
            out: list[RawFrame] = []
            for line in lines:
                number += 1
                parts = line.split()
                if len(parts) == 4 and parts[3] in _SUFFIXES:
                    del parts[3]
                if len(parts) == 3:
                    stamp, _, frame = parts
                    ident, _, data = frame.partition("#")
                    key = keys.get(ident)
                    if (key is not None and stamp[0] == "(" and stamp[-1] == ")"
                            and len(data) <= 128):
                        try:
                            out.append((float(stamp[1:-1]), key, fromhex(data)))
                            continue
                        except ValueError:
                            pass  # FD, remote or bad hex: the full parser says which
                raw = _raw_line(path, number, line, counters, strict, keys)
                if raw is not None:
                    out.append(raw)
            counters.frames += len(out)
            if out:
                yield out


def _raw_line(path: Path, number: int, line: str, counters: LogCounters, strict: bool,
              keys: dict[str, int]) -> RawFrame | None:
    """Any line the short parser does not take: parsed in full, malformed ones counted."""
    frame = _checked_line(path, number, line, counters, strict)
    if frame is None:
        return None
    raw = to_raw(frame)
    if raw[1] != NOT_DATA and not frame.is_fd:
        keys[line.split()[2].partition("#")[0]] = raw[1]
    return raw

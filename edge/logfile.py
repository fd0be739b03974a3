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

:func:`check_log` looks at a recording before anything reads it: it must exist, be readable
and not be empty, and a BLF or MF4 file must be whole. python-can's BLF reader and asammdf
both end a cut-off file quietly, at the last complete frame, so a recording truncated by a
full disk or an interrupted copy would otherwise replay as a shorter drive that nobody can
tell from the real one. The check walks the file's block structure (BLF objects; MF4 blocks
and, in an unfinalised MF4 as CANedge loggers write them, the records of the open data block)
and names the file and the byte where it ends too early.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import BinaryIO

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
    """What the reader saw; ``malformed_at`` keeps the first few ``file:line: reason``.

    The first few malformed lines are logged one by one, then one line says the rest are only
    counted: a binary file passed as a candump log must not print a warning per line. With
    ``quiet`` nothing is logged until :meth:`report_held` (a look-ahead that may find the whole
    log unusable, which its caller then says in one line).
    """

    frames: int = 0
    malformed: int = 0
    malformed_at: list[str] = field(default_factory=list)
    quiet: bool = False
    bytes_read: int = 0
    """How far into the recordings reading has got, in bytes (for a progress bar: a binary
    log whose reader hides its position counts whole when it is done)."""

    def bad_line(self, where: str) -> None:
        """Count one malformed line and remember where it was (the first few only)."""
        self.malformed += 1
        if len(self.malformed_at) < _KEEP_LOCATIONS:
            self.malformed_at.append(where)
        if not self.quiet:
            self._log(self.malformed, where)

    def report_held(self) -> None:
        """Log what was counted while ``quiet``, as it would have been logged then."""
        for number, where in enumerate(self.malformed_at, start=1):
            self._log(number, where)
        if self.malformed > _KEEP_LOCATIONS:
            self._log(_KEEP_LOCATIONS + 1, "")

    @staticmethod
    def _log(number: int, where: str) -> None:
        if number <= _KEEP_LOCATIONS:
            log.warning("skipping malformed log line %s", where)
        elif number == _KEEP_LOCATIONS + 1:
            log.warning("more than %d malformed log lines: the rest are skipped and counted "
                        "(log_malformed_lines), not logged one by one", _KEEP_LOCATIONS)


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
            counters.bytes_read += len(line)  # ASCII: a character is a byte
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
    start, size = counters.bytes_read, path.stat().st_size
    handle = getattr(reader, "file", None)  # BLF, ASC, TRC readers keep theirs; MF4's not
    try:
        for frame in reader:
            counters.frames += 1
            if counters.frames % 4096 == 0 and handle is not None:
                counters.bytes_read = start + min(size, _position(handle))
            yield frame
        counters.bytes_read = start + size
    except Exception as exc:
        raise LogFormatError(f"CAN log {path} is corrupt after frame {counters.frames}: "
                             f"{exc}") from exc
    finally:
        reader.stop()


def _position(handle: object) -> int:
    """Where a reader's file stands; 0 when it cannot say (a text file being iterated)."""
    try:
        return int(handle.tell())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return 0


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


_TOKEN_MEMO = 2048
"""Distinct ``ID#DATA`` texts :func:`read_raw` remembers the frame of (about 400 kB)."""


def _raw_candump(path: Path, counters: LogCounters, strict: bool,
                 chunk: int) -> Iterator[list[RawFrame]]:
    """The short parser: a plain data frame's line is split once, and its ``ID#DATA`` text
    looked up among those seen lately (a bus repeats many payloads), so only a new text
    goes through the id table and ``bytes.fromhex``; a repeated payload is the same bytes
    object, whose hash the agent's payload memo then does not compute again. Anything else
    (FD, remote and error frames, malformed lines, a new id) takes the full parser."""
    keys: dict[str, int] = {}  # id text -> key, for the ids of plain data frames
    seen: dict[str, tuple[int, bytes]] = {}  # ID#DATA text -> (key, payload), bounded
    number = 0
    with open(path, encoding="ascii", errors="replace") as handle:
        while lines := handle.readlines(chunk * 40):  # a candump line is ~40 characters
            counters.bytes_read += sum(map(len, lines))
            out: list[RawFrame] = []
            for line in lines:
                number += 1
                parts = line.split()
                if len(parts) == 4 and parts[3] in _SUFFIXES:
                    del parts[3]
                if len(parts) == 3:
                    stamp, _, frame = parts
                    known = seen.get(frame)
                    if known is None:
                        known = _plain_frame(frame, keys)
                        if known is not None:
                            if len(seen) >= _TOKEN_MEMO:
                                seen.clear()
                            seen[frame] = known
                    if known is not None and stamp[0] == "(" and stamp[-1] == ")":
                        try:
                            out.append((float(stamp[1:-1]), known[0], known[1]))
                            continue
                        except ValueError:
                            pass  # not a timestamp: the full parser says so
                raw = _raw_line(path, number, line, counters, strict, keys)
                if raw is not None:
                    out.append(raw)
            counters.frames += len(out)
            if out:
                yield out


def _plain_frame(frame: str, keys: dict[str, int]) -> tuple[int, bytes] | None:
    """``ID#DATA`` of a plain data frame whose id the full parser has met: (key, payload);
    None for anything else (FD, remote, bad hex, an id not met yet)."""
    ident, _, data = frame.partition("#")
    key = keys.get(ident)
    if key is None or len(data) > 128:
        return None
    try:
        return key, bytes.fromhex(data)
    except ValueError:
        return None


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


def check_log(path: str | Path) -> None:
    """Refuse a recording that cannot be replayed whole, before anything reads it.

    Raises:
        ConfigError: the file is missing, is not a file, or cannot be read.
        LogFormatError: the file is empty, or a BLF/MF4 file is cut off or not of its format.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"CAN log {path} does not exist")
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise LogFormatError(f"CAN log {path} is empty")
            suffix = path.suffix.lower()
            if suffix == ".blf":
                _check_blf(path, handle, size)
            elif suffix == ".mf4":
                _check_mf4(path, handle, size)
    except OSError as exc:
        raise ConfigError(f"CAN log {path} cannot be read: {exc.strerror or exc}") from exc


_BLF_HEADER = struct.Struct("<4sL8xQ")
"""The start of a BLF file header: signature, header size, (8 bytes), file size."""
_BLF_OBJECT = struct.Struct("<4sHHL")
"""The start of every BLF object: signature, header size, header version, object size."""


def _check_blf(path: Path, handle: BinaryIO, size: int) -> None:
    """Every top-level BLF object (a log container, usually) lies whole inside the file."""
    head = handle.read(_BLF_HEADER.size)
    if len(head) < _BLF_HEADER.size:
        raise LogFormatError(f"CAN log {path} is truncated: {size} bytes, shorter than a BLF "
                             "file header")
    signature, header_size, declared = _BLF_HEADER.unpack(head)
    if signature != b"LOGG":
        raise LogFormatError(f"CAN log {path} is not a BLF file (no LOGG signature)")
    if declared > size:  # a writer that never closed leaves its placeholder, which is smaller
        raise LogFormatError(f"CAN log {path} is truncated: its header says {declared} bytes, "
                             f"the file has {size}")
    position = max(header_size, _BLF_HEADER.size)
    while position + _BLF_OBJECT.size <= size:
        handle.seek(position)
        signature, _, _, length = _BLF_OBJECT.unpack(handle.read(_BLF_OBJECT.size))
        if signature != b"LOBJ" or length < _BLF_OBJECT.size:
            raise LogFormatError(f"CAN log {path} is corrupt: no BLF object at byte {position}")
        if position + length > size:
            raise LogFormatError(f"CAN log {path} is truncated: the object at byte {position} "
                                 f"needs {length} bytes, the file ends {size - position} "
                                 "bytes after its start")
        position += length + length % 4  # python-can's reader skips the same padding
    if position < size:
        handle.seek(position)
        if handle.read(size - position).strip(b"\0"):
            raise LogFormatError(f"CAN log {path} is truncated: {size - position} bytes of an "
                                 f"incomplete BLF object at byte {position}")


_MF4_BLOCK = struct.Struct("<4s4xQQ")
"""Every MF4 block starts with: id (``##XX``), 4 reserved bytes, block length, link count."""
_MF4_CG = struct.Struct("<QQHH4xLL")
"""A channel group's data: record id, cycle count, flags, path separator, data and
invalidation bytes per record."""
_MF4_UNFINISHED = b"UnFinMF "
_MF4_VLSD = 1
"""The channel-group flag of variable-length signal data (records with their own length)."""


def _check_mf4(path: Path, handle: BinaryIO, size: int) -> None:
    """Every MF4 block lies whole inside the file; an unfinalised file's open data block
    ends on a record boundary."""
    ident = handle.read(64)
    if len(ident) < 64 or ident[:8] not in (b"MDF     ", _MF4_UNFINISHED):
        raise LogFormatError(f"CAN log {path} is not an MF4 file (no MDF identification)")
    blocks: dict[int, tuple[bytes, int, tuple[int, ...]]] = {}
    todo = [64]  # the header block: every other block is reachable through links
    while todo:
        at = todo.pop()
        if at == 0 or at in blocks:
            continue
        if at + _MF4_BLOCK.size > size:
            raise LogFormatError(f"CAN log {path} is truncated: a block at byte {at} lies "
                                 f"beyond its end ({size} bytes)")
        handle.seek(at)
        kind, length, count = _MF4_BLOCK.unpack(handle.read(_MF4_BLOCK.size))
        if kind[:2] != b"##" or length < _MF4_BLOCK.size + 8 * count:
            raise LogFormatError(f"CAN log {path} is corrupt: no MF4 block at byte {at}")
        if at + length > size:
            name = kind[2:].decode("ascii", errors="replace")
            raise LogFormatError(f"CAN log {path} is truncated: the {name} block at byte {at} "
                                 f"needs {length} bytes, the file ends {size - at} bytes after "
                                 "its start")
        links = struct.unpack(f"<{count}Q", handle.read(8 * count))
        blocks[at] = (kind, length, links)
        todo.extend(links)
    if ident[:8] == _MF4_UNFINISHED:
        _check_open_records(path, handle, size, blocks)


def _check_open_records(path: Path, handle: BinaryIO, size: int,
                        blocks: dict[int, tuple[bytes, int, tuple[int, ...]]]) -> None:
    """In an unfinalised MF4 the last data block's length was never written: its records run
    to the next block or to the end of the file, which must fall between two records."""
    starts = sorted(blocks)
    for at, (kind, _, links) in blocks.items():
        if kind != b"##DG" or len(links) < 3 or blocks.get(links[2], (b"",))[0] != b"##DT":
            continue
        handle.seek(at + _MF4_BLOCK.size + 8 * len(links))
        id_size = handle.read(1)[0]
        records: dict[int, int | None] = {}  # record id -> bytes per record; None: VLSD
        group = links[1]
        while group and group in blocks:
            _, _, group_links = blocks[group]
            handle.seek(group + _MF4_BLOCK.size + 8 * len(group_links))
            record_id, _, flags, _, data_bytes, invalid_bytes = _MF4_CG.unpack(
                handle.read(_MF4_CG.size))
            records[record_id] = None if flags & _MF4_VLSD else data_bytes + invalid_bytes
            group = group_links[0] if group_links else 0
        data = links[2]
        later = [s for s in starts if s > data]
        end = later[0] if later else size
        _walk_records(path, handle, data + _MF4_BLOCK.size, end, id_size, records)


def _walk_records(path: Path, handle: BinaryIO, start: int, end: int, id_size: int,
                  records: dict[int, int | None]) -> None:
    """Step over the records between ``start`` and ``end``; the last must end at ``end``."""
    handle.seek(start)
    data = memoryview(handle.read(end - start))
    id_format = {0: "", 1: "<B", 2: "<H", 4: "<L", 8: "<Q"}.get(id_size)
    if id_format is None:
        raise LogFormatError(f"CAN log {path} is corrupt: record ids of {id_size} bytes")
    only = next(iter(records.values())) if len(records) == 1 else None
    if not id_size:
        if only and len(data) % only:
            raise LogFormatError(f"CAN log {path} is truncated: its last record is "
                                 f"{len(data) % only} of {only} bytes")
        return
    unpack_id = struct.Struct(id_format).unpack_from
    unpack_length = struct.Struct("<L").unpack_from
    position, limit, record = 0, len(data), 0
    while position < limit:
        record = position
        if position + id_size > limit:
            break
        (record_id,) = unpack_id(data, position)
        position += id_size
        if record_id not in records:
            raise LogFormatError(f"CAN log {path} is corrupt: unknown record id {record_id} "
                                 f"at byte {start + record}")
        length = records[record_id]
        if length is None:  # variable length: a 4-byte length first
            if position + 4 > limit:
                position = limit + 1
                break
            (length,) = unpack_length(data, position)
            position += 4
        position += length
    if position != limit:
        raise LogFormatError(f"CAN log {path} is truncated: its last record, at byte "
                             f"{start + record}, ends past the end of the file")

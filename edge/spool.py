"""The on-disk spool: messages wait here until the broker has acknowledged them.

One file per message, named by a sequence number so the order survives a restart. A message
is written to a temporary name, flushed (and fsynced: a gateway can lose power at any moment)
and renamed into place, so after a crash every entry is either whole or absent. Removing the
file is the acknowledgement. The spool is bounded: when a new message would exceed
``max_bytes``, the oldest entries are dropped and counted (the newest data is the most useful
for maintenance; the count tells the backend how much history is missing).
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from edge.errors import SpoolError

_HEADER = struct.Struct(">H")
_SUFFIX = ".msg"


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One spooled message."""

    seq: int
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """Counters a gateway reports upstream."""

    pending: int
    pending_bytes: int
    written: int
    acked: int
    dropped: int
    dropped_bytes: int


class Spool:
    """A bounded, crash-safe, ordered queue of messages on disk.

    Args:
        directory: where entries live; created if missing.
        max_bytes: bound on the payload bytes kept; the oldest are dropped beyond it.
        fsync: fsync each entry and the directory (turn off only for simulations).
    """

    def __init__(self, directory: str | Path, *, max_bytes: int = 256 * 2**20,
                 fsync: bool = True) -> None:
        self._dir = Path(directory)
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create spool directory {self._dir}: {exc}") from exc
        self._max_bytes = max_bytes
        self._fsync = fsync
        self._lock = threading.Lock()
        self._sizes: dict[int, int] = {}
        for path in sorted(self._dir.glob(f"*{_SUFFIX}")):
            self._sizes[int(path.stem)] = path.stat().st_size
        for stale in self._dir.glob("*.tmp"):
            stale.unlink()  # a write the crash interrupted: it was never acknowledged as read
        self._next_seq = max(self._sizes, default=0) + 1
        self._written = self._acked = self._dropped = self._dropped_bytes = 0

    def append(self, topic: str, payload: bytes) -> int:
        """Store a message durably and return its sequence number."""
        topic_bytes = topic.encode()
        blob = _HEADER.pack(len(topic_bytes)) + topic_bytes + payload
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            self._make_room(len(blob))
            self._write(seq, blob)
            self._sizes[seq] = len(blob)
            self._written += 1
        return seq

    def read(self, seq: int) -> SpoolEntry | None:
        """The entry with this number, or None when it was acknowledged or dropped."""
        try:
            blob = self._path(seq).read_bytes()
        except FileNotFoundError:
            return None
        (length,) = _HEADER.unpack_from(blob)
        topic = blob[_HEADER.size:_HEADER.size + length].decode()
        return SpoolEntry(seq, topic, blob[_HEADER.size + length:])

    def pending(self) -> list[int]:
        """Sequence numbers still waiting for acknowledgement, oldest first."""
        with self._lock:
            return sorted(self._sizes)

    def ack(self, seq: int) -> None:
        """The broker has the message: forget it."""
        with self._lock:
            if self._sizes.pop(seq, None) is None:
                return
            self._path(seq).unlink(missing_ok=True)
            self._acked += 1

    def stats(self) -> SpoolStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return SpoolStats(len(self._sizes), sum(self._sizes.values()), self._written,
                              self._acked, self._dropped, self._dropped_bytes)

    def _make_room(self, incoming: int) -> None:
        used = sum(self._sizes.values())
        for seq in sorted(self._sizes):
            if used + incoming <= self._max_bytes:
                break
            size = self._sizes.pop(seq)
            self._path(seq).unlink(missing_ok=True)
            used -= size
            self._dropped += 1
            self._dropped_bytes += size

    def _write(self, seq: int, blob: bytes) -> None:
        final = self._path(seq)
        temp = final.with_suffix(".tmp")
        try:
            with open(temp, "wb") as handle:
                handle.write(blob)
                if self._fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(temp, final)
            if self._fsync:
                dir_fd = os.open(self._dir, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            raise SpoolError(f"cannot write spool entry {final}: {exc}") from exc

    def _path(self, seq: int) -> Path:
        return self._dir / f"{seq:016d}{_SUFFIX}"

"""The on-disk spool: messages wait here until the backend has stored them.

The spool is one SQLite database in WAL mode with ``synchronous=FULL``: an append returns
only after the entry is on disk, so a power cut or ``kill -9`` at any moment leaves every
entry either whole or absent, never half-written. Removing the row is the acknowledgement:
by the backend's receipt, which names the message ids its store committed (each entry keeps
its ``msg_id`` for that, read from the payload as it is appended), or by the broker's PUBACK
for a publisher that runs without receipts.

PUBACKs (:meth:`Spool.ack_later`) are not a transaction of their own: the entries leave this
process's view of the spool at once and their rows go in the next append's transaction (or
:meth:`Spool.flush_acks`, when no append comes). A crash in between loses nothing: the rows
are still there, so those messages are sent again after the restart and the backend lands
each message id once. Entries appended here wait in memory too until the publisher has taken
them (:meth:`Spool.entries_after`), so sending does not read back from disk what was just
written to it; the copy in memory is bounded and only ever holds committed entries.

The spool is bounded in bytes. When a new message would exceed ``max_bytes`` entries are
evicted lowest priority class first and, within a class, oldest first: raw telemetry goes
before fault codes and health/crank events, so the messages a service centre needs most
survive a long outage. Everything evicted is counted per class, and the totals survive a
restart (they live in the same database). An entry the broker has but the backend has not
receipted yet is an entry like any other here: evicted in its turn, and counted.

The database says its layout in ``PRAGMA user_version``. A spool written before receipts
(version 0, no ``msg_id`` column) is migrated when it is opened: the column is added and
filled from the payloads, in one transaction, so its waiting entries are sent and receipted
like new ones.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from edge.errors import SpoolError
from edge.wire.contract import msg_id_of

_FILE = "spool.sqlite3"
_VERSION = 1
"""The layout ``_SCHEMA`` creates; 0 is a spool from before receipts (no ``msg_id``)."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entry (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    msg_id TEXT
);
CREATE INDEX IF NOT EXISTS entry_by_priority ON entry (priority, seq);
CREATE TABLE IF NOT EXISTS checkpoint (
    key TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS evicted (
    priority INTEGER PRIMARY KEY,
    messages INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
"""


_SECURE_DELETE = "PRAGMA secure_delete=FAST"
"""Zero deleted content only where that costs no extra write. Debian builds SQLite with
secure_delete on, which overwrites every page a deleted entry held: each acknowledged 35 kB
batch was written to the WAL a second time, as zeros, and checkpointed again."""

_CACHE = "PRAGMA cache_size=-256"
"""256 kB of page cache per connection, not SQLite's 2 MB: the spool is a queue, whose pages
are read once, soon after they were written (the OS holds them), so three connections' full
caches were only memory a gateway does not have (6 MB of the agent's 50)."""

_IDS_PER_STATEMENT = 500
"""Message ids (or sequence numbers) per DELETE, well under SQLite's limit on bound
parameters."""

KEEP_UNSENT_BYTES = 2**20
"""What a gateway's agent keeps in memory of just-appended entries for its publisher
(``Spool(keep_unsent_bytes=...)``, :meth:`Spool.entries_after`): on a full bus a round
appends one or two 35 kB batches, which the publisher takes within milliseconds; one that
falls behind (the link is down) reads the older entries from disk, as before. Off by default:
a process with many spools (the fleet simulator) would hold this much per vehicle."""

_TRACKED = 1024
"""Entries appended by this process whose size the spool keeps, so a PUBACK of one can be
deferred (:meth:`Spool.ack_later`) and still counted exactly. An entry beyond that many, or
one from before the process started, is deleted at once, as :meth:`Spool.ack_many` does."""


class Priority(IntEnum):
    """Eviction classes: a lower class is always evicted before a higher one."""

    TELEMETRY = 0
    EVENT = 1
    """Health and cranking events."""
    FAULT = 2
    """Fault codes, and vehicle info (the VIN: rare, and it says which car the data is of)."""


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One spooled message."""

    seq: int
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """Counters a gateway reports upstream; ``dropped*`` count evictions since the spool began.

    ``written`` and ``acked`` count since this process opened the spool: entries appended, and
    entries removed by an acknowledgement (the backend's receipt, or the broker's PUBACK for a
    publisher without receipts).
    """

    pending: int
    pending_bytes: int
    written: int
    acked: int
    dropped: int
    dropped_bytes: int
    dropped_by_priority: dict[str, int]


class Spool:
    """A bounded, crash-safe, ordered queue of messages on disk.

    Args:
        directory: where the spool's database lives; created if missing.
        max_bytes: bound on the bytes kept (payload plus topic); evicted beyond it.
        fsync: ``synchronous=FULL`` (every append durable); False (``OFF``) only for
            simulations, where the machine does not lose power.
        keep_unsent_bytes: keep up to this many bytes of the entries appended here in memory
            until the publisher takes them (:data:`KEEP_UNSENT_BYTES` for a gateway); 0 reads
            every entry back from disk.
    """

    def __init__(self, directory: str | Path, *, max_bytes: int = 256 * 2**20,
                 fsync: bool = True, keep_unsent_bytes: int = 0) -> None:
        self._dir = Path(directory)
        self._max_bytes = max_bytes
        self._keep_unsent = keep_unsent_bytes
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self._dir / _FILE, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'OFF'}")
            self._db.execute(_SECURE_DELETE)
            self._db.execute(_CACHE)
            self._db.executescript(_SCHEMA)
            self._migrate()
            # Acknowledgements go through their own connection without an fsync per commit:
            # an ack lost to a power cut only means the message is sent again, and the backend
            # lands each message id once. Appends keep synchronous=FULL.
            self._acks = sqlite3.connect(self._dir / _FILE, check_same_thread=False,
                                         isolation_level=None)
            self._acks.execute(f"PRAGMA synchronous={'NORMAL' if fsync else 'OFF'}")
            self._acks.execute(_SECURE_DELETE)
            self._acks.execute(_CACHE)
            # The publisher reads entries through a connection of its own: in WAL mode a
            # reader never waits for a writer, so sending does not queue behind an append's
            # fsync (appends and acknowledgements still take turns under self._lock).
            self._reader = sqlite3.connect(self._dir / _FILE, check_same_thread=False,
                                           isolation_level=None)
            self._reader.execute(_CACHE)
            count, used, top = self._db.execute(
                "SELECT count(*), coalesce(sum(size), 0), coalesce(max(seq), 0) FROM entry"
            ).fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"cannot open the spool in {self._dir}: {exc}") from exc
        self._count, self._used = int(count), int(used)
        """Rows in the database, and their bytes (acknowledged ones waiting for deletion too)."""
        self._written = self._acked = 0
        # In-memory state below (and the counters above) change under self._mem, held only
        # briefly: never across a query or an fsync, so a PUBACK never waits for the disk.
        self._mem = threading.Lock()
        self._unlinked: dict[int, int] = {}
        """Acknowledged entries whose rows the next append deletes: seq -> size."""
        self._unlinked_bytes = 0
        self._tracked: dict[int, int] = {}
        """Entries appended by this process and not acknowledged or evicted: seq -> size."""
        self._unsent: collections.OrderedDict[int, SpoolEntry] = collections.OrderedDict()
        """Entries appended here above ``_unsent_floor``, oldest first (committed ones only)."""
        self._unsent_bytes = 0
        self._unsent_floor = int(top)
        """Every entry in the database above this sequence number is in ``_unsent``."""

    def append(self, topic: str, payload: bytes, *, priority: Priority = Priority.TELEMETRY,
               checkpoint: tuple[str, int] | None = None) -> int:
        """Store a message durably (evicting to make room) and return its sequence number.

        ``checkpoint`` (key, position) is recorded in the same transaction: a replay that is
        killed resumes after the last frame whose data is in the spool, never before or after.

        Raises:
            SpoolError: the disk refused the write; the message was not stored.
        """
        return self.append_many([(topic, payload, priority)], checkpoint=checkpoint)[0]

    def append_many(self, messages: Sequence[tuple[str, bytes, Priority]], *,
                    checkpoint: tuple[str, int] | None = None) -> list[int]:
        """Store several messages ``(topic, payload, priority)`` in one durable transaction.

        One commit, so one fsync, for all of them: either all are stored or none is. Returns
        their sequence numbers, in order.

        Raises:
            SpoolError: the disk refused the write; no message was stored.
        """
        seqs: list[int] = []
        with self._lock:
            with self._mem:
                unlinked = list(self._unlinked)
            count, used = self._count, self._used
            try:
                self._db.execute("BEGIN IMMEDIATE")
                count, used, _ = self._delete(self._db, unlinked, count, used)
                sizes = []
                for topic, payload, priority in messages:
                    size = len(payload) + len(topic)
                    count, used = self._make_room(size, count, used, unlinked)
                    cursor = self._db.execute(
                        "INSERT INTO entry (priority, topic, payload, size, msg_id) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (int(priority), topic, payload, size, msg_id_of(payload)))
                    assert cursor.lastrowid is not None
                    seqs.append(cursor.lastrowid)
                    sizes.append(size)
                    count += 1
                    used += size
                if checkpoint is not None:
                    self._db.execute("INSERT OR REPLACE INTO checkpoint VALUES (?, ?)",
                                     checkpoint)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise SpoolError(f"cannot write to the spool in {self._dir}: {exc}") from exc
            with self._mem:
                self._count, self._used = count, used
                self._forget_unlinked(unlinked)
                self._written += len(seqs)
                for seq, size, (topic, payload, _) in zip(seqs, sizes, messages, strict=True):
                    if len(self._tracked) < _TRACKED:
                        self._tracked[seq] = size
                    self._unsent[seq] = SpoolEntry(seq, topic, payload)
                    self._unsent_bytes += len(payload)
                while self._unsent and (self._unsent_bytes > self._keep_unsent
                                        or not self._keep_unsent):
                    seq, entry = self._unsent.popitem(last=False)
                    self._unsent_bytes -= len(entry.payload)
                    self._unsent_floor = seq
            return seqs

    def _delete(self, db: sqlite3.Connection, seqs: list[int], count: int,
                used: int) -> tuple[int, int, list[int]]:
        """Delete these rows; the row count and bytes after it, and the rows there were."""
        gone: list[int] = []
        for start in range(0, len(seqs), _IDS_PER_STATEMENT):
            chunk = seqs[start:start + _IDS_PER_STATEMENT]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(f"DELETE FROM entry WHERE seq IN ({marks}) RETURNING seq, size",
                              chunk).fetchall()
            count -= len(rows)
            used -= sum(int(r[1]) for r in rows)
            gone += [int(r[0]) for r in rows]
        return count, used, gone

    def _forget_unlinked(self, seqs: list[int]) -> None:
        """These deferred acknowledgements are in the database now (under ``_mem``)."""
        for seq in seqs:
            size = self._unlinked.pop(seq, None)
            if size is not None:
                self._unlinked_bytes -= size

    def checkpoint(self, key: str) -> int | None:
        """The position last recorded under ``key``, or None."""
        with self._lock:
            row = self._db.execute("SELECT position FROM checkpoint WHERE key = ?",
                                   (key,)).fetchone()
        return int(row[0]) if row else None

    def read(self, seq: int) -> SpoolEntry | None:
        """The entry with this number, or None when it was acknowledged or evicted."""
        with self._mem:
            if seq in self._unlinked:
                return None
        with self._read_lock:
            row = self._reader.execute("SELECT topic, payload FROM entry WHERE seq = ?",
                                   (seq,)).fetchone()
        return SpoolEntry(seq, row[0], bytes(row[1])) if row else None

    def pending(self) -> list[int]:
        """Sequence numbers still waiting for acknowledgement, oldest first."""
        return self.pending_after(0, limit=-1)

    def pending_after(self, seq: int, *, limit: int = 64) -> list[int]:
        """Up to ``limit`` (all when negative) waiting sequence numbers above ``seq``."""
        with self._mem:
            unlinked = set(self._unlinked)
        with self._read_lock:
            rows = self._reader.execute("SELECT seq FROM entry WHERE seq > ? ORDER BY seq LIMIT ?",
                                        (seq, -1 if limit < 0 else limit + len(unlinked)))
            found = [r[0] for r in rows if r[0] not in unlinked]
        return found if limit < 0 else found[:limit]

    def empty(self) -> bool:
        """True when nothing waits for an acknowledgement (no query: a kept count)."""
        with self._mem:
            return self._count == len(self._unlinked)

    def ack(self, seq: int) -> None:
        """The message is acknowledged: forget it (a second ack of one entry is harmless)."""
        self.ack_many([seq])

    def ack_many(self, seqs: list[int]) -> None:
        """Forget several acknowledged messages, by sequence number, in one transaction."""
        if not seqs:
            return
        with self._lock:
            count, used, gone = self._delete(self._acks, list(seqs), self._count, self._used)
            with self._mem:
                self._count, self._used = count, used
                for seq in gone:
                    self._deleted(seq)

    def ack_later(self, seqs: list[int]) -> None:
        """Acknowledged: forget these entries now, delete their rows with the next append.

        The publisher's PUBACK path: the entries leave :meth:`pending`, :meth:`empty`,
        :meth:`read` and the counters at once, without a transaction (and an fsync wait) of
        their own; their rows go in the next append's transaction, or :meth:`flush_acks`.
        Until then a crash leaves them in the database, to be sent again after the restart
        (the backend lands each message id once). An entry this process did not append (or
        one of more than ``_TRACKED`` waiting) is deleted at once, as :meth:`ack_many` does.
        """
        rest = []
        with self._mem:
            for seq in seqs:
                size = self._tracked.pop(seq, None)
                if size is None:
                    if seq not in self._unlinked:
                        rest.append(seq)
                    continue
                self._unlinked[seq] = size
                self._unlinked_bytes += size
                self._acked += 1
                self._drop_unsent(seq)
        if rest:
            self.ack_many(rest)

    def flush_acks(self) -> None:
        """Delete the rows of the deferred acknowledgements now (no append is coming).

        Raises:
            SpoolError: the database refused; the acknowledgements stay deferred (the next
                append or flush writes them).
        """
        with self._mem:
            if not self._unlinked:
                return  # (no lock: an idle publisher asks twice a second)
        with self._lock:
            with self._mem:
                unlinked = list(self._unlinked)
            if not unlinked:
                return
            try:
                count, used, _ = self._delete(self._acks, unlinked, self._count, self._used)
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot write acknowledgements to the spool in {self._dir}: "
                                 f"{exc}") from exc
            with self._mem:
                self._count, self._used = count, used
                self._forget_unlinked(unlinked)

    def _deleted(self, seq: int) -> None:
        """An acknowledged entry's row is deleted: forget it everywhere, and count it as
        acknowledged unless :meth:`ack_later` already did (under ``_mem``)."""
        self._tracked.pop(seq, None)
        self._drop_unsent(seq)
        if seq in self._unlinked:
            self._forget_unlinked([seq])
        else:
            self._acked += 1

    def _drop_unsent(self, seq: int) -> None:
        """The entry is gone: the publisher must not be handed it (under ``_mem``)."""
        entry = self._unsent.pop(seq, None)
        if entry is not None:
            self._unsent_bytes -= len(entry.payload)

    def receipt(self, msg_ids: Sequence[str]) -> list[tuple[int, str]]:
        """The backend has stored these messages: forget every entry carrying one of the ids.

        Returns ``(seq, msg_id)`` of the entries removed; ids the spool does not hold (already
        receipted, evicted, or never ours) are ignored, so a receipt that comes twice is
        harmless. Like PUBACKs, receipts are written without an fsync of their own: one lost to
        a power cut only means the message is sent again and receipted as a duplicate.
        """
        removed: list[tuple[int, str]] = []
        ids = list(dict.fromkeys(msg_ids))
        with self._lock:
            for start in range(0, len(ids), _IDS_PER_STATEMENT):
                chunk = ids[start:start + _IDS_PER_STATEMENT]
                marks = ",".join("?" * len(chunk))
                rows = self._acks.execute(
                    f"DELETE FROM entry WHERE msg_id IN ({marks}) RETURNING seq, msg_id, size",
                    chunk).fetchall()
                with self._mem:
                    self._count -= len(rows)
                    self._used -= sum(int(r[2]) for r in rows)
                    for row in rows:
                        self._deleted(int(row[0]))
                removed += [(int(r[0]), str(r[1])) for r in rows]
        return removed

    def entries_after(self, seq: int, *, limit: int = 64) -> list[SpoolEntry]:
        """Up to ``limit`` waiting entries above ``seq``, oldest first.

        From memory when the entries above ``seq`` are all among those this process appended
        and has kept (the publisher keeping up: no disk read of what was just written), else
        in one query. Asking for the entries above ``seq`` also says those up to it are
        taken: they are not kept for the publisher any longer.
        """
        with self._mem:
            if seq >= self._unsent_floor:
                unsent = self._unsent
                while unsent and next(iter(unsent)) <= seq:
                    _, entry = unsent.popitem(last=False)
                    self._unsent_bytes -= len(entry.payload)
                self._unsent_floor = seq
                return list(itertools.islice(unsent.values(), limit))
            unlinked = set(self._unlinked)
        with self._read_lock:
            rows = self._reader.execute("SELECT seq, topic, payload FROM entry WHERE seq > ? "
                                        "ORDER BY seq LIMIT ?",
                                        (seq, limit + len(unlinked))).fetchall()
        entries = [SpoolEntry(r[0], r[1], bytes(r[2])) for r in rows if r[0] not in unlinked]
        return entries[:limit]

    def stats(self) -> SpoolStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            rows = self._db.execute("SELECT priority, messages, bytes FROM evicted").fetchall()
            by_class = {Priority(p).name.lower(): int(m) for p, m, _ in rows}
            with self._mem:
                return SpoolStats(self._count - len(self._unlinked),
                                  self._used - self._unlinked_bytes, self._written,
                                  self._acked, sum(int(r[1]) for r in rows),
                                  sum(int(r[2]) for r in rows), by_class)

    def close(self) -> None:
        """Close the database (the entries stay on disk for the next start).

        Deferred acknowledgements are written first, so a clean stop sends nothing twice.

        Raises:
            SpoolError: the deferred acknowledgements could not be written (the database is
                closed all the same; those entries are sent again at the next start).
        """
        try:
            self.flush_acks()
        finally:
            with self._lock, self._read_lock:
                self._reader.close()
                self._acks.close()
                self._db.close()

    def _make_room(self, incoming: int, count: int, used: int,
                   unlinked: list[int]) -> tuple[int, int]:
        """Evict lowest class first, oldest first, until ``incoming`` fits (inside BEGIN,
        ``count`` rows of ``used`` bytes so far); the rows and bytes after it.

        An entry whose PUBACK came during this transaction is deleted, not counted as evicted
        (the broker has it), and added to ``unlinked``, the deferred acknowledgements this
        transaction writes.
        """
        while count and used + incoming > self._max_bytes:
            seq, priority, size = self._db.execute(
                "SELECT seq, priority, size FROM entry ORDER BY priority, seq LIMIT 1"
            ).fetchone()
            self._db.execute("DELETE FROM entry WHERE seq = ?", (seq,))
            with self._mem:
                acked = seq in self._unlinked
                self._tracked.pop(seq, None)
                self._drop_unsent(seq)
            if acked:
                unlinked.append(seq)
            else:
                self._db.execute(
                    "INSERT INTO evicted VALUES (?, 1, ?) ON CONFLICT (priority) DO UPDATE SET "
                    "messages = messages + 1, bytes = bytes + excluded.bytes", (priority, size))
            count -= 1
            used -= int(size)
        return count, used

    def _migrate(self) -> None:
        """Bring a spool written by an older agent to ``_VERSION`` (in one transaction).

        Version 0 had no ``msg_id``: the column is added and filled from each payload's
        first bytes (a full parse only for payloads this build did not encode), so entries
        that waited through the upgrade can be receipted.
        """
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version >= _VERSION:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(entry)")}
            if "msg_id" not in columns:
                self._db.execute("ALTER TABLE entry ADD COLUMN msg_id TEXT")
                last = 0
                while rows := self._db.execute(
                        "SELECT seq, payload FROM entry WHERE seq > ? ORDER BY seq LIMIT 256",
                        (last,)).fetchall():
                    self._db.executemany("UPDATE entry SET msg_id = ? WHERE seq = ?",
                                         [(msg_id_of(bytes(p)), s) for s, p in rows])
                    last = int(rows[-1][0])
            self._db.execute("CREATE INDEX IF NOT EXISTS entry_by_msg_id ON entry (msg_id)")
            self._db.execute(f"PRAGMA user_version = {_VERSION}")
            self._db.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise

    def _rollback(self) -> None:
        """After a failed append: the counters from the database, and the publisher reads
        from disk until it has passed what is there (the transaction's evictions may have
        dropped entries from memory that are still stored)."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")
        count, used, floor = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0), coalesce(max(seq), 0) FROM entry"
        ).fetchone()
        with self._mem:
            self._count, self._used = int(count), int(used)
            self._unsent.clear()
            self._unsent_bytes = 0
            self._unsent_floor = max(self._unsent_floor, int(floor))

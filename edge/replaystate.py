"""Where ``fleetcare edge replay`` keeps its spool between runs, so that a killed replay resumes.

Without ``--spool-dir`` a replay's spool lives in a *state directory* named after what is
replayed: each log's resolved path, size and modification time, in order, and the vehicle
id. Running the same command again after a ``kill -9``, a crash or a stop finds the same
directory: the spool's checkpoint says how many frames of the recording are already in it
(it is written in the same transaction as the data), the messages the broker never
acknowledged are sent again (the backend lands each message id once) and reading resumes
after the checkpoint, so the rows landed are the rows an uninterrupted replay lands. A log
that changed (another size or modification time) is another replay and starts afresh.

The directories live under ``--state-dir``, else ``$XDG_STATE_HOME/fleetcare/replay``, else
``~/.local/state/fleetcare/replay``: the XDG base-directory place for state that must
survive a restart but is not worth a backup.

A state directory exists only while it holds work: it is removed when its replay has read
the recordings to their end and the broker has acknowledged everything, and when a run ends
having stored nothing to resume (bad input, an unreachable broker). One replay at a time
uses a state directory (an advisory lock); a second one is refused with one line rather than
spooling the same frames twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from edge.errors import SpoolError
from edge.source import replay_checkpoint_key
from edge.spool import Spool

_LOCK = "lock"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_root() -> Path:
    """``$XDG_STATE_HOME/fleetcare/replay``, or ``~/.local/state/fleetcare/replay``.

    A relative ``XDG_STATE_HOME`` is ignored, as the XDG specification asks.
    """
    base = os.environ.get("XDG_STATE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "fleetcare" / "replay"


def state_name(logs: Sequence[str | Path], vehicle: str) -> str:
    """The state directory's name: readable prefix, then a digest of what is replayed.

    Raises:
        OSError: a log vanished since it was checked.
    """
    digest = hashlib.sha256()
    for log in logs:
        path = Path(log)
        info = path.stat()
        digest.update(os.fsencode(path.resolve()))
        digest.update(f"\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    digest.update(b"vehicle\0" + vehicle.encode("utf-8", "surrogateescape"))
    label = _UNSAFE.sub("_", f"{vehicle}-{Path(logs[0]).stem}")[:48]
    return f"{label}-{digest.hexdigest()[:16]}"


class ReplayState:
    """One replay's state directory, created and locked on entry (a context manager).

    Args:
        logs: the recordings, in the order they are replayed.
        vehicle: the vehicle id they are replayed as.
        root: the parent of every state directory (default :func:`default_root`).
    """

    def __init__(self, logs: Sequence[str | Path], vehicle: str,
                 root: Path | None = None) -> None:
        self.root = root if root is not None else default_root()
        self.directory = self.root / state_name(logs, vehicle)
        """The replay's spool parent (its spool is ``directory / vehicle``)."""
        self._vehicle = vehicle
        self._checkpoint_key = replay_checkpoint_key(logs)
        self._lock: int | None = None

    def __enter__(self) -> ReplayState:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        """Create the directory and take its lock.

        Raises:
            SpoolError: the directory cannot be created, or another replay holds it.
        """
        while self._lock is None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise SpoolError(f"cannot use the replay state directory {self.directory}: "
                                 f"{exc.strerror or exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise SpoolError(f"another replay of these logs as vehicle {self._vehicle} is "
                                 f"running (it holds {self.directory}); let it finish or stop "
                                 "it first") from None
            # The replay that held the lock may have removed the directory meanwhile: then
            # this lock guards nothing, and the directory is made again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.directory / _LOCK))
            except OSError:
                same = False
            if same:
                self._lock = fd
            else:
                os.close(fd)

    def release(self) -> None:
        """Let the next replay have the directory (idempotent)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def holds_work(self) -> bool:
        """True while the spool holds messages to send or a position to resume from."""
        spool_dir = self.directory / self._vehicle
        if not spool_dir.is_dir():
            return False
        spool = Spool(spool_dir, fsync=False)
        try:
            return not spool.empty() or bool(spool.checkpoint(self._checkpoint_key))
        finally:
            spool.close()

    def clear(self) -> None:
        """Forget any earlier progress (``--fresh``): the next run reads from the start."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.directory / self._vehicle)

    def remove(self) -> None:
        """Remove the directory (its replay is done, or left nothing) and release it."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.release()

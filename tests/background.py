"""A long-running command in the background, for tests: its stderr collected line by line as
it comes, so a test can wait for a start-up line, stop the command with SIGTERM and read what
it printed on the way out.

One helper for every test that runs a service (``fleetcare ingest``, ``fleetcare broker``, a
documented shell line), so each waits, stops and reports a failure the same way.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.polling import wait_until

TAIL = 30
"""The last stderr lines a failure message shows: enough to see why, short enough to read."""


class Background:
    """``argv`` running in ``cwd`` with ``env`` (this process's own when None); stdout to
    ``stdout_path`` (or discarded).

    ``name`` says which command failed in a message; ``wait_s`` bounds each wait that gives
    no timeout of its own; ``watchdog_s``, when given, kills the command that long after its
    start, so a hung one fails its test instead of hanging the whole run.
    """

    def __init__(self, argv: Sequence[str], *, cwd: Path | None = None,
                 env: Mapping[str, str] | None = None, stdout_path: Path | None = None,
                 name: str | None = None, wait_s: float = 300.0,
                 watchdog_s: float | None = None) -> None:
        self.argv = list(argv)
        self.name = name if name is not None else " ".join(self.argv)
        self.wait_s = wait_s
        self._lines: list[str] = []
        self._lock = threading.Lock()
        out = stdout_path.open("wb") if stdout_path is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(self.argv, cwd=cwd,
                                        env=dict(env) if env is not None else None,
                                        stdout=out, stderr=subprocess.PIPE, text=True)
        if stdout_path is not None:
            out.close()  # type: ignore[union-attr]  # the child holds its own copy
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._watchdog: threading.Timer | None = None
        if watchdog_s is not None:
            self._watchdog = threading.Timer(watchdog_s, self.process.kill)
            self._watchdog.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    @property
    def lines(self) -> list[str]:
        """The stderr lines read so far."""
        with self._lock:
            return list(self._lines)

    def tail(self) -> str:
        """The last stderr lines read so far, for a failure message."""
        return "\n".join(self.lines[-TAIL:])

    def _wait(self, matches: Callable[[str], bool], count: int, timeout: float | None,
              what: str) -> list[str]:
        """The first ``count`` stderr lines that ``matches``; AssertionError saying ``what``
        was missing when the command ends or ``timeout`` passes before there are as many."""
        def found() -> list[str]:
            return [line for line in self.lines if matches(line)]

        def done() -> bool:
            return len(found()) >= count or (
                self.process.poll() is not None and not self._reader.is_alive())
        wait_until(done, timeout=self.wait_s if timeout is None else timeout)
        lines = found()
        assert len(lines) >= count, (
            f"{self.name}: {len(lines)} of {count} {what}; stderr so far:\n{self.tail()}")
        return lines[:count]

    def wait_for_line(self, prefix: str | tuple[str, ...], timeout: float | None = None) -> str:
        """The first stderr line starting with ``prefix`` (or one of them); AssertionError
        when the command ends or ``timeout`` passes without one."""
        [line] = self._wait(lambda line: line.startswith(prefix), 1, timeout,
                            f"lines starting {prefix!r}")
        return line

    def wait_for_text(self, *needles: str, count: int = 1,
                      timeout: float | None = None) -> list[str]:
        """The first ``count`` stderr lines (since the start) that contain one of ``needles``:
        a log line's text, where its prefix (a timestamp, a logger) varies."""
        return self._wait(lambda line: any(n in line for n in needles), count, timeout,
                          f"lines containing one of {needles!r}")

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM, then wait for the exit and the last stderr line; the exit status (a
        command that does not stop within ``timeout`` is killed: a negative status)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
        self._reader.join(timeout=timeout)
        return code

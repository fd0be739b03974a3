"""A long-running command in the background, for tests: its stderr collected line by line as
it comes, so a test can wait for a start-up line, stop the command with SIGTERM and read what
it printed on the way out."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.polling import wait_until


class Background:
    """``argv`` running in ``cwd`` with ``env``; stdout to ``stdout_path`` (or discarded)."""

    def __init__(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
                 stdout_path: Path | None = None) -> None:
        self.argv = list(argv)
        self._lines: list[str] = []
        self._lock = threading.Lock()
        out = stdout_path.open("wb") if stdout_path is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(self.argv, cwd=cwd, env=dict(env), stdout=out,
                                        stderr=subprocess.PIPE, text=True)
        if stdout_path is not None:
            out.close()  # type: ignore[union-attr]  # the child holds its own copy
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

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

    def wait_for_line(self, prefix: str | tuple[str, ...], timeout: float = 300.0) -> str:
        """The first stderr line starting with ``prefix`` (or one of them); AssertionError
        when the command ends or ``timeout`` passes without one."""
        def seen() -> bool:
            return any(line.startswith(prefix) for line in self.lines) or (
                self.process.poll() is not None and not self._reader.is_alive())
        wait_until(seen, timeout=timeout)
        found = [line for line in self.lines if line.startswith(prefix)]
        assert found, f"{self.argv}: no line starting {prefix!r}; stderr: {self.lines}"
        return found[0]

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM, then wait for the exit and the last stderr line; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=timeout)
        return code

"""A progress bar for long commands (``sim run``, ``edge replay``, ``fleet import``), on
terminals only.

"N of M" with a bar and the time left, drawn by rich on stderr when stderr is a terminal;
nothing at all when it is a pipe, a file or a journal, so logs and captured output stay
clean. rich is imported only when a bar is drawn: a gateway's ``edge run`` under systemd
never loads it.

It lives in edge because a gateway has edge alone, and the backend's command line may use it
too: the one exception to "the backend uses only ``edge.wire``" (``pyproject.toml``'s
import-linter contract names it), since the command line is one front for both packages.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Final, TextIO

__all__ = ["PROGRESS_LOGGER", "Progress", "bar_from_log"]

PROGRESS_LOGGER: Final = "fleetcare.progress"
"""Work that runs far from the command line (a Prefect flow's task, in a thread of its own)
reports its steps as INFO records on a child of this logger, with
``extra={"progress": (done, total)}``: no callback has to travel through a flow's
parameters. Nothing prints them unless a command draws them (:func:`bar_from_log`)."""


class Progress:
    """``with Progress("simulating", days, unit="days") as bar: bar.update(done)``.

    Args:
        label: what is being counted, shown left of the bar.
        total: the M of "N of M".
        unit: shown after the counts ("days", "frames").
        enabled: True draws even when ``stream`` is not a terminal (an explicit
            ``--progress``), False never draws, None (the default) draws on a terminal only.
        stream: where to draw (default: ``sys.stderr`` at the time of entering).
    """

    def __init__(self, label: str, total: int, *, unit: str = "",
                 enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self.label, self.total, self.unit = label, max(total, 0), unit
        self._enabled, self._stream = enabled, stream
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        stream = self._stream or sys.stderr
        draw = self._enabled if self._enabled is not None else stream.isatty()
        if draw:
            import rich.console
            import rich.progress as bars

            console = rich.console.Console(file=stream, force_terminal=True)
            self._bar = bars.Progress(
                bars.TextColumn(self.label), bars.BarColumn(), bars.MofNCompleteColumn(),
                bars.TextColumn(self.unit), bars.TimeRemainingColumn(), console=console)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def update(self, done: int) -> None:
        """``done`` of the total are finished (a no-op when nothing is drawn)."""
        if self._bar is not None:
            self._bar.update(self._task, completed=min(done, self.total))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class _BarHandler(logging.Handler):
    """Draws the ``progress`` of the records it gets; the bar starts with the first one,
    which brings the total."""

    def __init__(self, label: str, unit: str, enabled: bool | None,
                 stream: TextIO | None) -> None:
        super().__init__(logging.INFO)
        self._args = label, unit, enabled, stream
        self._bar: Progress | None = None

    def emit(self, record: logging.LogRecord) -> None:
        step = getattr(record, "progress", None)
        if not (isinstance(step, tuple) and len(step) == 2):
            return
        done, total = int(step[0]), int(step[1])
        if self._bar is None:
            label, unit, enabled, stream = self._args
            self._bar = Progress(label, total, unit=unit, enabled=enabled, stream=stream)
            self._bar.__enter__()
        self._bar.update(done)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@contextlib.contextmanager
def bar_from_log(name: str, label: str, *, unit: str = "", enabled: bool | None = None,
                 stream: TextIO | None = None) -> Iterator[None]:
    """Draw the steps reported on ``PROGRESS_LOGGER.name`` while the block runs (see
    :data:`PROGRESS_LOGGER`); the records go nowhere else meanwhile, and after it the logger
    is as it was."""
    logger = logging.getLogger(f"{PROGRESS_LOGGER}.{name}")
    handler = _BarHandler(label, unit, enabled, stream)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        handler.finish()

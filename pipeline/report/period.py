"""The reporting period: which days the figures cover and up to when events are counted.

A manager asks about "the last 30 days" or "January"; both are whole UTC days, the last one
included. Windows that a KPI waits out (3 days to book, 30 minutes to answer a critical fault)
are judged only once they have closed by :attr:`Period.as_of`, so a lead sent an hour ago is
not counted as a miss.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from pipeline.errors import TerminalPipelineError

DEFAULT_DAYS: Final = 30


@dataclass(frozen=True, slots=True)
class Period:
    """The days ``since`` to ``until`` (both included), seen on ``today`` at ``now``."""

    since: dt.date
    until: dt.date
    today: dt.date
    now: dt.datetime

    @property
    def start(self) -> dt.datetime:
        """Midnight UTC opening ``since``."""
        return dt.datetime.combine(self.since, dt.time(), dt.UTC)

    @property
    def end(self) -> dt.datetime:
        """Midnight UTC closing ``until`` (exclusive)."""
        return dt.datetime.combine(self.until + dt.timedelta(days=1), dt.time(), dt.UTC)

    @property
    def as_of(self) -> dt.datetime:
        """Events up to here count: the period's end, or now when the period is still open."""
        return min(self.end, self.now)

    @property
    def days(self) -> int:
        """How many days the period covers."""
        return (self.until - self.since).days + 1

    @property
    def today_start(self) -> dt.datetime:
        """Midnight UTC opening ``today`` (the call list's day)."""
        return dt.datetime.combine(self.today, dt.time(), dt.UTC)

    @property
    def today_end(self) -> dt.datetime:
        """Midnight UTC closing ``today``."""
        return self.today_start + dt.timedelta(days=1)


def resolve_period(*, today: dt.date | None = None, period_days: int | None = None,
                   since: dt.date | None = None, until: dt.date | None = None,
                   now: dt.datetime | None = None) -> Period:
    """The period the options name; raises :class:`TerminalPipelineError` saying what to fix.

    ``until`` defaults to ``today``; ``since`` to ``period_days`` (30) days ending on ``until``.
    ``now`` defaults to the real time, or to the end of ``today`` when ``today`` is in the past
    (so a report for a past day is the same whenever it is run).
    """
    real_now = dt.datetime.now(dt.UTC)
    today = today or real_now.date()
    if now is None:
        day_end = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC)
        now = min(real_now, day_end)
    if since is not None and period_days is not None:
        raise TerminalPipelineError("give either --period-days or --since, not both")
    days = DEFAULT_DAYS if period_days is None else period_days
    if days < 1:
        raise TerminalPipelineError(f"--period-days must be 1 or more, not {days}")
    until = until or today
    since = since or until - dt.timedelta(days=days - 1)
    if since > until:
        raise TerminalPipelineError(
            f"--since {since} is after --until {until}: give a start on or before the end")
    return Period(since, until, today, now)

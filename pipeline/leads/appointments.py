"""Proposing an appointment that the centre can really honour: a bay and a technician free.

``centre_capacity`` holds, per centre and day, the bookable bay slots (``free_slots``) and the
technician hours not yet planned (``technician_hours``; NULL where a centre does not track
them). A proposal takes one slot and the work's labour hours on the first day that has both,
after today and within the predicted horizon, so the car is seen before it is expected to
fail. A superseded proposal gives both back.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import duckdb

WINDOW_START: Final = dt.time(8)
WINDOW_HOURS: Final = 9


def book_slot(
    con: duckdb.DuckDBPyConnection, centre_id: str, today: dt.date, horizon_days: int,
    labour_hours: float = 0.0,
) -> dict[str, Any] | None:
    """Hold the first day with a free bay and enough technician hours; None if there is none.

    The caller owns the transaction: the hold and the lead that carries it commit together.
    """
    row = con.execute(
        "SELECT day FROM centre_capacity WHERE centre_id = ? AND day > ? AND day <= ?"
        " AND free_slots > 0 AND (technician_hours IS NULL OR technician_hours >= ?)"
        " ORDER BY day LIMIT 1",
        [centre_id, today, today + dt.timedelta(days=horizon_days), labour_hours]).fetchone()
    if row is None:
        return None
    day: dt.date = row[0]
    con.execute("UPDATE centre_capacity SET free_slots = free_slots - 1,"
                " technician_hours = technician_hours - ? WHERE centre_id = ? AND day = ?",
                [labour_hours, centre_id, day])
    start = dt.datetime.combine(day, WINDOW_START, tzinfo=dt.UTC)
    return {"centre_id": centre_id, "day": day.isoformat(), "window_start": iso(start),
            "window_end": iso(start + dt.timedelta(hours=WINDOW_HOURS)),
            "labour_hours": labour_hours}


def release_slot(con: duckdb.DuckDBPyConnection, appointment: dict[str, Any] | None) -> None:
    """Give back the bay and technician hours a superseded proposal had held."""
    if not appointment:
        return
    con.execute("UPDATE centre_capacity SET free_slots = free_slots + 1,"
                " technician_hours = technician_hours + ? WHERE centre_id = ? AND day = ?",
                [float(appointment.get("labour_hours") or 0.0), appointment["centre_id"],
                 dt.date.fromisoformat(appointment["day"])])


def iso(ts: dt.datetime) -> str:
    """``ts`` in UTC as ISO 8601 with a ``Z`` suffix (the form every lead timestamp takes)."""
    return ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")

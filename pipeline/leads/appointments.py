"""Proposing an appointment that the centre can really honour: a bay and a technician free.

``centre_capacity`` holds, per centre and day, the bookable bay slots (``free_slots``) and the
technician hours not yet planned (``technician_hours``; NULL where a centre does not track
them). A proposal takes one slot and the work's labour hours on the first day that has both,
after today and within the predicted horizon, so the car is seen before it is expected to
fail. A superseded proposal gives both back.

Days are the centre's own: "today", the proposed day and the window of hours are read in the
centre's time zone (``service_centres.timezone``; UTC where the register has none), because
the customer drives to the centre, not to UTC. Each proposal names the bay it holds
and its hours (``appointment_bays``): bays the dealer system booked itself (the bays its
``free_slots`` figure leaves out) keep the lowest numbers; a proposal takes the bay free
earliest that day, from opening time or after the window another proposal holds in it.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from typing import Any, Final

import duckdb

WINDOW_START: Final = dt.time(8)
"""Local time the centre takes cars in."""
WINDOW_HOURS: Final = 9
"""The longest window (a working day); shorter work gets a window of its labour hours."""


def centre_zone(name: str | None) -> zoneinfo.ZoneInfo:
    """The centre's time zone; UTC when the register names none (or one unknown here)."""
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def book_slot(
    con: duckdb.DuckDBPyConnection, centre_id: str, now: dt.datetime, horizon_days: int,
    labour_hours: float = 0.0, *, timezone: str | None = None, lead_id: str = "",
) -> dict[str, Any] | None:
    """Hold the first day with a free bay and enough technician hours; None if there is none.

    ``now`` is read in the centre's ``timezone``: the first day offered is the centre's
    tomorrow. The caller owns the transaction: the hold and the lead that carries it commit
    together.
    """
    zone = centre_zone(timezone)
    today = now.astimezone(zone).date()
    row = con.execute(
        "SELECT c.day, c.free_slots, s.bays FROM centre_capacity c"
        " JOIN service_centres s USING (centre_id) WHERE c.centre_id = ? AND c.day > ?"
        " AND c.day <= ? AND c.free_slots > 0"
        " AND (c.technician_hours IS NULL OR c.technician_hours >= ?) ORDER BY c.day LIMIT 1",
        [centre_id, today, today + dt.timedelta(days=horizon_days), labour_hours]).fetchone()
    if row is None:
        return None
    day, free_slots, bays = row
    hours = min(WINDOW_HOURS, max(1, math.ceil(labour_hours)))
    bay, start = _free_bay(con, centre_id, day, int(free_slots), int(bays), zone)
    end = start + dt.timedelta(hours=hours)
    con.execute("UPDATE centre_capacity SET free_slots = free_slots - 1,"
                " technician_hours = technician_hours - ? WHERE centre_id = ? AND day = ?",
                [labour_hours, centre_id, day])
    con.execute("INSERT INTO appointment_bays VALUES (?, ?, ?, ?, ?, ?)",
                [centre_id, day, bay, start, end, lead_id])
    return {"centre_id": centre_id, "day": day.isoformat(), "timezone": zone.key,
            "local_start": start.isoformat(), "local_end": end.isoformat(),
            "window_start": iso(start), "window_end": iso(end), "bay": bay,
            "labour_hours": labour_hours,
            "text": f"{start:%a %d %b %Y}, {start:%H:%M}–{end:%H:%M} ({zone.key}), bay {bay}"}


def _free_bay(con: duckdb.DuckDBPyConnection, centre_id: str, day: dt.date, free_slots: int,
              bays: int, zone: zoneinfo.ZoneInfo) -> tuple[int, dt.datetime]:
    """The bay free earliest that day, and from when: bays the dealer system booked itself
    (those its free-slot figure leaves out, lowest numbers first) are skipped, and a bay
    another proposal holds is free after that proposal's window."""
    held = con.execute(
        "SELECT bay, max(ends_at), count(*) FROM appointment_bays"
        " WHERE centre_id = ? AND day = ? GROUP BY bay", [centre_id, day]).fetchall()
    busy_until = {int(b): end.astimezone(zone) for b, end, _ in held}
    ours = sum(int(n) for _, _, n in held)
    booked_by_dms = min(bays - 1, max(0, bays - free_slots - ours))
    opening = dt.datetime.combine(day, WINDOW_START, tzinfo=zone)
    choices = [(max(opening, busy_until.get(b, opening)), b)
               for b in range(booked_by_dms + 1, bays + 1)]
    start, bay = min(choices)
    return bay, start


def release_slot(con: duckdb.DuckDBPyConnection, appointment: dict[str, Any] | None) -> None:
    """Give back the bay and technician hours a superseded proposal had held."""
    if not appointment:
        return
    day = dt.date.fromisoformat(appointment["day"])
    con.execute("UPDATE centre_capacity SET free_slots = free_slots + 1,"
                " technician_hours = technician_hours + ? WHERE centre_id = ? AND day = ?",
                [float(appointment.get("labour_hours") or 0.0), appointment["centre_id"], day])
    if appointment.get("bay") is not None:
        con.execute("DELETE FROM appointment_bays WHERE centre_id = ? AND day = ? AND bay = ?"
                    " AND starts_at = ?", [appointment["centre_id"], day,
                                           int(appointment["bay"]),
                                           dt.datetime.fromisoformat(appointment["local_start"])])


def iso(ts: dt.datetime) -> str:
    """``ts`` in UTC as ISO 8601 with a ``Z`` suffix (the form every lead timestamp takes)."""
    return ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")

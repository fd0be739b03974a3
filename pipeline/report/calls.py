"""Whom each centre should call today: customer, vehicle, what about, and by when.

The list is what the store says is outstanding at the end of ``today`` (or now, if today is
not over), most urgent first:

1. **Critical faults** not yet answered by the centre: arrange roadside assistance now.
2. **First contact due**: a lead the CRM received but the centre has not answered, once its
   contact promise falls due (``immediate`` at once, ``within_48h`` 48 h after it reached the
   CRM, ``routine`` after the 3 days the booking KPI allows).
3. **Follow-ups** falling due today, and older ones whose task never reached the CRM.
4. **Appointments today** the centre booked: confirm them.
5. **Wake-up calls**: open advisories of customers with no visit in 90 days.

Held vehicles (no customer on record, no consent, another car's VIN) are left out and only
counted: nobody may be called about them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb

from pipeline.leads.holds import hold_reasons
from pipeline.report.kpis import (
    BOOKING_WINDOW,
    DORMANT_SQL,
    NO_CENTRE,
    component_name,
    parameters,
    rows,
)
from pipeline.report.period import Period

CONTACT_DUE: Final = {"immediate": dt.timedelta(0), "within_48h": dt.timedelta(hours=48),
                      "routine": BOOKING_WINDOW}
"""How long after a lead reaches the CRM its first contact falls due, by the lead's promise."""


@dataclass(frozen=True, slots=True)
class Call:
    """One call to make: ``due`` orders the list, ``when`` says it in words."""

    centre_id: str | None
    centre: str
    priority: int
    customer: str
    phone: str | None
    vehicle: str
    what: str
    when: str
    due: dt.datetime
    vehicle_id: str


@dataclass(frozen=True, slots=True)
class CallList:
    """Today's calls, most urgent first, and how many a hold kept off the list."""

    calls: tuple[Call, ...]
    held_left_out: int


_BASE: Final = """
SELECT l.lead_id, l.vehicle_id, l.component, l.severity, l.created_at, l.state,
       l.document->>'$.contact' AS contact,
       coalesce(l.document->>'$.centre.centre_id', v.centre_id) AS centre_id,
       (SELECT min(o.delivered_at) FROM outbox o WHERE o.lead_id = l.lead_id
        AND o.status = 'delivered' AND o.delivered_at <= $now) AS sent_at
FROM leads l LEFT JOIN vehicles v USING (vehicle_id)
WHERE l.created_at <= $now
"""

_FOLLOW_UPS: Final = """
SELECT f.lead_id, f.vehicle_id, l.component, f.created_at AS visit_at, f.due_at,
       coalesce(l.document->>'$.centre.centre_id', v.centre_id) AS centre_id
FROM follow_ups f JOIN leads l USING (lead_id) LEFT JOIN vehicles v ON v.vehicle_id = f.vehicle_id
WHERE f.created_at <= $now AND f.due_at < $today_end
  AND (f.due_at >= $today_start OR f.sent_at IS NULL OR f.sent_at > $now)
"""

_APPOINTMENTS: Final = """
SELECT l.lead_id, l.vehicle_id, l.component,
       coalesce(l.document->>'$.centre.centre_id', v.centre_id) AS centre_id
FROM lead_events e JOIN leads l USING (lead_id) LEFT JOIN vehicles v USING (vehicle_id)
WHERE e.outcome = 'applied' AND e.to_state = 'booked' AND l.state = 'booked'
  AND e.event_at <= $now AND e.detail->>'$.appointment_day' = $today
"""


def call_list(con: duckdb.DuckDBPyConnection, period: Period) -> CallList:
    """Every call due by the end of ``period.today``, held vehicles left out."""
    params = {**parameters(period), "now": period.now, "today": period.today.isoformat(),
              "today_start": period.today_start, "today_end": period.today_end}
    leads = rows(con, _BASE, params)
    found = [*_critical(leads), *_first_contacts(leads, period),
             *_follow_ups(rows(con, _FOLLOW_UPS, params), period),
             *({**r, "priority": 4, "due": period.today_start,
                "what": f"Appointment today for the {component_name(r['component'])}: confirm it",
                "when": "today"} for r in rows(con, _APPOINTMENTS, params)),
             *_wake_ups(rows(con, DORMANT_SQL, {**params, "as_of": period.now}), period)]
    held = hold_reasons(con, {c["vehicle_id"] for c in found})
    people = _people(con, {c["vehicle_id"] for c in found})
    centres = {centre_id: (name, zone) for centre_id, name, zone in con.execute(
        "SELECT centre_id, name, timezone FROM service_centres").fetchall()}
    calls = [_call(c, people[c["vehicle_id"]], centres) for c in found
             if c["vehicle_id"] not in held]
    calls.sort(key=lambda c: (c.centre, c.priority, c.due, c.vehicle_id))
    return CallList(tuple(calls), sum(1 for c in found if c["vehicle_id"] in held))


def _stamp(at: dt.datetime, zone: str | None) -> str:
    """``at`` on the centre's clock (its imported IANA time zone), named; UTC without one."""
    try:
        tz: dt.tzinfo = ZoneInfo(zone) if zone else dt.UTC
    except (ZoneInfoNotFoundError, ValueError):
        tz = dt.UTC
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def _critical(leads: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for r in leads:
        if r["severity"] == "critical" and r["state"] in ("new", "sent"):
            where = "" if r["sent_at"] else " (not in the CRM yet)"
            yield {**r, "priority": 1, "due": r["created_at"],
                   "what": f"Critical {component_name(r['component'])} fault: arrange roadside"
                           f" assistance{where}",
                   "when": "now (reported {at})", "at": r["created_at"]}


def _first_contacts(leads: list[dict[str, Any]], period: Period) -> Iterable[dict[str, Any]]:
    for r in leads:
        if r["severity"] == "critical" or r["state"] != "sent" or r["sent_at"] is None:
            continue
        due = r["sent_at"] + CONTACT_DUE.get(r["contact"] or "routine", BOOKING_WINDOW)
        if due >= period.today_end:
            continue
        when = "overdue since {at}" if due < period.today_start else "by {at}"
        yield {**r, "priority": 2, "due": due, "when": when, "at": due,
               "what": f"First contact about the {r['severity']}-severity"
                       f" {component_name(r['component'])} advisory"}


def _follow_ups(found: list[dict[str, Any]], period: Period) -> Iterable[dict[str, Any]]:
    for r in found:
        late = r["due_at"] < period.today_start
        yield {**r, "priority": 3, "due": r["due_at"],
               "what": f"Follow-up call after the {component_name(r['component'])} repair on"
                       f" {r['visit_at']:%Y-%m-%d}",
               "when": ("overdue since {at} (task never reached the CRM)" if late
                        else "from {at}"), "at": r["due_at"]}


def _wake_ups(found: list[dict[str, Any]], period: Period) -> Iterable[dict[str, Any]]:
    for r in found:
        yield {**r, "priority": 5, "due": period.today_end,
               "what": f"Wake-up call: open {component_name(r['component'])} advisory since"
                       f" {r['created_at']:%Y-%m-%d}, no visit in 90 days",
               "when": "today" + (" (reminder already sent)" if r["reminded"] else "")}


def _people(con: duckdb.DuckDBPyConnection, vehicle_ids: set[str]
            ) -> dict[str, tuple[str, str | None, str]]:
    """Customer name, phone and a vehicle label per vehicle, from the master data."""
    out = con.execute(
        "SELECT v.vehicle_id, c.name, c.phone, v.model FROM (SELECT unnest($ids) AS vehicle_id) i"
        " JOIN vehicles v USING (vehicle_id) LEFT JOIN customers c USING (customer_id)",
        {"ids": sorted(vehicle_ids)}).fetchall() if vehicle_ids else []
    people = {str(v): (name or "no customer on record", phone, f"{model} {v}")
              for v, name, phone, model in out}
    return {v: people.get(v, ("no customer on record", None, v)) for v in vehicle_ids}


def _call(found: dict[str, Any], person: tuple[str, str | None, str],
          centres: dict[str, tuple[str, str | None]]) -> Call:
    centre_id = found["centre_id"]
    name, zone = centres.get(centre_id, (centre_id, None)) if centre_id else (NO_CENTRE, None)
    when = found["when"]
    if "at" in found:  # the time said on the clock of the centre that makes the call
        when = when.format(at=_stamp(found["at"], zone))
    return Call(centre_id, name, found["priority"], person[0], person[1], person[2],
                found["what"], when, found["due"], found["vehicle_id"])

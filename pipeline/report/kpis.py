"""The service KPIs per centre and the failure hot spots, computed from what the store records.

Every figure comes from a recorded event; none is estimated:

* **Lead sent**: the lead's first delivery the CRM answered with a 2xx (``outbox.delivered_at``).
* **First response**: the centre's first status update that was applied to the lead
  (``lead_events``: acknowledged, booked, done or dismissed). The CRM reports no separate
  "customer contacted" event; acknowledging a lead is the closest record of it.
* **Booked within 3 days**: non-critical leads (critical ones get roadside help, not a booking)
  whose first ``booked`` or ``done`` update came within 72 h of the lead being sent.
* **Follow-up on time**: a visit is a lead closed ``done``; its follow-up falls due 24 h later
  (``follow_ups.due_at``) and counts as on time when the follow-up task reached the CRM (the
  ``post_visit_follow_up`` campaign's delivery) within 24 h of falling due. Whether the centre
  then phoned is not reported back by the CRM, so it is not claimed.
* **Dormant customers**: customers with an open advisory (sent or acknowledged, not booked)
  older than 90 days and no visit in the last 90 days, where a visit is a lead closed ``done``
  or any repair order imported from the dealer system; "reminded" counts those the
  ``no_visit_90d`` campaign re-sent within the 90 days.
* **Critical faults**: critical leads issued in the period, minutes from the lead being issued
  (the moment ingest stored the fault code and advice ran) to the CRM's 2xx, and whether the
  centre answered within 30 minutes of receiving it.

A window a KPI waits out is judged only once it has closed by the period's ``as_of``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Final

import duckdb

from pipeline.leads.wording import component_words
from pipeline.report.period import Period

SMALL_N: Final = 5
"""A figure from fewer than this many cases is marked "small n": too few to compare centres."""
BOOKING_WINDOW: Final = dt.timedelta(days=3)
FOLLOW_UP_GRACE: Final = dt.timedelta(hours=24)
QUIET: Final = dt.timedelta(days=90)
CRITICAL_ANSWER: Final = dt.timedelta(minutes=30)
NO_CENTRE: Final = "No centre on record"
component_name = component_words
"""A component as an advisor says it ("12 V battery"), the words the leads use."""


@dataclass(frozen=True, slots=True)
class Share:
    """``hits`` of ``n`` cases; a share is never shown without its n."""

    hits: int
    n: int

    @property
    def percent(self) -> float | None:
        """Rounded to whole percent; None when there is no case to judge."""
        return round(100.0 * self.hits / self.n) if self.n else None

    @property
    def small(self) -> bool:
        """Fewer than :data:`SMALL_N` cases."""
        return self.n < SMALL_N


@dataclass(frozen=True, slots=True)
class Median:
    """The median of ``n`` durations, in the unit its field names (None when n is 0)."""

    value: float | None
    n: int

    @property
    def small(self) -> bool:
        """Fewer than :data:`SMALL_N` durations."""
        return self.n < SMALL_N


@dataclass(frozen=True, slots=True)
class CentreKpis:
    """One service centre's figures for the period (``centre_id`` None: the whole fleet)."""

    centre_id: str | None
    centre: str
    customers: int
    leads_sent: int
    first_response_hours: Median
    waiting_for_response: int
    booked_within_3_days: Share
    follow_ups_on_time: Share
    dormant_customers: int
    dormant_reminded: int
    critical_faults: int
    critical_minutes_to_crm: Median
    critical_not_in_crm: int
    critical_answered_within_30_min: Share

    @property
    def small(self) -> bool:
        """The row rests on fewer than :data:`SMALL_N` leads sent."""
        return self.leads_sent < SMALL_N


@dataclass(frozen=True, slots=True)
class Hotspot:
    """Leads per vehicle model and component; ``vehicles`` is the model's fleet size (its n)."""

    model: str
    component: str
    vehicles: int
    vehicles_with_lead: int
    per_100_vehicles: float
    critical: int
    confirmed: int
    dismissed: int

    @property
    def small(self) -> bool:
        """The model has fewer than :data:`SMALL_N` vehicles."""
        return self.vehicles < SMALL_N


@dataclass(frozen=True, slots=True)
class FleetSize:
    """What the report is about: vehicles, customers and centres on record."""

    vehicles: int
    customers: int
    centres: int


_LEADS_SQL: Final = """
WITH sent AS (SELECT lead_id, min(delivered_at) AS sent_at FROM outbox
              WHERE status = 'delivered' GROUP BY 1),
     answered AS (SELECT lead_id, min(event_at) AS answered_at FROM lead_events
                  WHERE outcome = 'applied' GROUP BY 1),
     booked AS (SELECT lead_id, min(event_at) AS booked_at FROM lead_events
                WHERE outcome = 'applied' AND to_state IN ('booked', 'done') GROUP BY 1),
     facts AS (
       SELECT coalesce(l.document->>'$.centre.centre_id', v.centre_id) AS centre_id,
              l.severity = 'critical' AS critical, l.created_at,
              s.sent_at, a.answered_at, b.booked_at,
              s.sent_at >= $start AND s.sent_at < $end AS sent_in_period,
              l.created_at >= $start AND l.created_at < $end AS issued_in_period
       FROM leads l LEFT JOIN vehicles v USING (vehicle_id) LEFT JOIN sent s USING (lead_id)
       LEFT JOIN answered a USING (lead_id) LEFT JOIN booked b USING (lead_id))
SELECT centre_id, grouping(centre_id) = 1 AS total,
  count(*) FILTER (WHERE sent_in_period) AS leads_sent,
  median(epoch(answered_at - sent_at) / 3600.0)
    FILTER (WHERE sent_in_period AND answered_at <= $as_of) AS response_h,
  count(*) FILTER (WHERE sent_in_period AND answered_at <= $as_of) AS answered,
  count(*) FILTER (WHERE sent_in_period AND (answered_at IS NULL OR answered_at > $as_of))
    AS waiting,
  count(*) FILTER (WHERE sent_in_period AND NOT critical
                   AND (sent_at + $booking <= $as_of
                        OR (booked_at <= sent_at + $booking AND booked_at <= $as_of)))
    AS booking_n,
  count(*) FILTER (WHERE sent_in_period AND NOT critical
                   AND booked_at <= sent_at + $booking AND booked_at <= $as_of) AS booked,
  count(*) FILTER (WHERE issued_in_period AND critical) AS critical,
  median(epoch(sent_at - created_at) / 60.0)
    FILTER (WHERE issued_in_period AND critical AND sent_at <= $as_of) AS critical_min,
  count(*) FILTER (WHERE issued_in_period AND critical AND sent_at <= $as_of) AS critical_sent,
  count(*) FILTER (WHERE issued_in_period AND critical
                   AND (sent_at + $answer <= $as_of
                        OR (answered_at <= sent_at + $answer AND answered_at <= $as_of)))
    AS critical_answer_n,
  count(*) FILTER (WHERE issued_in_period AND critical
                   AND answered_at <= sent_at + $answer AND answered_at <= $as_of)
    AS critical_answered
FROM facts GROUP BY GROUPING SETS ((centre_id), ())
"""

_FOLLOW_UPS_SQL: Final = """
WITH reached AS (SELECT c.lead_id, min(o.delivered_at) AS reached_at
                 FROM campaign_contacts c JOIN outbox o USING (event_id)
                 WHERE c.campaign = 'post_visit_follow_up' AND o.status = 'delivered'
                 GROUP BY 1)
SELECT coalesce(l.document->>'$.centre.centre_id', v.centre_id) AS centre_id,
       grouping(coalesce(l.document->>'$.centre.centre_id', v.centre_id)) = 1 AS total,
  count(*) FILTER (WHERE f.due_at + $grace <= $as_of
                   OR (r.reached_at <= f.due_at + $grace AND r.reached_at <= $as_of)) AS n,
  count(*) FILTER (WHERE r.reached_at <= f.due_at + $grace AND r.reached_at <= $as_of)
    AS on_time
FROM follow_ups f JOIN leads l USING (lead_id) LEFT JOIN vehicles v ON v.vehicle_id = f.vehicle_id
LEFT JOIN reached r USING (lead_id)
WHERE f.created_at >= $start AND f.created_at < $end
GROUP BY GROUPING SETS ((coalesce(l.document->>'$.centre.centre_id', v.centre_id)), ())
"""

DORMANT_SQL: Final = """
WITH visits AS (SELECT vehicle_id, visit_at AS at FROM service_visits
                UNION ALL SELECT vehicle_id, opened_at FROM repair_orders)
SELECT l.lead_id, l.vehicle_id, l.component, l.created_at, v.customer_id,
       coalesce(l.document->>'$.centre.centre_id', v.centre_id) AS centre_id,
       EXISTS (SELECT 1 FROM campaign_contacts c WHERE c.campaign = 'no_visit_90d'
               AND c.lead_id = l.lead_id AND c.contacted_at > $as_of - $quiet
               AND c.contacted_at <= $as_of) AS reminded
FROM leads l JOIN vehicles v USING (vehicle_id)
WHERE l.state IN ('sent', 'acknowledged') AND l.created_at <= $as_of - $quiet
  AND v.customer_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM visits s WHERE s.vehicle_id = l.vehicle_id
                  AND s.at > $as_of - $quiet AND s.at <= $as_of)
ORDER BY l.created_at, l.vehicle_id
"""
"""Open advisories of customers with no visit in 90 days (the call list reads it too)."""

_HOTSPOTS_SQL: Final = """
WITH fleet AS (SELECT coalesce(model, 'unknown') AS model, count(*) AS vehicles
               FROM vehicles GROUP BY 1)
SELECT f.model, l.component, any_value(f.vehicles) AS vehicles,
       count(DISTINCT l.vehicle_id) AS vehicles_with_lead,
       round(100.0 * count(DISTINCT l.vehicle_id) / any_value(f.vehicles), 1) AS per_100,
       count(*) FILTER (WHERE l.severity = 'critical') AS critical,
       count(*) FILTER (WHERE l.state = 'done') AS confirmed,
       count(*) FILTER (WHERE l.state = 'dismissed') AS dismissed
FROM leads l JOIN vehicles v USING (vehicle_id)
JOIN fleet f ON f.model = coalesce(v.model, 'unknown')
WHERE l.created_at >= $start AND l.created_at < $end
GROUP BY f.model, l.component ORDER BY per_100 DESC, f.model, l.component
"""


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]
         ) -> list[dict[str, Any]]:
    """Run ``sql`` with only the named parameters it uses; rows as dicts."""
    named = set(re.findall(r"\$(\w+)", sql))
    used = {k: v for k, v in params.items() if k in named}
    cur = con.execute(sql, used)
    names = [d[0] for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def parameters(period: Period) -> dict[str, Any]:
    """The SQL parameters every KPI query draws on."""
    return {"start": period.start, "end": period.end, "as_of": period.as_of,
            "booking": BOOKING_WINDOW, "grace": FOLLOW_UP_GRACE, "quiet": QUIET,
            "answer": CRITICAL_ANSWER}


def fleet_size(con: duckdb.DuckDBPyConnection) -> FleetSize:
    """Vehicles, customers with a vehicle, and centres on record."""
    row = con.execute("SELECT (SELECT count(*) FROM vehicles),"
                      " (SELECT count(DISTINCT customer_id) FROM vehicles),"
                      " (SELECT count(*) FROM service_centres)").fetchone()
    assert row is not None
    return FleetSize(int(row[0]), int(row[1]), int(row[2]))


def hotspots(con: duckdb.DuckDBPyConnection, period: Period) -> list[Hotspot]:
    """Leads issued in the period per model and component, per 100 vehicles of the model."""
    return [Hotspot(r["model"], r["component"], int(r["vehicles"]),
                    int(r["vehicles_with_lead"]), float(r["per_100"]), int(r["critical"]),
                    int(r["confirmed"]), int(r["dismissed"]))
            for r in rows(con, _HOTSPOTS_SQL, parameters(period))]


def centre_kpis(con: duckdb.DuckDBPyConnection, period: Period) -> list[CentreKpis]:
    """One row per centre on record (and per centre leads name that is not), then the fleet."""
    params = parameters(period)
    leads = {(r["total"], r["centre_id"]): r for r in rows(con, _LEADS_SQL, params)}
    follow = {(r["total"], r["centre_id"]): r for r in rows(con, _FOLLOW_UPS_SQL, params)}
    dormant = rows(con, DORMANT_SQL, params)
    names = dict(con.execute("SELECT centre_id, name FROM service_centres").fetchall())
    customers = dict(con.execute("SELECT centre_id, count(DISTINCT customer_id) FROM vehicles"
                                 " GROUP BY 1").fetchall())
    everyone = fleet_size(con).customers
    seen = {c for t, c in (*leads, *follow) if not t} | {r["centre_id"] for r in dormant}
    extra = sorted((c for c in seen - set(names)), key=lambda c: (c is None, c or ""))
    ordered = sorted(names, key=lambda c: (names[c], c)) + extra
    out = [_row(c, _centre_name(c, names), int(customers.get(c, 0)),
                leads.get((False, c), {}), follow.get((False, c), {}),
                [d for d in dormant if d["centre_id"] == c]) for c in ordered]
    out.append(_row(None, "All centres", everyone,
                    leads.get((True, None), {}), follow.get((True, None), {}), dormant))
    return out


def _centre_name(centre_id: str | None, names: dict[str, str]) -> str:
    if centre_id is None:
        return NO_CENTRE
    return names.get(centre_id, f"{centre_id} (not in the master data)")


def _row(centre_id: str | None, name: str, customers: int, lead: dict[str, Any],
         follow: dict[str, Any], dormant: list[dict[str, Any]]) -> CentreKpis:
    def num(d: dict[str, Any], key: str) -> int:
        return int(d.get(key) or 0)

    def med(d: dict[str, Any], key: str, n: str) -> Median:
        value = d.get(key)
        return Median(None if value is None else round(float(value), 1), num(d, n))

    return CentreKpis(
        centre_id=centre_id, centre=name, customers=customers,
        leads_sent=num(lead, "leads_sent"),
        first_response_hours=med(lead, "response_h", "answered"),
        waiting_for_response=num(lead, "waiting"),
        booked_within_3_days=Share(num(lead, "booked"), num(lead, "booking_n")),
        follow_ups_on_time=Share(num(follow, "on_time"), num(follow, "n")),
        dormant_customers=len({d["customer_id"] for d in dormant}),
        dormant_reminded=len({d["customer_id"] for d in dormant if d["reminded"]}),
        critical_faults=num(lead, "critical"),
        critical_minutes_to_crm=med(lead, "critical_min", "critical_sent"),
        critical_not_in_crm=num(lead, "critical") - num(lead, "critical_sent"),
        critical_answered_within_30_min=Share(num(lead, "critical_answered"),
                                              num(lead, "critical_answer_n")))

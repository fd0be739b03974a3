"""Campaigns: leads the calendar raises rather than a single fault.

* **Pre-winter 12 V check.** Cold weakens a 12 V battery's cranking power; one that is already
  weak will not start the car on the first frost. Vehicles in a region whose forecast minimum
  (``region_forecasts``) falls below a threshold within the look-ahead, and whose cranking
  voltage is low or falling (the daily minimum while cranking, ``crank_dip_min``, and its
  14-day trend), get a low-severity ``lv_battery`` lead with an appointment before the cold day.
* **No visit in 90 days.** A customer with an open advisory (sent or acknowledged, not booked)
  who has not visited for 90 days is reminded: the lead is re-sent with
  ``campaign: no_visit_90d``, at most once per 90 days.
* **Post-visit follow-up.** 24 hours after a repair (``follow_ups``) the lead is sent again with
  ``campaign: post_visit_follow_up``, so the centre calls to ask whether all is well.

Every contact is written with its outbox row in one transaction and recorded in
``campaign_contacts``, so a campaign run twice contacts nobody twice. A vehicle without a
customer on record or without consent to contact (:mod:`pipeline.leads.holds`) gets its
pre-winter lead held, and is not reminded or followed up; so is a pre-winter lead whose
newest evidence is older than ``evidence_max_age_days`` (held ``stale_evidence``). Reminders
and follow-ups re-send a lead the centre already has, so its evidence's age does not hold them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Final

import duckdb
import polars as pl

from pipeline.features.daily import build_daily_features
from pipeline.leads.advice import BLOCKING_STATES, enqueue, insert_lead
from pipeline.leads.appointments import iso
from pipeline.leads.document import (
    LeadFacts,
    LeadSettings,
    build_document,
    load_context,
    newest_evidence,
)
from pipeline.leads.holds import evidence_hold, hold_reasons
from pipeline.store.connection import transaction

log = logging.getLogger(__name__)

WINTER: Final = "pre_winter_12v"
REMINDER: Final = "no_visit_90d"
FOLLOW_UP: Final = "post_visit_follow_up"
QUIET_DAYS: Final = 90
WEAK_CRANK_V: Final = 10.0
"""A daily cranking minimum below this is weak whatever its trend."""
FALLING_CRANK_V_PER_DAY: Final = -0.01
"""A cranking minimum falling faster than this (V/day over 14 days) is weak."""


@dataclass(frozen=True, slots=True)
class CampaignReport:
    """Who one campaign run contacted."""

    campaign: str
    contacted: tuple[str, ...]


def pre_winter_battery_check(
    con: duckdb.DuckDBPyConnection, *, now: dt.datetime, threshold_c: float = 0.0,
    lookahead_days: int = 14, settings: LeadSettings | None = None,
) -> CampaignReport:
    """Leads for weak 12 V batteries in regions about to turn cold (see module docstring);
    ``settings`` default to the environment's (:mod:`pipeline.config`)."""
    settings = settings or LeadSettings.from_settings()
    cold = dict(con.execute(
        "SELECT lower(region), min(day) FROM region_forecasts WHERE day > ? AND day <= ?"
        " AND min_temp_c < ? GROUP BY 1",
        [now.date(), now.date() + dt.timedelta(days=lookahead_days), threshold_c]).fetchall())
    weak = _weak_batteries(con, now)
    candidates = con.execute(
        "SELECT vehicle_id, lower(region) FROM vehicles WHERE list_contains(?, lower(region))"
        " AND list_contains(?, vehicle_id) AND vehicle_id NOT IN (SELECT vehicle_id FROM leads"
        " WHERE component = 'lv_battery' AND list_contains(?, state)) AND vehicle_id NOT IN"
        " (SELECT vehicle_id FROM campaign_contacts WHERE campaign = ? AND contacted_at > ?)"
        " ORDER BY 1",
        [list(cold), weak, list(BLOCKING_STATES), WINTER,
         now - dt.timedelta(days=180)]).fetchall()
    contacted = []
    with transaction(con):
        context = load_context(con, now, {v for v, _ in candidates})
        holds = hold_reasons(con, {v for v, _ in candidates})
        for vehicle_id, region in candidates:
            horizon = max(1, (cold[region] - now.date()).days)
            facts = LeadFacts(vehicle_id, "lv_battery", "low", None, horizon, None,
                              campaign=WINTER)
            hold = holds.get(vehicle_id) or evidence_hold(
                newest_evidence(facts, context), now, settings.evidence_max_age_days)
            doc = build_document(con, facts, f"lead-{uuid.uuid4().hex}", 1, context, now,
                                 book=hold is None, settings=settings)
            insert_lead(con, doc, 0.0, now, hold=hold)
            if hold is None:
                _record(con, WINTER, vehicle_id, now, doc, f"{doc['lead_id']}.r1")
                contacted.append(vehicle_id)
    log.info("campaign %s: %d vehicles", WINTER, len(contacted))
    return CampaignReport(WINTER, tuple(contacted))


def _weak_batteries(con: duckdb.DuckDBPyConnection, now: dt.datetime) -> list[str]:
    feats = build_daily_features(con, until=now)
    if feats.is_empty():
        return []
    latest = feats.filter(pl.col("day") == pl.col("day").max().over("vehicle_id"))
    weak = latest.filter((pl.col("crank_dip_min") < WEAK_CRANK_V)
                         | (pl.col("crank_dip_trend_14d") < FALLING_CRANK_V_PER_DAY))
    return weak["vehicle_id"].to_list()


def visit_reminders(con: duckdb.DuckDBPyConnection, *, now: dt.datetime) -> CampaignReport:
    """Re-send open advisories of customers without a visit in :data:`QUIET_DAYS` days."""
    quiet = now - dt.timedelta(days=QUIET_DAYS)
    rows = con.execute(
        "SELECT l.vehicle_id, l.document FROM leads l WHERE l.state IN ('sent', 'acknowledged')"
        " AND l.created_at <= ? AND NOT EXISTS (SELECT 1 FROM service_visits s"
        " WHERE s.vehicle_id = l.vehicle_id AND s.visit_at > ?) AND NOT EXISTS (SELECT 1 FROM"
        " campaign_contacts c WHERE c.campaign = ? AND c.lead_id = l.lead_id"
        " AND c.contacted_at > ?) ORDER BY 1", [quiet, quiet, REMINDER, quiet]).fetchall()
    return _resend(con, REMINDER, [(v, json.loads(d)) for v, d in rows], now)


def send_follow_ups(con: duckdb.DuckDBPyConnection, *, now: dt.datetime) -> CampaignReport:
    """Send every follow-up task that is due (24 h after the visit) and not sent yet."""
    rows = con.execute(
        "SELECT f.vehicle_id, l.document FROM follow_ups f JOIN leads l USING (lead_id)"
        " WHERE f.sent_at IS NULL AND f.due_at <= ? ORDER BY f.due_at", [now]).fetchall()
    report = _resend(con, FOLLOW_UP, [(v, json.loads(d)) for v, d in rows], now)
    con.execute("UPDATE follow_ups SET sent_at = ? WHERE sent_at IS NULL AND due_at <= ?",
                [now, now])
    return report


def _resend(con: duckdb.DuckDBPyConnection, campaign: str,
            leads: list[tuple[str, dict[str, Any]]], now: dt.datetime) -> CampaignReport:
    """Queue each lead again, marked with ``campaign``, under a new webhook id (not for a
    vehicle whose customer may not be contacted now)."""
    holds = hold_reasons(con, {v for v, _ in leads})
    if holds:
        log.info("campaign %s: %d leads not re-sent (held: %s)", campaign,
                 sum(1 for v, _ in leads if v in holds), sorted(set(holds.values())))
        leads = [(v, d) for v, d in leads if v not in holds]
    with transaction(con):
        for vehicle_id, doc in leads:
            again = {**doc, "campaign": campaign, "issued_at": iso(now)}
            event_id = f"{doc['lead_id']}.{campaign}.{now:%Y%m%d}"
            enqueue(con, again, event_id)
            _record(con, campaign, vehicle_id, now, doc, event_id)
    log.info("campaign %s: %d leads re-sent", campaign, len(leads))
    return CampaignReport(campaign, tuple(v for v, _ in leads))


def _record(con: duckdb.DuckDBPyConnection, campaign: str, vehicle_id: str, now: dt.datetime,
            doc: dict[str, Any], event_id: str) -> None:
    con.execute("INSERT INTO campaign_contacts VALUES (?, ?, ?, ?, ?)",
                [campaign, vehicle_id, now, doc["lead_id"], event_id])

"""Held leads: leads that may not go to the CRM, and why.

A lead names a customer for a service centre to call. When there is no customer on record for
the vehicle, or the customer has not consented to be contacted, sending the lead would mean
inventing whom to call or calling someone who said no. When the vehicle's bus reports another
VIN than the register's (the gateway was moved to another car, :mod:`pipeline.fleet.vin_check`),
the data behind the lead is not the registered car's at all. Such a lead is **held**: it is stored
with state ``held`` and a :class:`HoldReason` in ``leads.hold_reason``, no outbox row is
written (so no delivery can send it), no appointment slot is taken, and ``fleetcare leads
list --held`` and the health check show it. The next advice run after the cause is fixed (the
customer imported, consent recorded) releases it: state ``new``, its outbox row, a slot.

A lead whose newest evidence (the day of its feature row, its fault codes' last sighting) is
older than ``evidence_max_age_days`` is held too (``stale_evidence``): a car that stopped
reporting months ago may have been repaired, sold or scrapped since, and an appointment
offered on such evidence wastes a bay and the customer's trust. Fresh data releases it.

The reasons are an enumerable set with one test each (:data:`HOLD_RULES`), checked in
order; the first that applies is the lead's reason. The vehicle's reasons are SQL over its
register rows (:func:`hold_reasons`); the evidence's age is the lead's own
(:func:`evidence_hold`), checked after them. A new reason is a new member and a new rule,
nothing else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import duckdb

from pipeline.fleet.vin_check import MISMATCH_CONDITION

HELD: Final = "held"
"""The lead state of a held lead."""


class HoldReason(StrEnum):
    """Why a lead is held (the value stored in ``leads.hold_reason``)."""

    VIN_MISMATCH = "vin_mismatch"
    NO_CUSTOMER = "no_customer"
    NO_CONSENT = "no_consent"
    STALE_EVIDENCE = "stale_evidence"


@dataclass(frozen=True, slots=True)
class HoldRule:
    """One reason and its test: a SQL condition over ``v`` (the vehicle's ``vehicles`` row)
    and ``c`` (its ``customers`` row), both left-joined, so either may be all NULL; None for
    a reason about the lead's evidence rather than the vehicle (:func:`evidence_hold`)."""

    reason: HoldReason
    condition: str | None
    explanation: str


HOLD_RULES: Final = (
    HoldRule(HoldReason.VIN_MISMATCH, MISMATCH_CONDITION,
             "the vehicle's bus reports another VIN than the register (was the gateway moved "
             "to another car?): fix the register's VIN or move the gateway back"),
    HoldRule(HoldReason.NO_CUSTOMER, "c.customer_id IS NULL",
             "no customer on record for the vehicle (import customers.csv and the vehicle's "
             "customer_id)"),
    HoldRule(HoldReason.NO_CONSENT, "c.contact_consent IS NOT TRUE",
             "the customer has not consented to be contacted (contact_consent is not true)"),
    HoldRule(HoldReason.STALE_EVIDENCE, None,
             "the newest evidence is older than evidence_max_age_days (has the car stopped "
             "reporting?): check the gateway; fresh data releases the lead"),
)
"""Checked in this order; every :class:`HoldReason` has exactly one rule."""


HOLD_CASE: Final = "CASE {} END".format(" ".join(
    f"WHEN {rule.condition} THEN '{rule.reason.value}'" for rule in HOLD_RULES
    if rule.condition is not None))
"""SQL for the first vehicle reason of :data:`HOLD_RULES` that holds for ``v`` and ``c``
(NULL when none does): :func:`hold_reasons`, and the lead context's one query for the
register and the holds together (:func:`pipeline.leads.document.load_context`)."""


def explain(reason: str) -> str:
    """The words for a stored reason (the reason itself when it is not one of ours)."""
    return next((r.explanation for r in HOLD_RULES if r.reason == reason), reason)


def hold_reasons(con: duckdb.DuckDBPyConnection, vehicle_ids: Collection[str]
                 ) -> dict[str, HoldReason]:
    """The reason each of ``vehicle_ids`` has its leads held; vehicles free to contact are
    absent."""
    if not vehicle_ids:
        return {}
    rows = con.execute(
        f"SELECT i.vehicle_id, {HOLD_CASE} FROM (SELECT unnest($ids) AS vehicle_id) i"
        " LEFT JOIN vehicles v ON v.vehicle_id = i.vehicle_id"
        " LEFT JOIN customers c ON c.customer_id = v.customer_id",
        {"ids": sorted(vehicle_ids)}).fetchall()
    return {str(v): HoldReason(r) for v, r in rows if r is not None}


def evidence_hold(newest: dt.date | None, now: dt.datetime, max_age_days: int
                  ) -> HoldReason | None:
    """``stale_evidence`` when the lead's newest evidence is more than ``max_age_days`` days
    before ``now`` (or when it has none at all), else None."""
    if newest is None or (now.date() - newest).days > max_age_days:
        return HoldReason.STALE_EVIDENCE
    return None

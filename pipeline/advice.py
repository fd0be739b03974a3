"""Turn scores and active fault codes into leads a service centre can act on.

A lead exists per (vehicle, component) at most once while it is open. It is re-issued (same
``lead_id``, next ``revision``) only when it escalates: a higher severity, or a probability at
least :data:`PROBABILITY_STEP` higher than the one the centre last saw. Every new or escalated
lead also writes an ``outbox`` row in the same transaction, so delivery to the CRM can never
miss a lead nor announce one that was rolled back.

The lead document is described by ``pipeline/lead.schema.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

import duckdb
import polars as pl

from pipeline.dtc_catalog import catalog_frame, severity_rank
from pipeline.features import (
    COMPONENT_FEATURES,
    CONTEXT_FEATURES,
    build_daily_features,
)

log = logging.getLogger(__name__)

LEAD_SCHEMA_VERSION: Final = 1
PROBABILITY_STEP: Final = 0.10
HIGH_PROBABILITY: Final = 0.80
"""A model probability at or above this makes a lead "high" rather than "medium"."""
DTC_HORIZON_DAYS: Final = 30
"""Horizon of a lead raised by fault codes alone (no model score)."""
BLOCKING_STATES: Final = ("new", "sent", "acknowledged", "booked", "dismissed")
"""Lead states that stop a second lead for the same vehicle and component ("done" does not)."""
_CONTACT: Final = {"critical": "immediate", "high": "within_48h", "medium": "routine",
                   "low": "routine"}


@dataclass(frozen=True, slots=True)
class AdviceReport:
    """How many leads one :func:`advise` run created, escalated and left alone."""

    new: int
    escalated: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the evidence says about one (vehicle, component) right now."""

    vehicle_id: str
    component: str
    probability: float | None = None
    horizon_days: int = DTC_HORIZON_DAYS
    model_id: str | None = None
    codes: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def severity(self) -> str:
        """The worst of the model's and the fault codes' severities."""
        levels = [c["severity"] for c in self.codes]
        if self.probability is not None:
            levels.append("high" if self.probability >= HIGH_PROBABILITY else "medium")
        return max(levels, key=severity_rank)


@dataclass(frozen=True, slots=True)
class _OpenLead:
    lead_id: str
    severity: str
    probability: float
    document: dict[str, Any]


def advise(con: duckdb.DuckDBPyConnection, *, now: dt.datetime | None = None) -> AdviceReport:
    """Create or escalate leads from the latest scores and the active fault codes.

    Args:
        con: an open store with reference data seeded (customers, centres, capacity,
            catalogue); missing pieces leave the matching lead fields null.
        now: the advice time (default: now, UTC). Scores after ``now.date()`` and fault codes
            after ``now`` are ignored; appointments are proposed from the next day on.

    Returns:
        Counts of new, escalated and unchanged leads.
    """
    now = now or dt.datetime.now(dt.UTC)
    candidates = _candidates(con, now)
    open_leads = _open_leads(con)
    counts = {"new": 0, "escalated": 0, "unchanged": 0}
    con.execute("BEGIN TRANSACTION")
    try:
        context = _context(con, now, {c.vehicle_id for c in candidates})
        for cand in candidates:
            outcome = _apply(con, cand, open_leads.get((cand.vehicle_id, cand.component)),
                             context, now)
            counts[outcome] += 1
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    log.info("advice: %s", counts)
    return AdviceReport(**counts)


_SCORES_SQL: Final = """
WITH latest AS (
  SELECT *, row_number() OVER (PARTITION BY vehicle_id, component ORDER BY as_of DESC) AS rn
  FROM scores WHERE as_of <= $today
)
SELECT l.vehicle_id, l.component, l.probability, l.horizon_days, l.model_id
FROM latest l JOIN model_registry m USING (model_id)
WHERE l.rn = 1 AND l.probability >= CAST(m.metrics->>'$.threshold' AS DOUBLE)
"""

_CODES_SQL: Final = """
SELECT vehicle_id, upper(code) AS code, max(ts) AS last_seen, arg_max(status, ts) AS status
FROM dtc_events WHERE ts <= $now
GROUP BY ALL
HAVING NOT arg_max(cleared, ts)
"""
"""Fault codes active at ``now``: their latest event did not clear them (see features)."""


def _candidates(con: duckdb.DuckDBPyConnection, now: dt.datetime) -> list[Candidate]:
    """Merge scores above their model's threshold with active, catalogued fault codes."""
    scores = con.execute(_SCORES_SQL, {"today": now.date()}).fetchall()
    codes = _active_codes(con, now)
    by_key: dict[tuple[str, str], Candidate] = {
        (v, c): Candidate(v, c, float(p), int(h), m) for v, c, p, h, m in scores
    }
    for row in codes.iter_rows(named=True):
        key = (row["vehicle_id"], row["component"])
        base = by_key.get(key, Candidate(*key))
        code = {k: row[k] for k in ("code", "description", "severity", "status")}
        code["last_seen"] = _iso(row["last_seen"])
        by_key[key] = Candidate(base.vehicle_id, base.component, base.probability,
                                base.horizon_days, base.model_id, (*base.codes, code))
    return [by_key[k] for k in sorted(by_key)]


def _active_codes(con: duckdb.DuckDBPyConnection, now: dt.datetime) -> pl.DataFrame:
    rel = con.sql(_CODES_SQL, params={"now": now})
    active = rel.pl() if rel is not None else pl.DataFrame()
    if active.is_empty():
        return active
    return (active.join(catalog_frame(), on="code", how="inner")
            .filter(pl.col("component").is_not_null()).sort("vehicle_id", "code"))


def _open_leads(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], _OpenLead]:
    rows = con.execute(
        "SELECT vehicle_id, component, lead_id, severity, probability, document FROM leads"
        " WHERE list_contains(?, state)", [list(BLOCKING_STATES)]).fetchall()
    return {(v, c): _OpenLead(lid, sev, float(p), json.loads(doc))
            for v, c, lid, sev, p, doc in rows}


def _apply(
    con: duckdb.DuckDBPyConnection, cand: Candidate, lead: _OpenLead | None,
    context: dict[str, Any], now: dt.datetime,
) -> str:
    """Create, escalate or leave one lead; return which of the three happened."""
    prob = cand.probability if cand.probability is not None else 0.0
    if lead is None:
        doc = _document(con, cand, f"lead-{uuid.uuid4().hex}", 1, context, now)
        _insert_lead(con, cand, doc, prob, now)
        return "new"
    rank_up = severity_rank(cand.severity) > severity_rank(lead.severity)
    if not rank_up and prob < lead.probability + PROBABILITY_STEP:
        return "unchanged"
    _release_slot(con, lead.document.get("proposed_appointment"))
    doc = _document(con, cand, lead.lead_id, int(lead.document["revision"]) + 1, context, now)
    con.execute(
        "UPDATE leads SET state = 'new', severity = ?, probability = ?, horizon_days = ?,"
        " updated_at = ?, document = ? WHERE lead_id = ?",
        [cand.severity, prob, cand.horizon_days, now, json.dumps(doc), lead.lead_id])
    _enqueue(con, doc)
    return "escalated"


def _insert_lead(con: duckdb.DuckDBPyConnection, cand: Candidate, doc: dict[str, Any],
                 prob: float, now: dt.datetime) -> None:
    con.execute(
        "INSERT INTO leads (lead_id, vehicle_id, component, state, severity, probability,"
        " horizon_days, created_at, updated_at, document) VALUES (?, ?, ?, 'new', ?, ?, ?, ?,"
        " ?, ?)",
        [doc["lead_id"], cand.vehicle_id, cand.component, cand.severity, prob,
         cand.horizon_days, now, now, json.dumps(doc)])
    _enqueue(con, doc)


def _enqueue(con: duckdb.DuckDBPyConnection, doc: dict[str, Any]) -> None:
    """Add the outbox row announcing this revision of the lead (same transaction)."""
    event_id = f"{doc['lead_id']}.r{doc['revision']}"
    con.execute("INSERT INTO outbox (event_id, lead_id, body, next_attempt_at)"
                " VALUES (?, ?, ?, ?)",
                [event_id, doc["lead_id"], json.dumps(doc, separators=(",", ":")),
                 doc["issued_at"]])


def _context(
    con: duckdb.DuckDBPyConnection, now: dt.datetime, vehicles: set[str]
) -> dict[str, Any]:
    """Per-vehicle facts every lead of the run needs: who, where, what the signals say."""
    if not vehicles:
        return {"vehicles": {}, "features": {}, "catalogue": {}}
    ids = sorted(vehicles)
    rows = con.execute(
        "SELECT v.vehicle_id, v.model, v.region, c.customer_id, c.name, c.email, c.phone,"
        " s.centre_id, s.name, s.region FROM vehicles v"
        " LEFT JOIN customers c USING (customer_id)"
        " LEFT JOIN service_centres s ON s.centre_id = v.centre_id"
        " WHERE list_contains(?, v.vehicle_id)", [ids]).fetchall()
    feats = build_daily_features(con, until=now).filter(pl.col("vehicle_id").is_in(ids))
    latest = feats.filter(pl.col("day") == pl.col("day").max().over("vehicle_id"))
    catalogue = {r[0]: r[1:] for r in con.execute(
        "SELECT component, work, parts_eur, labour_hours, labour_rate_eur"
        " FROM service_catalogue").fetchall()}
    return {"vehicles": {r[0]: r for r in rows},
            "features": {r["vehicle_id"]: r for r in latest.iter_rows(named=True)},
            "catalogue": catalogue}


def _document(
    con: duckdb.DuckDBPyConnection, cand: Candidate, lead_id: str, revision: int,
    context: dict[str, Any], now: dt.datetime,
) -> dict[str, Any]:
    """The lead as the CRM receives it (see ``lead.schema.json``)."""
    vrow = context["vehicles"].get(cand.vehicle_id)
    severity = cand.severity
    centre = _centre(vrow)
    appointment = None
    if severity != "critical" and centre is not None:
        appointment = _book_slot(con, centre["centre_id"], now.date(), cand.horizon_days)
    return {
        "schema_version": LEAD_SCHEMA_VERSION, "lead_id": lead_id, "revision": revision,
        "issued_at": _iso(now), "component": cand.component, "severity": severity,
        "contact": _CONTACT[severity], "roadside_assistance": severity == "critical",
        "probability": cand.probability, "horizon_days": cand.horizon_days,
        "model_id": cand.model_id,
        "vehicle": {"vehicle_id": cand.vehicle_id, "model": vrow[1] if vrow else None,
                    "region": vrow[2] if vrow else None},
        "customer": _customer(vrow), "centre": centre,
        "evidence": _evidence(cand, context["features"].get(cand.vehicle_id)),
        "recommended_work": _work(context["catalogue"].get(cand.component)),
        "proposed_appointment": appointment,
    }


def _customer(vrow: tuple[Any, ...] | None) -> dict[str, Any] | None:
    if vrow is None or vrow[3] is None:
        return None
    return {"customer_id": vrow[3], "name": vrow[4], "email": vrow[5], "phone": vrow[6]}


def _centre(vrow: tuple[Any, ...] | None) -> dict[str, Any] | None:
    if vrow is None or vrow[7] is None:
        return None
    return {"centre_id": vrow[7], "name": vrow[8], "region": vrow[9]}


def _evidence(cand: Candidate, feats: dict[str, Any] | None) -> dict[str, Any]:
    names = [n for n in (*COMPONENT_FEATURES[cand.component], *CONTEXT_FEATURES)
             if not n.startswith("dtc_count__")]
    signals = {} if feats is None else {
        n: round(float(feats[n]), 4) for n in names if feats.get(n) is not None}
    return {"as_of": feats["day"].isoformat() if feats else None, "signals": signals,
            "fault_codes": list(cand.codes)}


def _work(entry: tuple[Any, ...] | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    work, parts, hours, rate = entry
    labour = round(hours * rate, 2)
    return {"description": work, "parts_eur": parts, "labour_hours": hours,
            "labour_rate_eur": rate, "labour_eur": labour,
            "total_eur": round(parts + labour, 2), "currency": "EUR"}


def _book_slot(
    con: duckdb.DuckDBPyConnection, centre_id: str, today: dt.date, horizon_days: int
) -> dict[str, Any] | None:
    """Take the first free slot at the centre after today and within the horizon."""
    row = con.execute(
        "SELECT day FROM centre_capacity WHERE centre_id = ? AND day > ? AND day <= ?"
        " AND free_slots > 0 ORDER BY day LIMIT 1",
        [centre_id, today, today + dt.timedelta(days=horizon_days)]).fetchone()
    if row is None:
        return None
    day: dt.date = row[0]
    con.execute("UPDATE centre_capacity SET free_slots = free_slots - 1"
                " WHERE centre_id = ? AND day = ?", [centre_id, day])
    start = dt.datetime.combine(day, dt.time(8), tzinfo=dt.UTC)
    return {"centre_id": centre_id, "day": day.isoformat(), "window_start": _iso(start),
            "window_end": _iso(start + dt.timedelta(hours=9))}


def _release_slot(con: duckdb.DuckDBPyConnection, appointment: dict[str, Any] | None) -> None:
    """Give back the slot a superseded revision of a lead had taken."""
    if not appointment:
        return
    con.execute("UPDATE centre_capacity SET free_slots = free_slots + 1"
                " WHERE centre_id = ? AND day = ?",
                [appointment["centre_id"], dt.date.fromisoformat(appointment["day"])])


def _iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")

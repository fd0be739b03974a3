"""Turn scores and active fault codes into leads a service centre can act on.

A lead exists per (vehicle, component) at most once while it is open. It is re-issued (same
``lead_id``, next ``revision``) only when it escalates: a higher severity, or a probability at
least :data:`PROBABILITY_STEP` higher than the one the centre last saw. Every new or escalated
lead also writes an ``outbox`` row in the same transaction, so delivery to the CRM can never
miss a lead nor announce one that was rolled back. A lead whose vehicle has no customer on
record, or whose customer has not consented to contact, or whose newest evidence is older
than ``evidence_max_age_days``, is **held** instead (:mod:`pipeline.leads.holds`): stored with
its reason, no outbox row, no slot; a later run releases it once the cause is gone.

The lead document is described by ``pipeline/leads/lead.schema.json`` and built by
:mod:`pipeline.leads.document`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any, Final

import duckdb
import polars as pl

from pipeline.features.active_codes import active_fault_codes
from pipeline.features.fault_codes import severity_rank
from pipeline.leads.appointments import iso, release_slot
from pipeline.leads.document import (
    Context,
    LeadFacts,
    LeadSettings,
    build_document,
    load_catalogue,
    load_context,
    newest_evidence,
)
from pipeline.leads.holds import HELD, HoldReason, evidence_hold
from pipeline.store.connection import transaction

log = logging.getLogger(__name__)

PROBABILITY_STEP: Final = 0.10
HIGH_PROBABILITY: Final = 0.80
"""A model probability at or above this makes a lead "high" rather than "medium"."""
DTC_HORIZON_DAYS: Final = 30
"""Horizon of a lead raised by fault codes alone (no model score)."""
BLOCKING_STATES: Final = ("new", "sent", "acknowledged", "booked", "dismissed", HELD)
"""Lead states that stop a second lead for the same vehicle and component ("done" does not)."""
TOP_FACTORS: Final = 5


@dataclass(frozen=True, slots=True)
class AdviceReport:
    """How many leads one :func:`advise` run created, escalated, left alone, held and
    released."""

    new: int
    escalated: int
    unchanged: int
    held: int = 0
    """Leads this run created, escalated or kept in state ``held`` (never sent)."""
    released: int = 0
    """Held leads whose cause is gone: sent now (they count in ``lead_ids``)."""
    lead_ids: tuple[str, ...] = field(default=(), compare=False)
    """Leads created, escalated or released by this run (their outbox rows are pending)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the evidence says about one (vehicle, component) right now."""

    vehicle_id: str
    component: str
    probability: float | None = None
    horizon_days: int = DTC_HORIZON_DAYS
    model_id: str | None = None
    codes: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    top_factors: tuple[Any, ...] = ()

    @property
    def severity(self) -> str:
        """The worst of the model's and the fault codes' severities."""
        levels = [c["severity"] for c in self.codes]
        if self.probability is not None:
            levels.append("high" if self.probability >= HIGH_PROBABILITY else "medium")
        return max(levels, key=severity_rank)

    def facts(self) -> LeadFacts:
        """The candidate as the document builder sees it."""
        return LeadFacts(self.vehicle_id, self.component, self.severity, self.probability,
                         self.horizon_days, self.model_id, self.codes, self.top_factors)


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What every advice run reads that does not change while one process holds the store:
    whether ``scores`` has its explanation column, and the service catalogue.

    Ingest's urgent leads read these once at start (:meth:`load`) instead of two queries
    per lead: DuckDB lets one process write a store file, so a catalogue import cannot
    happen while ingest holds it. A caller that imports the catalogue itself passes None.
    """

    explanation_column: bool
    catalogue: dict[str, tuple[Any, ...]]

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection) -> StoreFacts:
        """Read them from ``con``."""
        return cls(_has_explanation(con), load_catalogue(con))


@dataclass(frozen=True, slots=True)
class _OpenLead:
    lead_id: str
    severity: str
    probability: float
    document: dict[str, Any]
    state: str
    hold_reason: str | None


def advise(con: duckdb.DuckDBPyConnection, *, now: dt.datetime | None = None,
           vehicles: Collection[str] | None = None, min_severity: str = "low",
           daily_features: bool = True, settings: LeadSettings | None = None,
           facts: StoreFacts | None = None) -> AdviceReport:
    """Create or escalate leads from the latest scores and the active fault codes.

    Args:
        con: an open store with master data imported (customers, centres, capacity,
            catalogue: ``fleetcare fleet import``); a vehicle without a customer or consent
            gets held leads, other missing pieces leave the matching lead fields null.
        now: the advice time (default: now, UTC). Scores after ``now.date()`` and fault codes
            after ``now`` are ignored; appointments are proposed from the next day on.
        vehicles: only these vehicles (default: the whole fleet).
        min_severity: ignore candidates milder than this (urgent leads pass ``"critical"``).
        daily_features: quote daily features as evidence (False: the raw signals of the
            last day, which is much cheaper for a single urgent lead).
        settings: the console's address and the evidence age limit (default: from the
            environment, :mod:`pipeline.config`).
        facts: the store's catalogue and schema, read once by a long-running caller
            (default: read now).

    Returns:
        Counts of new, escalated and unchanged leads, and the ids of the leads issued.
    """
    now = now or dt.datetime.now(dt.UTC)
    settings = settings or LeadSettings.from_settings()
    floor = severity_rank(min_severity)
    wanted = None if vehicles is None else sorted(set(vehicles))
    candidates = [c for c in _candidates(con, now, wanted, facts)
                  if severity_rank(c.severity) >= floor]
    counts = {"new": 0, "escalated": 0, "unchanged": 0, "held": 0, "released": 0}
    if not candidates:
        log.info("advice: %s", counts)
        return AdviceReport(**counts, lead_ids=())
    open_leads = _open_leads(con, wanted)
    issued: list[str] = []
    with transaction(con):
        vehicle_ids = {c.vehicle_id for c in candidates}
        context = load_context(con, now, vehicle_ids, daily_features=daily_features,
                               catalogue=None if facts is None else facts.catalogue)
        for cand in candidates:
            hold = context.holds.get(cand.vehicle_id) or evidence_hold(
                newest_evidence(cand.facts(), context), now, settings.evidence_max_age_days)
            outcome, lead_id = _apply(
                con, cand, open_leads.get((cand.vehicle_id, cand.component)), context, now,
                hold, settings)
            counts[outcome] += 1
            if outcome in ("new", "escalated", "released"):
                issued.append(lead_id)
    log.info("advice: %s", counts)
    return AdviceReport(**counts, lead_ids=tuple(issued))


_SCORES_SQL: Final = """
WITH latest AS (
  SELECT *, row_number() OVER (PARTITION BY vehicle_id, component ORDER BY as_of DESC) AS rn
  FROM scores WHERE as_of <= $today AND ($all OR list_contains($vehicles, vehicle_id))
)
SELECT l.vehicle_id, l.component, l.probability, l.horizon_days, l.model_id, {explanation}
FROM latest l JOIN model_registry m USING (model_id)
WHERE l.rn = 1 AND l.probability >= CAST(m.metrics->>'$.threshold' AS DOUBLE)
"""


def _candidates(con: duckdb.DuckDBPyConnection, now: dt.datetime,
                wanted: list[str] | None, facts: StoreFacts | None) -> list[Candidate]:
    """Merge scores above their model's threshold with active, catalogued fault codes."""
    scores = [] if wanted == [] else _scores(con, now, wanted, facts)
    codes = _active_codes(con, now, wanted)
    by_key: dict[tuple[str, str], Candidate] = {
        (v, c): Candidate(v, c, float(p), int(h), m, (), _top_factors(x))
        for v, c, p, h, m, x in scores
    }
    for row in codes.iter_rows(named=True):
        key = (row["vehicle_id"], row["component"])
        base = by_key.get(key, Candidate(*key))
        code = {k: row[k] for k in ("code", "description", "severity", "status")}
        code["last_seen"] = iso(row["last_seen"])
        by_key[key] = replace(base, codes=(*base.codes, code))
    return [by_key[k] for k in sorted(by_key)]


def _scores(con: duckdb.DuckDBPyConnection, now: dt.datetime, wanted: list[str] | None,
            facts: StoreFacts | None) -> list[tuple[Any, ...]]:
    """Latest score per vehicle and component above threshold, with its explanation if any.

    The vehicles are kept before the window numbers the scores, not after: one vehicle's
    advice reads that vehicle's scores, not the fleet's history."""
    explained = facts.explanation_column if facts is not None else _has_explanation(con)
    sql = _SCORES_SQL.format(explanation="l.explanation" if explained else "NULL")
    return con.execute(sql, {"today": now.date(), "all": wanted is None,
                             "vehicles": wanted or []}).fetchall()


def _has_explanation(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'scores'"
        " AND column_name = 'explanation'").fetchone()
    return bool(row and row[0])


def _top_factors(explanation: Any) -> tuple[Any, ...]:
    """The first few factors of a score's explanation, whatever its exact JSON shape."""
    if explanation is None:
        return ()
    value = json.loads(explanation) if isinstance(explanation, str) else explanation
    if isinstance(value, dict):
        value = value.get("top_factors", value.get("factors", [value]))
    if not isinstance(value, list):
        value = [value]
    return tuple(value[:TOP_FACTORS])


def _active_codes(con: duckdb.DuckDBPyConnection, now: dt.datetime,
                  wanted: list[str] | None) -> pl.DataFrame:
    """Catalogued codes active at ``now``: not cleared by the vehicle nor by a repair of
    their component since (:mod:`pipeline.features.active_codes`)."""
    active = active_fault_codes(con, now, wanted)
    return active.filter(pl.col("component").is_not_null())


def _open_leads(con: duckdb.DuckDBPyConnection, wanted: list[str] | None
                ) -> dict[tuple[str, str], _OpenLead]:
    """The open leads of ``wanted`` (None: the fleet's), documents parsed."""
    rows = con.execute(
        "SELECT vehicle_id, component, lead_id, severity, probability, document, state,"
        " hold_reason FROM leads WHERE list_contains($states, state)"
        " AND ($all OR list_contains($vehicles, vehicle_id))",
        {"states": list(BLOCKING_STATES), "all": wanted is None,
         "vehicles": wanted or []}).fetchall()
    return {(v, c): _OpenLead(lid, sev, float(p), json.loads(doc), state, hold)
            for v, c, lid, sev, p, doc, state, hold in rows}


def _apply(
    con: duckdb.DuckDBPyConnection, cand: Candidate, lead: _OpenLead | None,
    context: Context, now: dt.datetime, hold: HoldReason | None, settings: LeadSettings,
) -> tuple[str, str]:
    """Create, escalate, hold, release or leave one lead; return which, and its id."""
    prob = prob_of(cand)
    if lead is None:
        doc = build_document(con, cand.facts(), f"lead-{uuid.uuid4().hex}", 1, context, now,
                             book=hold is None, settings=settings)
        insert_lead(con, doc, prob, now, hold=hold)
        return ("new" if hold is None else "held"), doc["lead_id"]
    if lead.state == HELD:
        return _apply_held(con, cand, lead, context, now, hold, settings)
    rank_up = severity_rank(cand.severity) > severity_rank(lead.severity)
    if not rank_up and prob < lead.probability + PROBABILITY_STEP:
        if hold is not None and lead.state == "new":
            # not yet at the CRM: the cause arose since it was queued (consent withdrawn)
            _withhold(con, lead.lead_id, lead.document)
            con.execute("UPDATE leads SET state = ?, hold_reason = ?, updated_at = ?"
                        " WHERE lead_id = ?", [HELD, hold.value, now, lead.lead_id])
            return "held", lead.lead_id
        return "unchanged", lead.lead_id
    release_slot(con, lead.document.get("proposed_appointment"))
    revision = int(lead.document["revision"]) + 1
    doc = build_document(con, cand.facts(), lead.lead_id, revision, context, now,
                         book=hold is None, settings=settings)
    _update(con, cand, prob, now, doc, hold)
    if hold is not None:
        _withhold(con, lead.lead_id, None)
        return "held", lead.lead_id
    enqueue(con, doc)
    return "escalated", lead.lead_id


def _withhold(con: duckdb.DuckDBPyConnection, lead_id: str,
              document: dict[str, Any] | None) -> None:
    """A lead about to be held gives back its slot (when ``document`` still holds one) and
    loses its outbox rows not delivered yet: nothing of it may reach the CRM now."""
    if document is not None:
        release_slot(con, document.get("proposed_appointment"))
    con.execute("DELETE FROM outbox WHERE lead_id = ? AND status = 'pending'", [lead_id])


def _apply_held(
    con: duckdb.DuckDBPyConnection, cand: Candidate, lead: _OpenLead, context: Context,
    now: dt.datetime, hold: HoldReason | None, settings: LeadSettings,
) -> tuple[str, str]:
    """A held lead stays held (its reason kept up to date) or, its cause gone, is released:
    rebuilt from today's evidence and queued, under the revision it was held at unless that
    revision has an outbox row already."""
    if hold is not None:
        if lead.hold_reason != hold:
            con.execute("UPDATE leads SET hold_reason = ?, updated_at = ? WHERE lead_id = ?",
                        [hold.value, now, lead.lead_id])
        return "held", lead.lead_id
    revision = int(lead.document["revision"])
    taken = con.execute("SELECT count(*) FROM outbox WHERE event_id = ?",
                        [f"{lead.lead_id}.r{revision}"]).fetchall()[0]
    if taken[0]:
        revision += 1  # that revision went out once (or was given up): a new webhook id
    doc = build_document(con, cand.facts(), lead.lead_id, revision, context, now,
                         settings=settings)
    _update(con, cand, prob_of(cand), now, doc, None)
    enqueue(con, doc)
    return "released", lead.lead_id


def prob_of(cand: Candidate) -> float:
    """The probability a lead stores for ``cand`` (0 for a lead of fault codes alone)."""
    return cand.probability if cand.probability is not None else 0.0


def _update(con: duckdb.DuckDBPyConnection, cand: Candidate, prob: float, now: dt.datetime,
            doc: dict[str, Any], hold: HoldReason | None) -> None:
    con.execute(
        "UPDATE leads SET state = ?, hold_reason = ?, severity = ?, probability = ?,"
        " horizon_days = ?, updated_at = ?, document = ? WHERE lead_id = ?",
        ["new" if hold is None else HELD, None if hold is None else hold.value, cand.severity,
         prob, cand.horizon_days, now, json.dumps(doc), doc["lead_id"]])


def insert_lead(con: duckdb.DuckDBPyConnection, doc: dict[str, Any], prob: float,
                now: dt.datetime, *, hold: HoldReason | None = None) -> None:
    """Store a new lead (state ``new``) and its first outbox row; the caller commits.

    With ``hold`` the lead is stored ``held`` with that reason and gets no outbox row.
    """
    con.execute(
        "INSERT INTO leads (lead_id, vehicle_id, component, state, hold_reason, severity,"
        " probability, horizon_days, created_at, updated_at, document)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [doc["lead_id"], doc["vehicle"]["vehicle_id"], doc["component"],
         "new" if hold is None else HELD, None if hold is None else hold.value,
         doc["severity"], prob, doc["horizon_days"], now, now, json.dumps(doc)])
    if hold is None:
        enqueue(con, doc)


def enqueue(con: duckdb.DuckDBPyConnection, doc: dict[str, Any], event_id: str | None = None,
            ) -> None:
    """Add the outbox row announcing this revision of the lead (same transaction)."""
    event_id = event_id or f"{doc['lead_id']}.r{doc['revision']}"
    con.execute("INSERT INTO outbox (event_id, lead_id, body, next_attempt_at)"
                " VALUES (?, ?, ?, ?)",
                [event_id, doc["lead_id"], json.dumps(doc, separators=(",", ":")),
                 doc["issued_at"]])



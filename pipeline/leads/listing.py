"""Reading leads back out of the store, for people (the CLI) rather than machines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import orjson

from pipeline.leads import wording


@dataclass(frozen=True, slots=True)
class LeadSummary:
    """One line of ``fleetcare leads list``."""

    lead_id: str
    vehicle_id: str
    component: str
    severity: str
    state: str
    probability: float
    horizon_days: int
    created_at: datetime
    hold_reason: str | None = None
    """Why the lead is held (state ``held``), else None."""
    basis: str = ""
    """What the lead rests on, as a person reads it: the model's confidence (``93 % high``),
    the fault codes and their severity (``P0AA6 critical``) or the campaign. A lead of fault
    codes alone stores probability 0, which is not a model's verdict and is never shown."""


def list_leads(con: duckdb.DuckDBPyConnection, *, state: str | None = None,
               limit: int = 100) -> list[LeadSummary]:
    """Leads, newest first, optionally only those in one state (``held``: the held ones)."""
    rows = con.execute(
        "SELECT lead_id, vehicle_id, component, severity, state, probability, horizon_days,"
        " created_at, hold_reason, document FROM leads WHERE ? IS NULL OR state = ?"
        " ORDER BY created_at DESC, lead_id LIMIT ?", [state, state, limit]).fetchall()
    return [_summary(row) for row in rows]


def _summary(row: tuple[Any, ...]) -> LeadSummary:
    lead_id, vehicle, component, severity, state, probability, horizon, created, hold, doc = row
    return LeadSummary(lead_id, vehicle, component, severity, state, probability, horizon,
                       created, hold, lead_basis(orjson.loads(doc)))


def lead_basis(document: dict[str, Any]) -> str:
    """What a lead rests on, in a few words (see :attr:`LeadSummary.basis`).

    Works on documents of every schema version: older ones have no ``confidence``."""
    codes = (document.get("evidence") or {}).get("fault_codes") or []
    parts = [" ".join(f"{c['code']} {c['severity']}" for c in codes)] if codes else []
    probability = document.get("probability")
    if probability is not None:
        stated = (document.get("confidence") or {}).get("percent")
        whole = stated if stated is not None else wording.percent(probability)
        level = (document.get("confidence") or {}).get("level")
        parts.insert(0, f"{whole} %" + (f" {level}" if level else ""))
    if not parts and document.get("campaign"):
        parts.append(f"campaign {document['campaign']}")
    return ", ".join(parts) or "-"


def lead_document(con: duckdb.DuckDBPyConnection, lead_id: str) -> dict[str, Any] | None:
    """The full lead as sent to the CRM, or None when no lead has this id."""
    row = con.execute("SELECT document FROM leads WHERE lead_id = ?", [lead_id]).fetchone()
    if row is None:
        return None
    document: dict[str, Any] = orjson.loads(row[0])
    return document

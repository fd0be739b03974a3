"""Reading leads back out of the store, for people (the CLI) rather than machines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import orjson


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


def list_leads(con: duckdb.DuckDBPyConnection, *, state: str | None = None,
               limit: int = 100) -> list[LeadSummary]:
    """Leads, newest first, optionally only those in one state (``held``: the held ones)."""
    rows = con.execute(
        "SELECT lead_id, vehicle_id, component, severity, state, probability, horizon_days,"
        " created_at, hold_reason FROM leads WHERE ? IS NULL OR state = ?"
        " ORDER BY created_at DESC, lead_id LIMIT ?", [state, state, limit]).fetchall()
    return [LeadSummary(*row) for row in rows]


def lead_document(con: duckdb.DuckDBPyConnection, lead_id: str) -> dict[str, Any] | None:
    """The full lead as sent to the CRM, or None when no lead has this id."""
    row = con.execute("SELECT document FROM leads WHERE lead_id = ?", [lead_id]).fetchone()
    if row is None:
        return None
    document: dict[str, Any] = orjson.loads(row[0])
    return document

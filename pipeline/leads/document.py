"""The lead as the CRM receives it: who, what, how sure, how urgent, what it costs, when.

Advice, urgent leads and campaigns all build their documents here, so every lead a service
centre sees has the shape ``lead.schema.json`` publishes. Personal data (customer name,
e-mail, phone) is joined only now, when a lead is built, never copied into other tables.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Final

import duckdb
import polars as pl

from pipeline.features.daily import COMPONENT_FEATURES, CONTEXT_FEATURES, build_daily_features
from pipeline.leads.appointments import book_slot, iso

LEAD_SCHEMA_VERSION: Final = 1
CONTACT: Final = {"critical": "immediate", "high": "within_48h", "medium": "routine",
                  "low": "routine"}
RAW_EVIDENCE_WINDOW: Final = dt.timedelta(days=1)
"""Urgent leads quote the raw signals of the last day instead of waiting for daily features."""
RAW_EVIDENCE: Final[dict[str, tuple[str, ...]]] = {
    "traction_battery": ("TractionBattery", "BMS_"),
    "lv_battery": ("LowVoltageBattery", "BCM_LowVoltage"),
    "brakes": ("Brake",),
}
"""Name fragments of the raw signals (VSS path or DBC ``Message.Signal``) about each component.

An urgent lead quotes only these and :data:`RAW_CONTEXT`: the centre needs the component's
state, not how fast the customer drove that day (speeds, engine revs stay out of the lead)."""
RAW_CONTEXT: Final = ("Vehicle.TraveledDistance", "Vehicle.Exterior.AirTemperature",
                      "VCU_Motion.Odometer", "BCM_Ambient.")


@dataclass(frozen=True, slots=True)
class Context:
    """Facts shared by every lead of one run: the register, latest signals, the price list."""

    vehicles: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    catalogue: dict[str, tuple[Any, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LeadFacts:
    """What a lead says about one (vehicle, component), before personal data is joined."""

    vehicle_id: str
    component: str
    severity: str
    probability: float | None
    horizon_days: int
    model_id: str | None
    codes: tuple[dict[str, Any], ...] = ()
    top_factors: tuple[Any, ...] = ()
    campaign: str | None = None


def load_context(con: duckdb.DuckDBPyConnection, now: dt.datetime, vehicles: set[str],
                 *, daily_features: bool = True) -> Context:
    """Per-vehicle facts for ``vehicles``; raw last-day signals when not ``daily_features``."""
    if not vehicles:
        return Context()
    ids = sorted(vehicles)
    rows = con.execute(
        "SELECT v.vehicle_id, v.model, v.region, c.customer_id, c.name, c.email, c.phone,"
        " s.centre_id, s.name, s.region FROM vehicles v"
        " LEFT JOIN customers c USING (customer_id)"
        " LEFT JOIN service_centres s ON s.centre_id = v.centre_id"
        " WHERE list_contains(?, v.vehicle_id)", [ids]).fetchall()
    catalogue = {r[0]: r[1:] for r in con.execute(
        "SELECT component, work, parts_eur, labour_hours, labour_rate_eur"
        " FROM service_catalogue").fetchall()}
    signals = (_daily_signals(con, now, ids) if daily_features
               else _raw_signals(con, now, ids))
    return Context({r[0]: r for r in rows}, signals, catalogue)


def _daily_signals(con: duckdb.DuckDBPyConnection, now: dt.datetime,
                   ids: list[str]) -> dict[str, dict[str, Any]]:
    feats = build_daily_features(con, until=now).filter(pl.col("vehicle_id").is_in(ids))
    latest = feats.filter(pl.col("day") == pl.col("day").max().over("vehicle_id"))
    out: dict[str, dict[str, Any]] = {}
    for row in latest.iter_rows(named=True):
        values = {n: round(float(v), 4) for n, v in row.items()
                  if n not in ("vehicle_id", "day") and isinstance(v, int | float)}
        out[row["vehicle_id"]] = {"as_of": row["day"].isoformat(), "values": values}
    return out


def _raw_signals(con: duckdb.DuckDBPyConnection, now: dt.datetime,
                 ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = con.execute(
        "SELECT vehicle_id, signal, arg_max(value, ts), max(ts) FROM telemetry"
        " WHERE list_contains(?, vehicle_id) AND ts > ? AND ts <= ? GROUP BY ALL",
        [ids, now - RAW_EVIDENCE_WINDOW, now]).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for vehicle_id, signal, value, ts in rows:
        entry = out.setdefault(vehicle_id, {"as_of": ts.date().isoformat(), "values": {}})
        entry["values"][signal] = round(float(value), 4)
        entry["as_of"] = max(entry["as_of"], ts.date().isoformat())
    return out


def build_document(con: duckdb.DuckDBPyConnection, facts: LeadFacts, lead_id: str,
                   revision: int, context: Context, now: dt.datetime, *,
                   book: bool = True) -> dict[str, Any]:
    """The lead document; holds an appointment slot unless the lead is critical or ``book``
    is False (a held lead takes no slot until it is released)."""
    vrow = context.vehicles.get(facts.vehicle_id)
    centre = _centre(vrow)
    work = _work(context.catalogue.get(facts.component))
    appointment = None
    if book and facts.severity != "critical" and centre is not None:
        hours = work["labour_hours"] if work else 0.0
        appointment = book_slot(con, centre["centre_id"], now.date(), facts.horizon_days, hours)
    return {
        "schema_version": LEAD_SCHEMA_VERSION, "lead_id": lead_id, "revision": revision,
        "issued_at": iso(now), "component": facts.component, "severity": facts.severity,
        "contact": CONTACT[facts.severity], "roadside_assistance": facts.severity == "critical",
        "probability": facts.probability, "horizon_days": facts.horizon_days,
        "model_id": facts.model_id, "campaign": facts.campaign,
        "vehicle": {"vehicle_id": facts.vehicle_id, "model": vrow[1] if vrow else None,
                    "region": vrow[2] if vrow else None},
        "customer": _customer(vrow), "centre": centre,
        "evidence": _evidence(facts, context.signals.get(facts.vehicle_id)),
        "recommended_work": work, "proposed_appointment": appointment,
    }


def _customer(vrow: tuple[Any, ...] | None) -> dict[str, Any] | None:
    if vrow is None or vrow[3] is None:
        return None
    return {"customer_id": vrow[3], "name": vrow[4], "email": vrow[5], "phone": vrow[6]}


def _centre(vrow: tuple[Any, ...] | None) -> dict[str, Any] | None:
    if vrow is None or vrow[7] is None:
        return None
    return {"centre_id": vrow[7], "name": vrow[8], "region": vrow[9]}


def _evidence(facts: LeadFacts, signals: dict[str, Any] | None) -> dict[str, Any]:
    """The component's own signals (daily features, or raw signals for urgent leads)."""
    names = {n for n in (*COMPONENT_FEATURES[facts.component], *CONTEXT_FEATURES)
             if not n.startswith("dtc_count__")}
    values = {} if signals is None else signals["values"]
    raw = (*RAW_EVIDENCE[facts.component], *RAW_CONTEXT)
    chosen = {n: v for n, v in values.items()
              if n in names or ("." in n and any(part in n for part in raw))}
    return {"as_of": signals["as_of"] if signals else None, "signals": chosen,
            "fault_codes": list(facts.codes), "top_factors": list(facts.top_factors)}


def _work(entry: tuple[Any, ...] | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    work, parts, hours, rate = entry
    labour = round(hours * rate, 2)
    return {"description": work, "parts_eur": parts, "labour_hours": hours,
            "labour_rate_eur": rate, "labour_eur": labour,
            "total_eur": round(parts + labour, 2), "currency": "EUR"}

"""The lead as the CRM receives it: who, what, how sure, how urgent, what it costs, when.

Advice, urgent leads and campaigns all build their documents here, so every lead a service
centre sees has the shape ``lead.schema.json`` publishes. Personal data (customer name,
e-mail, phone) is joined only now, when a lead is built, never copied into other tables.

A lead is written for a service advisor: a one-sentence ``headline`` (what to do and why),
evidence items with unit, meaning and date, confidence as a percentage and a word, who pays
(warranty or customer), the proposed slot in the centre's own time zone, and an
``evidence_url`` to the console page behind it (:mod:`pipeline.leads.wording` has the words).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Final

import duckdb
import polars as pl

from pipeline.config import PipelineSettings, load_pipeline_settings
from pipeline.features.daily import COMPONENT_FEATURES, CONTEXT_FEATURES, build_daily_features
from pipeline.leads import wording
from pipeline.leads.appointments import book_slot, iso
from pipeline.leads.holds import HOLD_CASE, HoldReason

LEAD_SCHEMA_VERSION: Final = 2
WARRANTY_START: Final = (7, 1)
"""(month, day) of the model year a vehicle's warranty is counted from: the register has a
model year but no first-registration date, so a car is taken as registered mid-year."""
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
class LeadSettings:
    """The pipeline settings a lead document depends on (:mod:`pipeline.config`)."""

    console_base_url: str = "http://127.0.0.1:8765"
    evidence_max_age_days: int = 14

    @classmethod
    def from_settings(cls, settings: PipelineSettings | None = None) -> LeadSettings:
        """From ``settings``, or from the environment (``FLEETCARE_PIPELINE__*``) if None.

        Raises:
            TerminalPipelineError: the environment holds an invalid value.
        """
        settings = settings or load_pipeline_settings()
        return cls(settings.console_base_url, settings.evidence_max_age_days)

    def evidence_url(self, lead_id: str) -> str:
        """The console page that shows the lead and its evidence."""
        return f"{self.console_base_url.rstrip('/')}/leads/{lead_id}"


@dataclass(frozen=True, slots=True)
class Context:
    """Facts shared by every lead of one run: the register, latest signals, the price list."""

    vehicles: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    catalogue: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    holds: dict[str, HoldReason] = field(default_factory=dict)
    """The vehicle reasons to hold each vehicle's leads, as :func:`hold_reasons` says them."""


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


_VEHICLES_SQL: Final = (
    "SELECT v.vehicle_id, v.model, v.region, c.customer_id, c.name, c.email, c.phone,"
    " s.centre_id, s.name, s.region, s.timezone, v.vin, v.model_year, i.vehicle_id,"
    f" {HOLD_CASE} FROM (SELECT unnest(?) AS vehicle_id) i"
    " LEFT JOIN vehicles v ON v.vehicle_id = i.vehicle_id"
    " LEFT JOIN customers c ON c.customer_id = v.customer_id"
    " LEFT JOIN service_centres s ON s.centre_id = v.centre_id")
"""The register's rows of the vehicles (NULL for one not registered) and their holds."""


def load_context(con: duckdb.DuckDBPyConnection, now: dt.datetime, vehicles: set[str],
                 *, daily_features: bool = True,
                 catalogue: dict[str, tuple[Any, ...]] | None = None) -> Context:
    """Per-vehicle facts for ``vehicles`` (the register's rows and the reasons to hold
    their leads, in one query); raw last-day signals when not ``daily_features``;
    ``catalogue`` as :func:`load_catalogue` read it earlier (None: read it now)."""
    if not vehicles:
        return Context()
    ids = sorted(vehicles)
    rows = con.execute(_VEHICLES_SQL, [ids]).fetchall()
    signals = (_daily_signals(con, now, ids) if daily_features
               else _raw_signals(con, now, ids))
    return Context({r[0]: r[:13] for r in rows if r[0] is not None}, signals,
                   load_catalogue(con) if catalogue is None else catalogue,
                   {r[13]: HoldReason(r[14]) for r in rows if r[14] is not None})


def load_catalogue(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[Any, ...]]:
    """The service catalogue by component: work, parts, labour hours and rate, warranty."""
    return {r[0]: r[1:] for r in con.execute(
        "SELECT component, work, parts_eur, labour_hours, labour_rate_eur, warranty_months"
        " FROM service_catalogue").fetchall()}


def _daily_signals(con: duckdb.DuckDBPyConnection, now: dt.datetime,
                   ids: list[str]) -> dict[str, dict[str, Any]]:
    feats = build_daily_features(con, until=now).filter(pl.col("vehicle_id").is_in(ids))
    latest = feats.filter(pl.col("day") == pl.col("day").max().over("vehicle_id"))
    out: dict[str, dict[str, Any]] = {}
    for row in latest.iter_rows(named=True):
        values = {n: float(v) for n, v in row.items()
                  if n not in ("vehicle_id", "day") and isinstance(v, int | float)}
        day = row["day"].isoformat()
        out[row["vehicle_id"]] = {"as_of": day, "values": values,
                                  "dates": dict.fromkeys(values, day)}
    return out


def _raw_signals(con: duckdb.DuckDBPyConnection, now: dt.datetime,
                 ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = con.execute(
        "SELECT vehicle_id, signal, arg_max(value, ts), max(ts) FROM telemetry"
        " WHERE list_contains(?, vehicle_id) AND ts > ? AND ts <= ? GROUP BY ALL",
        [ids, now - RAW_EVIDENCE_WINDOW, now]).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for vehicle_id, signal, value, ts in rows:
        day = ts.astimezone(dt.UTC).date().isoformat()
        entry = out.setdefault(vehicle_id, {"as_of": day, "values": {}, "dates": {}})
        entry["values"][signal] = float(value)
        entry["dates"][signal] = day
        entry["as_of"] = max(entry["as_of"], day)
    return out


def newest_evidence(facts: LeadFacts, context: Context) -> dt.date | None:
    """The day of the lead's newest evidence: its signals' day or a fault code's last
    sighting, whichever is later (None when it has neither)."""
    signals = context.signals.get(facts.vehicle_id)
    days = [dt.date.fromisoformat(signals["as_of"])] if signals and signals["values"] else []
    days += [dt.datetime.fromisoformat(c["last_seen"].replace("Z", "+00:00")).date()
             for c in facts.codes]
    return max(days, default=None)


def build_document(con: duckdb.DuckDBPyConnection, facts: LeadFacts, lead_id: str,
                   revision: int, context: Context, now: dt.datetime, *,
                   book: bool = True, settings: LeadSettings | None = None) -> dict[str, Any]:
    """The lead document; holds an appointment slot unless the lead is critical or ``book``
    is False (a held lead takes no slot until it is released)."""
    settings = settings or LeadSettings()
    vrow = context.vehicles.get(facts.vehicle_id)
    centre = _centre(vrow)
    entry = context.catalogue.get(facts.component)
    work = _work(entry)
    appointment = None
    if book and facts.severity != "critical" and centre is not None:
        hours = work["labour_hours"] if work else 0.0
        appointment = book_slot(con, centre["centre_id"], now, facts.horizon_days, hours,
                                timezone=centre["timezone"], lead_id=lead_id)
    evidence = _evidence(facts, context.signals.get(facts.vehicle_id))
    payer, basis = _payer(vrow, entry, now)
    values = (context.signals.get(facts.vehicle_id) or {}).get("values", {})
    return {
        "schema_version": LEAD_SCHEMA_VERSION, "lead_id": lead_id, "revision": revision,
        "issued_at": iso(now),
        "headline": wording.headline(facts.component, facts.severity, _features(values),
                                     list(facts.codes), facts.campaign),
        "component": facts.component, "severity": facts.severity,
        "contact": CONTACT[facts.severity], "roadside_assistance": facts.severity == "critical",
        "probability": None if facts.probability is None else round(facts.probability, 3),
        "confidence": wording.confidence(facts.probability, facts.severity,
                                         has_codes=bool(facts.codes), campaign=facts.campaign,
                                         horizon_days=facts.horizon_days),
        "horizon_days": facts.horizon_days, "model_id": facts.model_id,
        "campaign": facts.campaign,
        "vehicle": {"vehicle_id": facts.vehicle_id, "vin": vrow[11] if vrow else None,
                    "model": vrow[1] if vrow else None,
                    "model_year": vrow[12] if vrow else None,
                    "region": vrow[2] if vrow else None},
        "customer": _customer(vrow), "centre": centre, "evidence": evidence,
        "recommended_work": work, "payer": payer, "payer_basis": basis,
        "proposed_appointment": appointment,
        "evidence_url": settings.evidence_url(lead_id),
    }


def _features(values: dict[str, float]) -> dict[str, float]:
    """Daily-feature names for the headline; raw signals (urgent leads) under the feature
    they are the day's reading of."""
    out = dict(values)
    for name, value in values.items():
        if name.endswith(".StateOfHealth"):
            out.setdefault("soh", value)
        elif name.endswith("CrankMinVoltage"):
            out.setdefault("crank_dip_min", value)
    return out


def _customer(vrow: tuple[Any, ...] | None) -> dict[str, Any] | None:
    if vrow is None or vrow[3] is None:
        return None
    return {"customer_id": vrow[3], "name": vrow[4], "email": vrow[5], "phone": vrow[6]}


def _centre(vrow: tuple[Any, ...] | None) -> dict[str, Any] | None:
    if vrow is None or vrow[7] is None:
        return None
    return {"centre_id": vrow[7], "name": vrow[8], "region": vrow[9],
            "timezone": vrow[10] or "UTC"}


def _evidence(facts: LeadFacts, signals: dict[str, Any] | None) -> dict[str, Any]:
    """The component's own signals (daily features, or raw signals for urgent leads), each
    with unit, meaning and day; placeholders that are not facts are left out."""
    names = {n for n in (*COMPONENT_FEATURES[facts.component], *CONTEXT_FEATURES)
             if not n.startswith("dtc_count__")}
    values = {} if signals is None else signals["values"]
    dates = {} if signals is None else signals.get("dates", {})
    raw = (*RAW_EVIDENCE[facts.component], *RAW_CONTEXT)
    chosen = sorted(n for n, v in values.items()
                    if (n in names or ("." in n and any(part in n for part in raw)))
                    and wording.is_fact(n, v))
    items = [_item(n, values[n], dates.get(n) or signals["as_of"]) for n in chosen
             ] if signals else []
    return {"as_of": signals["as_of"] if signals else None, "signals": items,
            "fault_codes": list(facts.codes),
            "top_factors": [wording.explain_factor(f) for f in facts.top_factors]}


def _item(name: str, value: float, day: str) -> dict[str, Any]:
    what = wording.quantity(name)
    if name.endswith(("_to_limit", "_to_threshold")):
        value = max(0.0, value)  # past the limit reads "0 km left", not a negative distance
    shown = wording.readable(value)
    return {"signal": name, "value": shown, "unit": what.unit, "meaning": what.meaning,
            "as_of": day, "text": f"{what.meaning}: {wording.with_unit(shown, what.unit)}"}


def _work(entry: tuple[Any, ...] | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    work, parts, hours, rate, _warranty = entry
    labour = round(hours * rate, 2)
    return {"description": work, "parts_eur": parts, "labour_hours": hours,
            "labour_rate_eur": rate, "labour_eur": labour,
            "total_eur": round(parts + labour, 2), "currency": "EUR"}


def _payer(vrow: tuple[Any, ...] | None, entry: tuple[Any, ...] | None,
           now: dt.datetime) -> tuple[str, str]:
    """Who pays for the work, and on what grounds: the warranty while the vehicle is younger
    than the catalogue's warranty months (counted from :data:`WARRANTY_START` of its model
    year), else the customer; the customer when either figure is not on record."""
    model_year = vrow[12] if vrow else None
    months = entry[4] if entry else None
    if model_year is None or months is None:
        missing = "model year" if model_year is None else "the catalogue's warranty months"
        return "customer", (f"{missing} not on record: the customer pays unless the centre "
                            "finds the car under warranty")
    start = dt.date(int(model_year), *WARRANTY_START)
    total = start.month - 1 + int(months)
    end = dt.date(start.year + total // 12, total % 12 + 1, start.day)
    span = f"model year {model_year}, {months} months of warranty"
    if now.date() < end:
        return "warranty", f"{span}: covered until about {end.isoformat()}"
    return "customer", f"{span}: ended about {end.isoformat()}"

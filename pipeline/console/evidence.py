"""What the console's pages show, read from the store: leads, and a vehicle's recent history.

Everything here only reads. A lead's content is its stored document (what the CRM received);
a vehicle's trends come from the materialised ``daily_features`` when the flows wrote them
(the serving store), else straight from ``telemetry`` with the same daily statistics
(a one-file store, or a serving store before the features flow ran). A serving store keeps
no fault-code reports of its own; its timeline shows the codes the vehicle's leads quote.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Final

import duckdb
import orjson

from pipeline.features.daily_sql import PAD_WEAR

HISTORY_DAYS: Final = 180
"""How far back a vehicle's charts reach, counted back from its newest day of data."""

SERIES: Final = ("soh", "pad_wear_fl", "pad_wear_fr", "pad_wear_rl", "pad_wear_rr",
                 "crank_dip_min", "ambient_temp")
"""The daily features the charts draw (names as in :mod:`pipeline.features.daily`)."""

_SOH: Final = "Vehicle.Powertrain.TractionBattery.StateOfHealth"
_CRANK: Final = ("BCM_LowVoltage.CrankMinVoltage", "Event.Crank.MinVoltage")
_AIR: Final = "Vehicle.Exterior.AirTemperature"
_FROM_TELEMETRY: Final = f"""
SELECT CAST(timezone('UTC', ts) AS DATE) AS day,
  median(value) FILTER (WHERE signal = '{_SOH}') AS soh,
  {", ".join(f"max(value) FILTER (WHERE signal = '{s}') AS pad_wear_{k}"
             for k, s in PAD_WEAR.items())},
  min(value) FILTER (WHERE signal IN ('{_CRANK[0]}', '{_CRANK[1]}')) AS crank_dip_min,
  median(value) FILTER (WHERE signal = '{_AIR}') AS ambient_temp
FROM telemetry
WHERE vehicle_id = $vehicle AND ts >= $since
GROUP BY ALL ORDER BY day
"""
"""The same daily statistics as :data:`pipeline.features.daily_sql.DAILY`, for one vehicle."""


@dataclass(frozen=True, slots=True)
class LeadRow:
    """One lead as stored: its state, and the document the CRM received."""

    lead_id: str
    vehicle_id: str
    component: str
    severity: str
    state: str
    probability: float | None
    created_at: dt.datetime
    document: dict[str, Any]
    hold_reason: str | None = None
    """Why the lead is held and was not sent (state ``held``), else None."""


@dataclass(frozen=True, slots=True)
class FaultCodeEvent:
    """One fault-code report from the vehicle (or its clearing)."""

    ts: dt.datetime
    code: str
    status: str
    cleared: bool
    description: str


@dataclass(frozen=True, slots=True)
class VehicleHistory:
    """A vehicle's register row and recent trends: one daily series per :data:`SERIES` name."""

    vehicle_id: str
    model: str | None
    region: str | None
    series: dict[str, list[tuple[dt.date, float]]] = field(default_factory=dict)
    fault_codes: tuple[FaultCodeEvent, ...] = ()

    def values(self, name: str) -> list[tuple[dt.date, float]]:
        """The days and values of one series (empty when the vehicle never sent it)."""
        return self.series.get(name, [])


_LEAD_COLUMNS: Final = ("lead_id, vehicle_id, component, severity, state, probability,"
                        " created_at, document, hold_reason")


def recent_leads(con: duckdb.DuckDBPyConnection, limit: int = 100) -> list[LeadRow]:
    """The newest leads first."""
    rows = con.execute(f"SELECT {_LEAD_COLUMNS} FROM leads ORDER BY created_at DESC, lead_id"
                       " LIMIT ?", [limit]).fetchall()
    return [_lead(row) for row in rows]


def lead(con: duckdb.DuckDBPyConnection, lead_id: str) -> LeadRow | None:
    """The lead with this id, or None."""
    row = con.execute(f"SELECT {_LEAD_COLUMNS} FROM leads WHERE lead_id = ?",
                      [lead_id]).fetchone()
    return None if row is None else _lead(row)


def vehicle_leads(con: duckdb.DuckDBPyConnection, vehicle_id: str) -> list[LeadRow]:
    """Every lead about one vehicle, newest first."""
    rows = con.execute(f"SELECT {_LEAD_COLUMNS} FROM leads WHERE vehicle_id = ?"
                       " ORDER BY created_at DESC, lead_id", [vehicle_id]).fetchall()
    return [_lead(row) for row in rows]


def _lead(row: tuple[Any, ...]) -> LeadRow:
    lead_id, vehicle_id, component, severity, state, probability, created_at, document, held = row
    return LeadRow(lead_id, vehicle_id, component, severity, state,
                   None if probability is None else float(probability), created_at,
                   orjson.loads(document), held)


def vehicle_history(con: duckdb.DuckDBPyConnection, vehicle_id: str,
                    days: int = HISTORY_DAYS) -> VehicleHistory | None:
    """The vehicle's register row and its last ``days`` days of trends and fault codes; None
    when the store knows nothing about this vehicle."""
    registered = con.execute("SELECT model, region FROM vehicles WHERE vehicle_id = ?",
                             [vehicle_id]).fetchone()
    newest = _newest_day(con, vehicle_id)
    if registered is None and newest is None:
        return None
    model, region = registered if registered is not None else (None, None)
    since = (newest or dt.date.today()) - dt.timedelta(days=days - 1)
    series = _materialised(con, vehicle_id, since) or _from_telemetry(con, vehicle_id, since)
    codes = _fault_codes(con, vehicle_id, since) or _quoted_codes(con, vehicle_id)
    return VehicleHistory(vehicle_id, model, region, series, codes)


def _newest_day(con: duckdb.DuckDBPyConnection, vehicle_id: str) -> dt.date | None:
    row = con.execute(
        "SELECT greatest((SELECT max(day) FROM daily_features WHERE vehicle_id = $v),"
        " (SELECT CAST(timezone('UTC', max(ts)) AS DATE) FROM telemetry WHERE vehicle_id = $v),"
        " (SELECT CAST(timezone('UTC', max(ts)) AS DATE) FROM dtc_events"
        "  WHERE vehicle_id = $v))", {"v": vehicle_id}).fetchone()
    return row[0] if row else None


def _materialised(con: duckdb.DuckDBPyConnection, vehicle_id: str,
                  since: dt.date) -> dict[str, list[tuple[dt.date, float]]]:
    rows = con.execute(
        "SELECT feature, day, value FROM daily_features WHERE vehicle_id = ? AND day >= ?"
        " AND list_contains(?, feature) ORDER BY feature, day",
        [vehicle_id, since, list(SERIES)]).fetchall()
    series: dict[str, list[tuple[dt.date, float]]] = {}
    for feature, day, value in rows:
        series.setdefault(feature, []).append((day, float(value)))
    return series


def _from_telemetry(con: duckdb.DuckDBPyConnection, vehicle_id: str,
                    since: dt.date) -> dict[str, list[tuple[dt.date, float]]]:
    start = dt.datetime.combine(since, dt.time.min, tzinfo=dt.UTC)
    cursor = con.execute(_FROM_TELEMETRY, {"vehicle": vehicle_id, "since": start})
    names = [column[0] for column in cursor.description or []]
    series: dict[str, list[tuple[dt.date, float]]] = {}
    for row in cursor.fetchall():
        for name, value in zip(names[1:], row[1:], strict=True):
            if value is not None:
                series.setdefault(name, []).append((row[0], float(value)))
    return series


def _fault_codes(con: duckdb.DuckDBPyConnection, vehicle_id: str,
                 since: dt.date) -> tuple[FaultCodeEvent, ...]:
    start = dt.datetime.combine(since, dt.time.min, tzinfo=dt.UTC)
    rows = con.execute(
        "SELECT ts, code, status, cleared, description FROM dtc_events"
        " WHERE vehicle_id = ? AND ts >= ? ORDER BY ts, code", [vehicle_id, start]).fetchall()
    return tuple(FaultCodeEvent(*row) for row in rows)


def _quoted_codes(con: duckdb.DuckDBPyConnection, vehicle_id: str
                  ) -> tuple[FaultCodeEvent, ...]:
    """The fault codes the vehicle's leads quote, as of their last sighting: the timeline of
    a serving store, which keeps no ``dtc_events`` of its own (they stay in the landing store)."""
    seen: dict[tuple[str, str], FaultCodeEvent] = {}
    for row in vehicle_leads(con, vehicle_id):
        for code in (row.document.get("evidence") or {}).get("fault_codes") or []:
            if not isinstance(code, dict) or not code.get("code") or not code.get("last_seen"):
                continue
            try:
                at = dt.datetime.fromisoformat(str(code["last_seen"]))
            except ValueError:
                continue
            event = FaultCodeEvent(at, str(code["code"]), str(code.get("status") or "reported"),
                                   False, str(code.get("description") or ""))
            seen[(event.code, event.ts.isoformat())] = event
    return tuple(sorted(seen.values(), key=lambda e: (e.ts, e.code)))

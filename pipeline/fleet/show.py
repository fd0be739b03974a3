"""One vehicle's file, as a service advisor would look it up: who owns it, where it is serviced,
which VIN it is registered under and which VIN its bus reports, which models can score it, its
active fault codes, its open leads and its repair history.

Which models can score it and which codes are active are rules of layers above this one
(``pipeline.ml.coverage``, ``pipeline.features.active_codes``): the command fills them in
(:func:`with_coverage`, ``fault_codes``), this module only reads the register and renders.

Parts of the file come from tables other features add (``vehicle_info`` with the VIN read from
the bus, ``repair_orders`` with the service history); a store without them shows those parts
as unknown (None) rather than failing.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb

from pipeline.errors import TerminalPipelineError
from pipeline.fleet.vin_check import bus_vin

OPEN_STATES = ("new", "sent", "acknowledged", "booked", "held")
"""Lead states shown as open (the advice's blocking states but ``dismissed``, plus ``held``)."""


class UnknownVehicleError(TerminalPipelineError):
    """No vehicle with this id is registered in the store."""


@dataclass(frozen=True, slots=True)
class VehicleFile:
    """Everything ``fleetcare fleet show`` prints about one vehicle."""

    vehicle: dict[str, Any]
    customer: dict[str, Any] | None
    centre: dict[str, Any] | None
    vin_registered: str | None
    vin_on_bus: str | None
    """The VIN the vehicle's own bus reported (``vehicle_info``), None when not read yet."""
    models: list[dict[str, Any]] = field(default_factory=list)
    open_leads: list[dict[str, Any]] = field(default_factory=list)
    repair_history: list[dict[str, Any]] | None = None
    """Repair orders (``repair_orders``), None when the store has no such table."""
    vin_source: str | None = None
    """How the bus VIN was read (``obd_mode09``, ``j1939_feec``), None when not read."""
    fault_codes: list[dict[str, Any]] | None = None
    """Active fault codes (``code, component, severity, description, status, first_seen,
    last_seen``), None when not looked up."""

    @property
    def vin_mismatch(self) -> bool:
        """The bus reports another VIN than the register (:mod:`pipeline.fleet.vin_check`)."""
        return (self.vin_registered is not None and self.vin_on_bus is not None
                and self.vin_on_bus != self.vin_registered.strip().upper())

    def as_json(self) -> dict[str, Any]:
        """The file as plain JSON values."""
        return _plain({"vehicle": self.vehicle, "customer": self.customer,
                       "centre": self.centre,
                       "vin": {"registered": self.vin_registered, "on_bus": self.vin_on_bus,
                               "source": self.vin_source, "mismatch": self.vin_mismatch},
                       "models": self.models, "fault_codes": self.fault_codes,
                       "open_leads": self.open_leads, "repair_history": self.repair_history})


def vehicle_file(con: duckdb.DuckDBPyConnection, vehicle_id: str) -> VehicleFile:
    """The file of ``vehicle_id``.

    Raises:
        UnknownVehicleError: the store has no such vehicle.
    """
    vehicle = _one(con, "SELECT vehicle_id, vin, model, model_year, region, centre_id,"
                        " customer_id, imported_at FROM vehicles WHERE vehicle_id = ?",
                   [vehicle_id])
    if vehicle is None:
        raise UnknownVehicleError(f"no vehicle {vehicle_id!r} in the store's register "
                                  "(import it with `fleetcare fleet import --vehicles`)")
    customer = _one(con, "SELECT customer_id, name, phone, email, language, contact_consent"
                         " FROM customers WHERE customer_id = ?", [vehicle["customer_id"]])
    centre = _one(con, "SELECT centre_id, name, region, timezone, bays FROM service_centres"
                       " WHERE centre_id = ?", [vehicle["centre_id"]])
    on_bus = _vin_on_bus(con, vehicle_id)
    return VehicleFile(vehicle, customer, centre, vehicle["vin"], on_bus and on_bus[0],
                       _models(con), _leads(con, vehicle_id), _repairs(con, vehicle_id),
                       on_bus and on_bus[1])


def with_coverage(file: VehicleFile, coverage: list[dict[str, Any]]) -> VehicleFile:
    """``file`` with each promoted model marked as able to score the vehicle or not.

    ``coverage`` holds one entry per promoted model: ``model_id``, ``can_score`` and the
    signals the vehicle sent no reading of, ``missing_required`` (why it cannot score) and
    ``missing_optional`` (features the model imputes).
    """
    by_model = {c["model_id"]: c for c in coverage}
    keys = ("can_score", "missing_required", "missing_optional")
    models = [{**m, **{k: by_model[m["model_id"]][k] for k in keys}}
              if m["model_id"] in by_model else m for m in file.models]
    return replace(file, models=models)


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> dict[str, Any] | None:
    rows = _rows(con, sql, params)
    return rows[0] if rows else None


def _has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?"
                      " AND schema_name = 'main' AND database_name = current_database()",
                      [table]).fetchall()[0]
    views = con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = ?",
                        [table]).fetchall()[0]
    return bool(row and row[0]) or bool(views and views[0])


def _vin_on_bus(con: duckdb.DuckDBPyConnection, vehicle_id: str) -> tuple[str, str] | None:
    """The newest VIN the bus reported and how it was read."""
    if not _has_table(con, "vehicle_info"):
        return None
    found = bus_vin(con, vehicle_id)
    return None if found is None else (found.vin, found.vin_source)


def _models(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The promoted models (one per component): the ones scoring runs with."""
    return _rows(con, "SELECT component, model_id, created_at FROM model_registry"
                      " WHERE promoted ORDER BY component", [])


def _leads(con: duckdb.DuckDBPyConnection, vehicle_id: str) -> list[dict[str, Any]]:
    # the document's probability: null for a lead of fault codes (the table stores 0 there)
    return _rows(con, "SELECT lead_id, component, severity, state, hold_reason,"
                      " CAST(document->>'$.probability' AS DOUBLE) AS probability,"
                      " document->>'$.headline' AS headline,"
                      " created_at FROM leads WHERE vehicle_id = ? AND list_contains(?, state)"
                      " ORDER BY created_at DESC", [vehicle_id, list(OPEN_STATES)])


def _repairs(con: duckdb.DuckDBPyConnection, vehicle_id: str) -> list[dict[str, Any]] | None:
    if not _has_table(con, "repair_orders"):
        return None
    return _rows(con, "SELECT order_id, opened_at, odometer_km, component, operation_code, kind,"
                      " lead_id FROM repair_orders WHERE vehicle_id = ?"
                      " ORDER BY opened_at DESC", [vehicle_id])


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return json.loads(json.dumps(value, default=str))


def format_file(file: VehicleFile) -> str:
    """The file as text for a person."""
    v, c, s = file.vehicle, file.customer, file.centre
    lines = [f"vehicle     {v['vehicle_id']}: {v['model']} ({v['model_year'] or 'year ?'}), "
             f"region {v['region']}"]
    if c is None:
        lines.append("customer    none on record (its leads are held)")
    else:
        consent = "consents to contact" if c["contact_consent"] else \
            "NO consent to contact (its leads are held)"
        lines.append(f"customer    {c['customer_id']}: {c['name']}, {c['phone'] or '-'}, "
                     f"{c['email'] or '-'}, language {c['language'] or '-'}; {consent}")
    lines.append("centre      none assigned" if s is None else
                 f"centre      {s['centre_id']}: {s['name']} ({s['region']}, {s['timezone']}, "
                 f"{s['bays']} bays)")
    bus = (f"{file.vin_on_bus} ({file.vin_source})" if file.vin_on_bus
           else "not read from the bus yet")
    lines.append(f"VIN         registered {file.vin_registered or '-'}; from the bus {bus}")
    if file.vin_mismatch:
        lines.append("            VIN MISMATCH: the bus is another car's (was the gateway moved?);"
                     " its leads are held (vin_mismatch) until the register or the gateway is"
                     " put right")
    lines += _model_lines(file.models)
    lines += _code_lines(file.fault_codes)
    lines.append(f"open leads  {len(file.open_leads)}")
    for lead in file.open_leads:
        held = f" (held: {lead['hold_reason']})" if lead["hold_reason"] else ""
        lines.append(f"  {lead['lead_id']}  {lead['component']}  {lead['severity']}  "
                     f"{lead['state']}{held}")
    if file.repair_history is None:
        lines.append("repairs     no repair history in this store")
    else:
        lines.append(f"repairs     {len(file.repair_history)}")
        lines += [f"  {r['opened_at']:%Y-%m-%d}  {r['order_id']}  {r['component']}  "
                  f"{r['operation_code']}  {r['kind']}" for r in file.repair_history]
    return "\n".join(lines)


def _model_lines(models: list[dict[str, Any]]) -> list[str]:
    """One line per promoted model, saying whether it can score the vehicle and why not."""
    if not models:
        return ["models      none promoted"]
    lines = [f"models      {len(models)} promoted"]
    for m in models:
        verdict = ""
        if "can_score" in m:
            verdict = "  can score" if m["can_score"] else (
                "  cannot score: no reading of " + ", ".join(m["missing_required"]))
            if m["missing_optional"]:
                verdict += "; imputes " + ", ".join(m["missing_optional"])
        lines.append(f"  {m['component']}  {m['model_id']}{verdict}")
    return lines


def _code_lines(codes: list[dict[str, Any]] | None) -> list[str]:
    """The active fault codes, one line each (nothing when they were not looked up)."""
    if codes is None:
        return []
    lines = [f"fault codes {len(codes)} active"]
    lines += [f"  {c['code']}  {c['component'] or '-'}  {c['severity'] or '-'}  {c['status']}"
              f"  since {c['first_seen']}  {c['description'] or ''}".rstrip()
              for c in codes]
    return lines

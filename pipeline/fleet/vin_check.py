"""The register's VIN against the VIN the vehicle's own bus reports.

The register (``vehicles.vin``, from ``fleetcare fleet import``) says which car a vehicle id
stands for; the agent on the gateway reads the VIN from the bus it is plugged into (OBD-II
mode 09 or J1939 PGN 0xFEEC) and reports it in its vehicle info (``vehicle_info``). When the
two differ, the gateway was most likely moved to another car: its data is no longer that of
the customer's vehicle, so a lead made from it would call the wrong person about the wrong
car. Such a vehicle is flagged by ``fleetcare fleet show`` and the health check, and its leads
are held (``vin_mismatch``) until the register or the gateway is put right.

The bus VIN that counts is the latest one read: the VIN of the vehicle's newest
``vehicle_info`` row that has one (an agent's start, before it has read the VIN, says
nothing either way). A vehicle without a registered VIN, or whose agent never read one, has
nothing to compare and is not flagged. VINs are compared in upper case without surrounding
blanks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

import duckdb

LATEST_BUS_VIN: Final = (
    "(SELECT arg_max(bus.vin, bus.last_seen) FROM vehicle_info bus"
    " WHERE bus.vehicle_id = v.vehicle_id AND bus.vin IS NOT NULL)")
"""SQL for the newest VIN the bus of vehicle ``v`` (a ``vehicles`` row) reported, or NULL."""
MISMATCH_CONDITION: Final = (
    f"(v.vin IS NOT NULL AND {LATEST_BUS_VIN} <> upper(trim(v.vin)))")
"""SQL that holds when vehicle ``v``'s bus reported a VIN other than the registered one."""


@dataclass(frozen=True, slots=True)
class BusVin:
    """The newest VIN a vehicle's agent read, how, and when (the agent's time)."""

    vin: str
    vin_source: str
    seen_at: dt.datetime


@dataclass(frozen=True, slots=True)
class VinMismatch:
    """A vehicle whose bus reported another VIN than the register's."""

    vehicle_id: str
    registered_vin: str
    bus_vin: str
    vin_source: str
    seen_at: dt.datetime


def bus_vin(con: duckdb.DuckDBPyConnection, vehicle_id: str) -> BusVin | None:
    """The newest VIN ``vehicle_id``'s bus reported (None: none read yet)."""
    row = con.execute(
        "SELECT arg_max(vin, last_seen), arg_max(vin_source, last_seen), max(last_seen)"
        " FROM vehicle_info WHERE vehicle_id = ? AND vin IS NOT NULL", [vehicle_id]).fetchone()
    if row is None or row[0] is None:
        return None
    return BusVin(str(row[0]), str(row[1]), row[2])


def vin_mismatches(con: duckdb.DuckDBPyConnection) -> list[VinMismatch]:
    """Every registered vehicle whose newest bus VIN differs from its registered VIN."""
    rows = con.execute(
        "WITH latest AS (SELECT vehicle_id, arg_max(vin, last_seen) AS vin,"
        " arg_max(vin_source, last_seen) AS vin_source, max(last_seen) AS seen_at"
        " FROM vehicle_info WHERE vin IS NOT NULL GROUP BY vehicle_id)"
        " SELECT v.vehicle_id, v.vin, l.vin, l.vin_source, l.seen_at FROM vehicles v"
        " JOIN latest l ON l.vehicle_id = v.vehicle_id"
        " WHERE v.vin IS NOT NULL AND l.vin <> upper(trim(v.vin)) ORDER BY v.vehicle_id"
    ).fetchall()
    return [VinMismatch(str(v), str(reg), str(bus), str(src), seen)
            for v, reg, bus, src, seen in rows]

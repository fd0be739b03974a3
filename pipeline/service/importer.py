"""Upsert a checked repair-order file into ``repair_orders``, keyed on ``order_id``.

Importing the same export twice changes nothing (every row ``unchanged``); a newer export
updates the orders it changed. The whole file is applied in one transaction, or, with
``dry_run``, only counted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pipeline.service.orders import RepairOrder, read_repair_orders
from pipeline.store.connection import transaction

_COLUMNS = ("order_id", "vehicle_id", "opened_at", "odometer_km", "component",
            "operation_code", "kind", "lead_id")


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What one import did (or, with ``dry_run``, would do)."""

    file: str
    rows: int
    inserted: int
    updated: int
    unchanged: int
    ignored_columns: list[str]
    dry_run: bool

    def as_json(self) -> dict[str, Any]:
        """The summary ``fleetcare service import`` prints last."""
        return {"repair_orders": dataclasses.asdict(self)}


def register_of(con: duckdb.DuckDBPyConnection) -> dict[str, str | None]:
    """vehicle_id -> registered VIN (None where the register has no VIN, or no VIN column)."""
    columns = {r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = 'vehicles'").fetchall()}
    vin = "vin" if "vin" in columns else "NULL"
    return {str(v): (str(n) if n else None)
            for v, n in con.execute(f"SELECT vehicle_id, {vin} FROM vehicles").fetchall()}


def import_repair_orders(con: duckdb.DuckDBPyConnection, path: Path, *, dry_run: bool = False,
                         now: dt.datetime | None = None) -> ImportSummary:
    """Check ``path`` whole, then upsert its orders (nothing at all when a row is wrong).

    Raises:
        RepairOrderFileError: the file is unreadable or has problems; nothing was applied.
    """
    now = now or dt.datetime.now(dt.UTC)
    checked = read_repair_orders(path, register_of(con), now=now)
    stored = _stored(con, [o.order_id for o in checked.orders])
    new = [o for o in checked.orders if o.order_id not in stored]
    changed = [o for o in checked.orders
               if o.order_id in stored and stored[o.order_id] != _key(o)]
    if not dry_run and (new or changed):
        with transaction(con):
            rows = [[*_key(o), now] for o in new + changed]
            con.executemany(
                f"INSERT OR REPLACE INTO repair_orders ({', '.join(_COLUMNS)}, imported_at)"
                f" VALUES ({', '.join('?' * (len(_COLUMNS) + 1))})", rows)
    return ImportSummary(str(path), len(checked.orders), len(new), len(changed),
                         len(checked.orders) - len(new) - len(changed),
                         checked.ignored_columns, dry_run)


def _key(order: RepairOrder) -> tuple[object, ...]:
    return (order.order_id, order.vehicle_id, order.opened_at, order.odometer_km,
            order.component, order.operation_code, order.kind, order.lead_id)


def _stored(con: duckdb.DuckDBPyConnection, ids: list[str]) -> dict[str, tuple[object, ...]]:
    if not ids:
        return {}
    rows = con.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM repair_orders WHERE order_id IN "
        "(SELECT unnest(?::VARCHAR[]))", [ids]).fetchall()
    return {str(r[0]): (r[0], r[1], r[2].astimezone(dt.UTC), r[3], *r[4:]) for r in rows}

"""A small landing store and its snapshot, as ingest would publish them, for the flow tests.

The landing store is built with the synthetic fleet helpers of ``tests/pipeline``; one
vehicle got a critical fault code that ingest's urgent path (advice restricted to critical
faults) already turned into a lead and an outbox row in the landing store.
"""

from __future__ import annotations

import csv
import datetime as dt
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))

from synth_fleet import START, Car, add_dtc, build_store, evidence_fleet

from pipeline.leads import advice
from pipeline.store import export
from tests.master_data import import_master_data

N_DAYS = 80
CARS = [*evidence_fleet(("brakes",), healthy=4), Car("ice0", ev=False, fails={"lv_battery": 60})]
"""Enough failing brakes for the brake model to be promoted on its own evidence."""
URGENT_VEHICLE = "ok0"


@dataclass(frozen=True)
class Stores:
    """Paths of one test's stores (as strings, the way flows take them)."""

    landing: str
    snapshot: str
    serving: str
    export_dir: str


def build_landing(tmp_path: Path) -> Stores:
    """Landing store with the fleet and one urgent lead, its snapshot; no serving store yet."""
    stores = Stores(str(tmp_path / "landing.duckdb"), str(tmp_path / "snapshot.duckdb"),
                    str(tmp_path / "serving.duckdb"), str(tmp_path / "exports"))
    con = build_store(Path(stores.landing), CARS, N_DAYS)
    try:
        # what ingest's --vehicles and --customers files give the landing store, so its
        # urgent lead names a consenting customer (else it is held)
        import_master_data(con, only=("vehicles", "customers"))
        add_dtc(con, URGENT_VEHICLE, N_DAYS - 1, "C1B02")
        # as ingest's urgent path does, right after the code landed (not months later: a
        # lead on evidence older than evidence_max_age_days would be held)
        advice.advise(con, vehicles=[URGENT_VEHICLE], min_severity="critical",
                      daily_features=False,
                      now=START + dt.timedelta(days=N_DAYS - 1, hours=13))
        export.write_snapshot(con, stores.snapshot)
    finally:
        con.close()
    return stores


def last_day() -> dt.date:
    """The newest telemetry day of the test fleet."""
    from synth_fleet import day

    return day(N_DAYS - 1)


def seed_dealer_data(stores: Stores, seed: int = 0) -> None:
    """Customers, centres, capacity, catalogue and the workshop's repair orders in the serving
    store, as the dealer imports would leave them (the scheduled flows never invent any, and
    train on the repair orders of the store they write)."""
    from pipeline.store.serving import connect_serving
    from tests.master_data import import_master_data

    with connect_serving(stores.serving, stores.snapshot) as con:
        import_master_data(con, seed=seed)
        _import_repair_orders(con)


def _import_repair_orders(con: duckdb.DuckDBPyConnection) -> None:
    """The fleet's repair orders (kept in the landing snapshot by the synthetic fleet helpers)
    exported as a DMS's ``repair_orders.csv`` and imported through the same door as a real
    fleet's (:func:`pipeline.service.import_repair_orders`)."""
    from pipeline.service import import_repair_orders

    rows = con.execute("SELECT order_id, vehicle_id, opened_at, odometer_km, component,"
                       " operation_code, kind, lead_id FROM landing.repair_orders").fetchall()
    with tempfile.TemporaryDirectory(prefix="fleetcare-repair-orders-") as folder:
        path = Path(folder) / "repair_orders.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["order_id", "vehicle_id", "opened_at", "odometer_km", "component",
                             "operation_code", "kind", "lead_id"])
            writer.writerows([r[0], r[1], r[2].isoformat(), r[3] or "", *r[4:7], r[7] or ""]
                             for r in rows)
        assert import_repair_orders(con, path).inserted == len(rows)

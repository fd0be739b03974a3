"""Deterministic synthetic reference data: customers, service centres, capacity, catalogue.

Capacity has two limits per centre and day, as a workshop plans it: bay slots free for
booking, and technician hours not yet planned (1.5 technicians per bay on an 8-hour shift,
30-90 % already planned). Sundays are closed.

The simulator produces vehicles but no dealer network. Leads need a customer to call, a centre
with bays, a calendar of free slots and a price list, so the demo and the tests seed them here.
Every call is idempotent: existing rows (and slots already consumed by leads) are kept.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from typing import Final

import duckdb
import polars as pl

from pipeline.store.connection import transaction

log = logging.getLogger(__name__)

CAPACITY_DAYS: Final = 60
CENTRES: Final = (
    ("centre-north", "Fleetcare Service North", "north", 4),
    ("centre-central", "Fleetcare Service Central", "central", 6),
    ("centre-south", "Fleetcare Service South", "south", 3),
)
"""(centre_id, name, region, bays): one centre per region."""
TECHNICIANS_PER_BAY: Final = 1.5
SHIFT_HOURS: Final = 8.0
CATALOGUE: Final = (
    ("traction_battery",
     "High-voltage battery diagnosis, cell balancing and replacement of the weak module",
     1850.0, 6.0, 110.0),
    ("lv_battery", "12 V battery load test and replacement, charging system check",
     185.0, 0.8, 85.0),
    ("brakes", "Brake pads (and discs if below minimum) replacement, brake fluid check",
     320.0, 2.0, 85.0),
)
"""(component, work, parts_eur, labour_hours, labour_rate_eur)."""
_FIRST = ("Anna", "Ben", "Clara", "David", "Elif", "Felix", "Greta", "Hugo", "Ines", "Jonas",
          "Karin", "Luca", "Mara", "Noah", "Olga", "Paul")
_LAST = ("Berger", "Costa", "Dietrich", "Engel", "Fischer", "Grün", "Hansen", "Ivanova",
         "Jansen", "Keller", "Lorenz", "Moreau", "Novak", "Okafor", "Peters", "Quist")


def seed_reference_data(
    con: duckdb.DuckDBPyConnection, *, seed: int = 0, start: dt.date | None = None
) -> None:
    """Seed centres, capacity, catalogue and one customer per vehicle that lacks one.

    Args:
        con: an open store.
        seed: makes names and free slots reproducible.
        start: first day of the capacity calendar (default: today, UTC); pass the simulated
            "today" when the fleet runs on simulated time.
    """
    first = start or dt.datetime.now(dt.UTC).date()
    with transaction(con):
        con.executemany("INSERT OR IGNORE INTO service_centres VALUES (?, ?, ?, ?)",
                        [list(c) for c in CENTRES])
        con.executemany("INSERT OR IGNORE INTO service_catalogue VALUES (?, ?, ?, ?, ?)",
                        [list(c) for c in CATALOGUE])
        _seed_capacity(con, first, seed)
        _seed_customers(con, seed)
        _assign_centres(con)
    log.info("reference data seeded (capacity from %s for %d days)", first, CAPACITY_DAYS)


def _seed_capacity(con: duckdb.DuckDBPyConnection, first: dt.date, seed: int) -> None:
    rows = []
    for centre_id, _, _, bays in CENTRES:
        rng = random.Random(f"{seed}:{centre_id}")
        for i in range(CAPACITY_DAYS):
            day = first + dt.timedelta(days=i)
            booked = rng.randint(0, bays)
            closed = day.weekday() == 6
            free = 0 if closed else max(0, 2 * bays - booked - bays // 2)
            planned = rng.uniform(0.3, 0.9)
            hours = 0.0 if closed else round(
                bays * TECHNICIANS_PER_BAY * SHIFT_HOURS * (1 - planned), 1)
            rows.append((centre_id, day, free, hours))
    frame = pl.DataFrame(rows, schema=["centre_id", "day", "free_slots", "technician_hours"],
                         orient="row")
    con.register("_capacity", frame)
    con.execute("INSERT OR IGNORE INTO centre_capacity (centre_id, day, free_slots,"
                " technician_hours) SELECT centre_id, day, free_slots, technician_hours"
                " FROM _capacity")
    con.unregister("_capacity")


def _seed_customers(con: duckdb.DuckDBPyConnection, seed: int) -> None:
    missing = [r[0] for r in con.execute(
        "SELECT vehicle_id FROM vehicles WHERE customer_id IS NULL"
        # A vehicle whose customer was forgotten (fleetcare forget) gets no made-up one again.
        " AND vehicle_id NOT IN (SELECT vehicle_id FROM erasure_log"
        "  UNION ALL SELECT unnest(unlinked) FROM erasure_log) ORDER BY vehicle_id"
    ).fetchall()]
    rows = [_customer(vehicle_id, seed) for vehicle_id in missing]
    if not rows:
        return
    frame = pl.DataFrame(rows, schema=["vehicle_id", "customer_id", "name", "email", "phone"],
                         orient="row")
    con.register("_customers", frame)
    con.execute("INSERT OR IGNORE INTO customers SELECT customer_id, name, email, phone "
                "FROM _customers")
    con.execute("UPDATE vehicles SET customer_id = c.customer_id FROM _customers c "
                "WHERE vehicles.vehicle_id = c.vehicle_id")
    con.unregister("_customers")


def _customer(vehicle_id: str, seed: int) -> tuple[str, str, str, str, str]:
    rng = random.Random(f"{seed}:{vehicle_id}")
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    handle = f"{first}.{last}".lower().replace("ü", "ue")
    phone = f"+49 30 {rng.randint(1_000_000, 9_999_999)}"
    return (vehicle_id, f"cust-{vehicle_id}", f"{first} {last}",
            f"{handle}@example.com", phone)


def _assign_centres(con: duckdb.DuckDBPyConnection) -> None:
    """Give each vehicle without a centre the centre of its region (central if unknown)."""
    con.execute(
        "UPDATE vehicles SET centre_id = coalesce("
        " (SELECT centre_id FROM service_centres s WHERE s.region = lower(vehicles.region)),"
        " 'centre-central') WHERE centre_id IS NULL")

"""The simulated fleet's master data, written as the five CSV files a dealer's DMS exports.

The simulator invents a dealer network for its vehicles (production never does): one service
centre per region, a customer per vehicle, a capacity calendar and a price list. It writes
them in exactly the format ``fleetcare fleet import`` reads, so the demo and the tests onboard
the simulated fleet through the same door as a real one. Vehicle ids, models and regions are
those of :func:`edge.sim.simulator.make_fleet` for the same size and seed, so the files
describe the vehicles ``fleetcare sim run`` drives, and each VIN is the one the vehicle's bus
answers (:func:`edge.sim.vins.simulated_vin`).

Capacity has two limits per centre and day, as a workshop plans it: bay slots free for
booking, and technician hours not yet planned (1.5 technicians per bay on an 8-hour shift,
30-90 % already planned). Sundays are closed. Every file is replaced atomically (written
beside, then renamed), so a reader never sees half of one.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge.sim.simulator import VehicleSpec
from edge.sim.usage import model_named
from edge.sim.vins import simulated_vin
from edge.sim.weather import forecast_rows

CAPACITY_DAYS: Final = 60
CENTRES: Final = (
    ("centre-north", "Fleetcare Service North", "north", "Europe/Stockholm", 4),
    ("centre-central", "Fleetcare Service Central", "central", "Europe/Berlin", 6),
    ("centre-south", "Fleetcare Service South", "south", "Europe/Rome", 3),
)
"""(centre_id, name, region, timezone, bays): one centre per simulated region."""
TECHNICIANS_PER_BAY: Final = 1.5
SHIFT_HOURS: Final = 8.0
CATALOGUE: Final = (
    ("traction_battery", "HV-BAT-DIAG",
     "High-voltage battery diagnosis, cell balancing and replacement of the weak module",
     1850.0, 6.0, 110.0, 24),
    ("lv_battery", "LV-BAT-REPL", "12 V battery load test and replacement, charging system check",
     185.0, 0.8, 85.0, 24),
    ("brakes", "BRK-PAD-REPL",
     "Brake pads (and discs if below minimum) replacement, brake fluid check",
     320.0, 2.0, 85.0, 12),
)
"""(component, operation_code, work, parts_eur, labour_hours, labour_rate_eur,
warranty_months)."""
FILES: Final = {
    "vehicles": ("vehicle_id", "vin", "model", "model_year", "region", "centre_id",
                 "customer_id"),
    "customers": ("customer_id", "name", "phone", "email", "language", "contact_consent"),
    "centres": ("centre_id", "name", "region", "timezone", "bays"),
    "capacity": ("centre_id", "day", "free_slots", "technician_hours"),
    "catalogue": ("component", "operation_code", "work", "parts_eur", "labour_hours",
                  "labour_rate_eur", "warranty_months"),
}
"""Each file's columns, in the documented order (docs/onboarding.md)."""
FORECAST_COLUMNS: Final = ("region", "day", "min_temp_c")
"""The columns of ``region_forecasts.csv``: each region's forecast daily minimum (°C)."""
_LANGUAGES: Final = {"north": "sv", "central": "de", "south": "it"}
_FIRST: Final = ("Anna", "Ben", "Clara", "David", "Elif", "Felix", "Greta", "Hugo", "Ines",
                 "Jonas", "Karin", "Luca", "Mara", "Noah", "Olga", "Paul")
_LAST: Final = ("Berger", "Costa", "Dietrich", "Engel", "Fischer", "Grün", "Hansen", "Ivanova",
                "Jansen", "Keller", "Lorenz", "Moreau", "Novak", "Okafor", "Peters", "Quist")


@dataclass(frozen=True, slots=True)
class SimVehicle:
    """What the master data needs to know of a simulated vehicle."""

    vehicle_id: str
    model: str
    region: str
    vin: str | None = None
    """None: :func:`edge.sim.vins.simulated_vin` of the fleet's seed and the id."""


def vehicles_of(specs: Sequence[VehicleSpec]) -> list[SimVehicle]:
    """The master-data view of a simulated fleet (the model named as in its ground truth)."""
    return [SimVehicle(s.vehicle_id, model_named(s.model, s.variant).name, s.region, s.vin)
            for s in specs]


def write_master_data(out_dir: Path, vehicles: Sequence[SimVehicle], *, seed: int,
                      start: dt.date) -> dict[str, Path]:
    """Write vehicles, customers, centres, capacity and catalogue CSVs into ``out_dir``.

    Args:
        out_dir: created if missing; existing files of these names are replaced.
        vehicles: the fleet.
        seed: makes VINs, names and free slots reproducible.
        start: first day of the capacity calendar (:data:`CAPACITY_DAYS` days).

    Returns:
        Each file's path by kind (the ``fleetcare fleet import`` option without ``--``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    centre_of = {region: centre_id for centre_id, _, region, _, _ in CENTRES}
    rows: dict[str, list[tuple[object, ...]]] = {
        "vehicles": [], "customers": [], "centres": [c for c in CENTRES],
        "capacity": _capacity(start, seed), "catalogue": [c for c in CATALOGUE]}
    for vehicle in vehicles:
        rng = random.Random(f"{seed}:{vehicle.vehicle_id}")
        customer_id = f"cust-{vehicle.vehicle_id}"
        vin = vehicle.vin or simulated_vin(seed, vehicle.vehicle_id)
        rows["vehicles"].append((vehicle.vehicle_id, vin, vehicle.model,
                                 rng.randint(start.year - 8, start.year), vehicle.region,
                                 centre_of.get(vehicle.region, "centre-central"), customer_id))
        rows["customers"].append(_customer(rng, customer_id, vehicle.region))
    return {kind: write_csv(out_dir / f"{kind}.csv", FILES[kind], rows[kind]) for kind in FILES}


def write_region_forecasts(out_dir: Path, *, seed: int, first: dt.date, days: int) -> Path:
    """Write ``out_dir/region_forecasts.csv``: every region's forecast minimum from ``first``
    for ``days`` days and 30 more, under the weather of fleet seed ``seed`` (the weather
    :func:`edge.sim.simulator.make_fleet` gives its vehicles;
    :func:`edge.sim.weather.forecast_min_c`: the real minimum plus an error). It sits beside
    the master data, and ``fleetcare fleet import`` loads it into ``region_forecasts``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    regions = [region for _, _, region, _, _ in CENTRES]
    return write_csv(out_dir / "region_forecasts.csv", FORECAST_COLUMNS,
                     forecast_rows(seed, regions, first, days))


def _customer(rng: random.Random, customer_id: str, region: str) -> tuple[object, ...]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    handle = f"{first}.{last}".lower().replace("ü", "ue")
    phone = f"+49 30 {rng.randint(1_000_000, 9_999_999)}"
    return (customer_id, f"{first} {last}", phone, f"{handle}@example.com",
            _LANGUAGES.get(region, "en"), "true")


def _capacity(first: dt.date, seed: int) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for centre_id, _, _, _, bays in CENTRES:
        rng = random.Random(f"{seed}:{centre_id}")
        for i in range(CAPACITY_DAYS):
            day = first + dt.timedelta(days=i)
            booked = rng.randint(0, bays)
            closed = day.weekday() == 6
            free = 0 if closed else max(0, 2 * bays - booked - bays // 2)
            planned = rng.uniform(0.3, 0.9)
            hours = 0.0 if closed else round(
                bays * TECHNICIANS_PER_BAY * SHIFT_HOURS * (1 - planned), 1)
            rows.append((centre_id, day.isoformat(), free, hours))
    return rows


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    """Write ``path`` as a DMS export would: a header row, then ``rows``; fsynced and renamed
    into place, so an importer never reads half a file."""
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)
    return path

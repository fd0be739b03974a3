"""Fleet master data from a dealer management system: vehicles, customers, service centres,
capacity and the service catalogue, read from its CSV exports, checked whole and upserted.

Production never invents master data: what a lead names (customer, centre, slot, price) comes
from what the user imported here. The file formats are :mod:`pipeline.fleet.files`; every
problem in them is listed by :mod:`pipeline.fleet.validation`; :mod:`pipeline.fleet.upsert`
applies them in one transaction; :mod:`pipeline.fleet.show` prints one vehicle's file;
:mod:`pipeline.fleet.vin_check` compares the register's VIN with the one the bus reports.

An import writes the store that makes leads (the serving store, or the one file of one-file
mode) and takes its write lock like any flow, waiting a bounded time
(:func:`pipeline.store.connection.connect_waiting`); ingest, which holds the landing store
for as long as it runs, re-reads its own register files instead
(:mod:`pipeline.ingest.admission`).
"""

from pipeline.fleet.files import SPEC_BY_KIND, SPECS, VEHICLES, Column, FileSpec
from pipeline.fleet.forgotten import customer_hash, forgotten_hashes
from pipeline.fleet.show import (
    UnknownVehicleError,
    VehicleFile,
    format_file,
    vehicle_file,
    with_coverage,
)
from pipeline.fleet.upsert import FleetImportError, ImportReport, TableCounts, import_fleet
from pipeline.fleet.validation import ParsedFile, Problem, StoreKeys, read_file, read_files
from pipeline.fleet.vin_check import BusVin, VinMismatch, bus_vin, vin_mismatches
from pipeline.fleet.vin_policy import DEFAULT_CHECK_REGIONS, VinPolicy

__all__ = [
    "DEFAULT_CHECK_REGIONS",
    "SPECS",
    "SPEC_BY_KIND",
    "VEHICLES",
    "BusVin",
    "Column",
    "FileSpec",
    "FleetImportError",
    "ImportReport",
    "ParsedFile",
    "Problem",
    "StoreKeys",
    "TableCounts",
    "UnknownVehicleError",
    "VehicleFile",
    "VinMismatch",
    "VinPolicy",
    "bus_vin",
    "customer_hash",
    "forgotten_hashes",
    "format_file",
    "import_fleet",
    "read_file",
    "read_files",
    "vehicle_file",
    "vin_mismatches",
    "with_coverage",
]

"""Command-line front of the fleet's master data: ``fleetcare fleet import|show``.

``fleet import`` is the one door master data comes in by, for a real DMS export and for the
simulator's files alike (the demo runs this same command). Other ``fleet`` subcommands
register on the same group (:func:`register_fleet`); heavy modules load inside the handlers.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import orjson

from pipeline.cli.coverage import register_coverage
from pipeline.cli.leads import _add_db, _db

SubParsers = argparse._SubParsersAction
FILE_KINDS = ("vehicles", "customers", "centres", "capacity", "catalogue", "region_forecasts")
"""Each file's kind: its option (``_`` as ``-``) and, in a folder, its name (``<kind>.csv``)."""
DEFAULT_WAIT_S = 30.0
DEFAULT_VIN_CHECK = "ca,canada,mexico,mx,na,north-america,north_america,us,usa"
"""Kept equal to :data:`pipeline.fleet.vin_policy.DEFAULT_CHECK_REGIONS` (a test holds them
equal); written out so ``--help`` does not load the package."""


def register_fleet(sub: SubParsers) -> None:
    """``fleetcare fleet import|show|coverage``."""
    fleet = sub.add_parser("fleet", help="the fleet's master data: import DMS exports, show a "
                                         "vehicle's file",
                           description="Vehicles, customers, service centres, capacity and "
                                       "the service catalogue, from CSV files.")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND", required=True)
    _register_import(fleet_sub)
    _register_show(fleet_sub)
    register_coverage(fleet_sub)


def _register_import(fleet_sub: SubParsers) -> None:
    imp = fleet_sub.add_parser(
        "import", help="check and upsert master-data CSV files (all or nothing)",
        description="Checks every given file whole (UTF-8, header row; extra columns are "
                    "ignored and named), lists every problem as file:line: column: what is "
                    "wrong and applies nothing if there is one; otherwise upserts them all in "
                    "one transaction, keyed on their ids. Prints a JSON summary last.")
    _add_db(imp)
    imp.add_argument("folder", type=Path, nargs="?", metavar="DIR",
                     help="a folder of exports under their usual names (vehicles.csv, ..., "
                          "region_forecasts.csv): each one present is imported; an option "
                          "below names a file elsewhere instead (default: none)")
    for kind in FILE_KINDS:
        imp.add_argument(f"--{kind.replace('_', '-')}", dest=kind, type=Path, metavar="CSV",
                         help=f"{kind}.csv to import (default: none)")
    imp.add_argument("--dry-run", action="store_true",
                     help="report what would change and change nothing (default: apply)")
    imp.add_argument("--wait", type=float, default=DEFAULT_WAIT_S, metavar="SECONDS",
                     help="how long to wait for another process (a flow) to release the store "
                          f"(default {DEFAULT_WAIT_S:g})")
    imp.add_argument("--vin-check-regions", default=DEFAULT_VIN_CHECK, metavar="LIST",
                     help="region values whose VINs must carry the North American check digit, "
                          "comma-separated; '*' for every region, '' for none (default "
                          f"{DEFAULT_VIN_CHECK})")
    imp.set_defaults(handler=_import)


def _register_show(fleet_sub: SubParsers) -> None:
    show = fleet_sub.add_parser(
        "show", help="one vehicle's file: customer, centre, VINs, models that can score it, "
                     "active fault codes, open leads, repairs",
        description="Reads the store read-only. A promoted model can score the vehicle when "
                    "it sent a reading of every signal the model requires in the 90 days up "
                    "to the newest telemetry day (as `fleet coverage`); a fault code is "
                    "active until the vehicle clears it or a repair order of its component "
                    "is opened after it.")
    show.add_argument("vehicle_id", metavar="VEHICLE", help="the vehicle id")
    _add_db(show)
    show.add_argument("--snapshot", type=Path, metavar="PATH", action="append",
                      help="landing snapshot to read telemetry and fault codes from when --db "
                           "is the serving store; repeat it for several ingest workers "
                           "(default: none; the one-file store holds them)")
    show.add_argument("--export-dir", type=Path, metavar="DIR",
                      help="telemetry exported to Parquet, read with --snapshot (default: "
                           "none)")
    show.add_argument("--json", action="store_true", help="JSON instead of text (default: "
                                                          "text)")
    show.set_defaults(handler=_show)


def _import(args: argparse.Namespace) -> int:
    from edge.progress import Progress
    from pipeline.fleet import FleetImportError, VinPolicy, import_fleet
    from pipeline.store.connection import connect_waiting, no_new_store_on_failure

    paths = _import_paths(args)
    if paths is None:
        return 2
    policy = VinPolicy.parse(args.vin_check_regions)
    with no_new_store_on_failure(_db(args)) as guard, \
            connect_waiting(_db(args), args.wait) as con:
        try:
            with Progress("importing", len(paths), unit="files") as bar:
                report = import_fleet(con, paths, dry_run=args.dry_run, policy=policy,
                                      on_file=bar.update)
        except FleetImportError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            print(f"fleetcare fleet import: {exc}", file=sys.stderr)
            guard.refuse()
            return 1
    for path, columns in report.extra_columns.items():
        print(f"{path}: ignored columns not in the format: {', '.join(columns)}",
              file=sys.stderr)
    _print_json(dataclasses.asdict(report))
    return 0


def _import_paths(args: argparse.Namespace) -> dict[str, Path] | None:
    """The files to import by kind: the folder's, then the options'; None (said why): none."""
    paths: dict[str, Path] = {}
    if args.folder is not None:
        if not args.folder.is_dir():
            print(f"fleetcare fleet import: {args.folder} is not a folder", file=sys.stderr)
            return None
        paths = {k: args.folder / f"{k}.csv" for k in FILE_KINDS
                 if (args.folder / f"{k}.csv").is_file()}
    paths.update({k: getattr(args, k) for k in FILE_KINDS if getattr(args, k) is not None})
    if not paths:
        where = f"{args.folder} holds none of {', '.join(f'{k}.csv' for k in FILE_KINDS)}; " \
            if args.folder is not None else ""
        print(f"fleetcare fleet import: {where}give at least one of "
              + ", ".join(f"--{k.replace('_', '-')}" for k in FILE_KINDS)
              + " or a folder holding them", file=sys.stderr)
        return None
    return paths


def _show(args: argparse.Namespace) -> int:
    import datetime as dt

    from pipeline.features.active_codes import active_fault_codes
    from pipeline.fleet import format_file, vehicle_file, with_coverage
    from pipeline.ml.coverage import vehicle_coverage
    from pipeline.store import connection as store
    from pipeline.store.serving import attach_landing, define_landing_views

    if args.export_dir is not None and args.snapshot is None:
        print("fleetcare fleet show: --export-dir needs --snapshot (the one-file store reads "
              "its own telemetry)", file=sys.stderr)
        return 2
    with store.connect_readonly(_db(args)) as con:
        if args.snapshot is not None:
            attach_landing(con, args.snapshot)
            define_landing_views(con, args.export_dir)
        file = vehicle_file(con, args.vehicle_id)
        coverage = vehicle_coverage(con, args.vehicle_id).as_json()["models"]
        codes = active_fault_codes(con, dt.datetime.now(dt.UTC), [args.vehicle_id])
    file = dataclasses.replace(with_coverage(file, coverage),
                               fault_codes=codes.drop("vehicle_id").to_dicts())
    if args.json:
        _print_json(file.as_json())
    else:
        print(format_file(file))
    return 0


def _print_json(value: Any) -> None:
    print(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode())

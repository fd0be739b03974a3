"""``fleetcare service import``: the workshop's repair history from the dealer system.

The orders go where the flows train: the serving store in production (ingest holds the
landing store for as long as it runs), the one file in one-file mode. A store another process
holds is waited for (``--wait``), then refused in one line. Heavy modules are imported inside
the handler, so listing commands stays cheap.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

SubParsers = argparse._SubParsersAction
DEFAULT_WAIT_S = 30.0


def register_service(sub: SubParsers) -> None:
    """``fleetcare service import``."""
    service = sub.add_parser("service", help="the workshop's repair history",
                             description="Repair orders from the dealer system: the labels "
                                         "the fault-warning models train on.")
    ssub = service.add_subparsers(dest="service_command", metavar="SUBCOMMAND", required=True)
    imp = ssub.add_parser(
        "import", help="import repair_orders.csv (idempotent on order_id)",
        description="Check the whole file (every problem as file:line: column: what is wrong; "
                    "a file with any problem is refused and nothing is applied), then upsert "
                    "it on order_id. Columns: order_id, vehicle_id (or vin), opened_at, "
                    "odometer_km, component, operation_code, kind (unscheduled, roadside, "
                    "preventive or inspection), lead_id; others are ignored and named. "
                    "Prints a JSON summary last.")
    imp.add_argument("orders", type=Path, metavar="repair_orders.csv", help="the DMS export")
    imp.add_argument("--db", type=Path,
                     help="the store the flows train on: the serving store, or the one file "
                          "(default: $FLEETCARE_PIPELINE__DB_PATH, else fleet.duckdb)")
    imp.add_argument("--wait", type=float, default=DEFAULT_WAIT_S, metavar="SECONDS",
                     help="how long to wait for another process's hold on the store "
                          f"(default {DEFAULT_WAIT_S:g})")
    imp.add_argument("--dry-run", action="store_true",
                     help="check and count what would change, write nothing (default: off)")
    imp.set_defaults(handler=_import)


def _import(args: argparse.Namespace) -> int:
    from pipeline.config import load_pipeline_settings
    from pipeline.service import RepairOrderFileError, import_repair_orders
    from pipeline.store.connection import connect_waiting, no_new_store_on_failure

    path = args.db or load_pipeline_settings().db_path
    with no_new_store_on_failure(path) as guard, connect_waiting(path, args.wait) as con:
        try:
            summary = import_repair_orders(con, args.orders, dry_run=args.dry_run)
        except RepairOrderFileError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            print(f"fleetcare service import: error: {exc.path}: {len(exc.problems)} "
                  "problem(s), nothing imported", file=sys.stderr)
            guard.refuse()
            return 1
    if summary.ignored_columns:
        print(f"fleetcare service import: note: ignored columns: "
              f"{', '.join(summary.ignored_columns)}", file=sys.stderr)
    print(orjson.dumps(summary.as_json()).decode())
    return 0

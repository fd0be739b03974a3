"""``fleetcare forget VEHICLE``: a customer's personal data out of every store and export.

Forget writes the stores, and DuckDB has one writer per file: run it while ingest is stopped
(as ``fleetcare export``) and between flow runs; a held lock is reported and nothing changes.
Heavy modules are imported inside the handler, so listing commands stays cheap.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import orjson

SubParsers = argparse._SubParsersAction


def register_forget(sub: SubParsers) -> None:
    """``fleetcare forget VEHICLE``."""
    forget = sub.add_parser(
        "forget", help="erase a vehicle's customer (and optionally its telemetry) everywhere",
        description="Delete the customer who owns VEHICLE (name, e-mail, phone), unlink their "
                    "vehicles, strip them from leads, outbox bodies (pending rows are still "
                    "delivered, without the customer) and advisors' notes, and record the "
                    "erasure in erasure_log. Needs the stores' write locks: stop ingest first.")
    forget.add_argument("vehicle", metavar="VEHICLE", help="the vehicle id")
    forget.add_argument("--db", type=Path,
                        help="landing store (default: $FLEETCARE_PIPELINE__DB_PATH)")
    forget.add_argument("--telemetry", action="store_true",
                        help="also delete the vehicle's telemetry, fault codes, health reports, "
                             "features, scores, dead letters and Parquet partitions")
    forget.add_argument("--exports", type=Path, metavar="DIR",
                        help="the Parquet export folder (fleetcare ingest --export-dir)")
    forget.add_argument("--serving-db", type=Path, metavar="PATH",
                        help="the flows' serving store, forgotten in the same run")
    forget.add_argument("--snapshot", type=Path, metavar="PATH",
                        help="rewrite the readers' snapshot from the cleaned landing store")
    forget.add_argument("--inbox", type=Path, metavar="PATH",
                        help="the CRM status-update inbox (fleetcare crm inbound --inbox; stop "
                             "that endpoint first): advisors' notes on the leads are replaced")
    forget.add_argument("--no-compact", action="store_true",
                        help="skip rewriting the store files (deleted values then stay in "
                             "DuckDB's free blocks until reused)")
    forget.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    forget.set_defaults(handler=_forget)


def _forget(args: argparse.Namespace) -> int:
    from pipeline.config import load_pipeline_settings
    from pipeline.privacy.erasure import forget_everywhere

    if args.telemetry and args.exports is None:
        print("fleetcare forget: note: --telemetry without --exports leaves any Parquet "
              "exports of the vehicle in place", file=sys.stderr)
    if not args.yes and not _confirmed(args):
        return 2
    landing = args.db or load_pipeline_settings().db_path
    erasure = forget_everywhere(
        args.vehicle, landing, serving=args.serving_db, snapshot=args.snapshot,
        export_root=args.exports, inbox=args.inbox, telemetry=args.telemetry,
        compact=not args.no_compact)
    print(orjson.dumps(dataclasses.asdict(erasure), option=orjson.OPT_INDENT_2).decode())
    if args.serving_db is None:
        print("fleetcare forget: note: no --serving-db: a serving store of the scheduled flows "
              "keeps the customer until it is forgotten there too", file=sys.stderr)
    if args.snapshot is None:
        print("fleetcare forget: note: snapshots written before now still hold the customer "
              "until they are rewritten (--snapshot PATH, or ingest's next snapshot)",
              file=sys.stderr)
    if erasure.residual:
        print("fleetcare forget: error: forgotten values are still stored in "
              + ", ".join(erasure.residual), file=sys.stderr)
        return 1
    return 0


def _confirmed(args: argparse.Namespace) -> bool:
    what = "customer and telemetry" if args.telemetry else "customer"
    if not sys.stdin.isatty():
        print(f"fleetcare forget: refusing to erase the {what} of {args.vehicle} without "
              "--yes (standard input is not a terminal)", file=sys.stderr)
        return False
    answer = input(f"Erase the {what} of vehicle {args.vehicle} everywhere? [y/N] ")
    return answer.strip().lower() in ("y", "yes")

"""``fleetcare fleet coverage``: per registered vehicle, which promoted models can score it and
which signals it lacks (the rule is :mod:`pipeline.ml.coverage`'s, the one scoring applies).

It reads the store read-only, so it runs beside ingest and the flows. On the serving store,
whose telemetry lives in the landing snapshot, ``--snapshot`` puts the snapshot behind the
same views the flows read through.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from pipeline.cli.leads import _add_db, _db

if TYPE_CHECKING:
    from pipeline.ml.coverage import FleetCoverage, VehicleCoverage

SubParsers = argparse._SubParsersAction


def register_coverage(fleet_sub: SubParsers) -> None:
    """``fleetcare fleet coverage`` (on the ``fleet`` group's sub-parsers)."""
    cov = fleet_sub.add_parser(
        "coverage", help="which promoted models can score each vehicle, which signals it lacks",
        description="A model scores a vehicle when the vehicle sent at least one reading of "
                    "every signal the model requires in the 90 days up to the day scored; "
                    "missing optional signals only leave features to impute. Reads the store "
                    "read-only.")
    _add_db(cov)
    cov.add_argument("--snapshot", type=Path, metavar="PATH", action="append",
                     help="landing snapshot to read telemetry from when --db is the serving "
                          "store; repeat it for several ingest workers (default: none; the "
                          "one-file store holds its telemetry)")
    cov.add_argument("--export-dir", type=Path, metavar="DIR",
                     help="telemetry exported to Parquet, read with --snapshot (default: none)")
    cov.add_argument("--as-of", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                     help="the day to check (default: the newest telemetry day, as scoring)")
    cov.add_argument("--json", action="store_true",
                     help="print one JSON object (default: text)")
    cov.set_defaults(handler=_coverage)


def _coverage(args: argparse.Namespace) -> int:
    from pipeline.ml.coverage import fleet_coverage
    from pipeline.store import connection as store
    from pipeline.store.serving import attach_landing, define_landing_views

    if args.export_dir is not None and args.snapshot is None:
        print("fleetcare fleet coverage: --export-dir needs --snapshot (the one-file store "
              "reads its own telemetry)", file=sys.stderr)
        return 2
    db = _db(args)
    with store.connect_readonly(db) as con:
        if args.snapshot is not None:
            attach_landing(con, args.snapshot)
            define_landing_views(con, args.export_dir)
        coverage = fleet_coverage(con, as_of=args.as_of)
        empty = con.execute("SELECT count(*) = 0 FROM (SELECT 1 FROM telemetry LIMIT 1)"
                            ).fetchall()[0][0]
    if empty and args.snapshot is None:
        print(f"fleetcare fleet coverage: note: {db} holds no telemetry; for the serving "
              "store give --snapshot PATH", file=sys.stderr)
    if args.json:
        print(orjson.dumps(coverage.as_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_coverage(coverage))
    return 0


def format_coverage(coverage: FleetCoverage) -> str:
    """The text report: a heading, one tab-separated line per vehicle, a count per model."""
    day = coverage.as_of.isoformat() if coverage.as_of else "no telemetry"
    models = ", ".join(f"{m.component} {m.model_id}" for m in coverage.models)
    lines = [f"as of {day} (telemetry of the {coverage.window_days} days up to it); promoted "
             f"models: {models or 'none (train first: nothing can score yet)'}"]
    if not coverage.vehicles:
        lines.append("no vehicles in the register (fleetcare fleet import --vehicles CSV)")
        return "\n".join(lines)
    lines.append("vehicle_id\tmodel\tcan_score\tcannot_score (missing signals)\timputed")
    lines.extend(_vehicle_line(v) for v in coverage.vehicles)
    counts = [f"{m.component} {sum(m.component in v.can_score for v in coverage.vehicles)}"
              f"/{len(coverage.vehicles)}" for m in coverage.models]
    if counts:
        lines.append("can score: " + ", ".join(counts))
    return "\n".join(lines)


def _vehicle_line(vehicle: VehicleCoverage) -> str:
    cannot = "; ".join(f"{m.component} ({', '.join(m.missing_required)})"
                       for m in vehicle.models if not m.can_score)
    imputed = sorted({s for m in vehicle.models if m.can_score for s in m.missing_optional})
    return "\t".join([vehicle.vehicle_id, vehicle.model or "-",
                      ", ".join(vehicle.can_score) or "-", cannot or "-",
                      ", ".join(imputed) or "-"])

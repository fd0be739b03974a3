"""``fleetcare flows`` and ``fleetcare demo``: the command-line front of the flows package."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import orjson

from flows.demo_options import DemoOptions

FLOWS = ("maintenance",)


def register_flows(sub: argparse._SubParsersAction) -> None:
    """``fleetcare flows run NAME``."""
    flows = sub.add_parser("flows", help="run Prefect flows",
                           description="Prefect flows over the pipeline's plain functions.")
    flows_sub = flows.add_subparsers(dest="flows_command", metavar="SUBCOMMAND", required=True)
    run = flows_sub.add_parser("run", help="run one flow now",
                               description="Run a flow now on the configured Prefect API (the "
                                           "ephemeral local server when none is set).")
    run.add_argument("name", choices=FLOWS, help="which flow")
    run.add_argument("--db", type=Path, help="DuckDB store (default: FLEETCARE_PIPELINE__DB_PATH)")
    run.add_argument("--crm-url", help="CRM webhook URL (default: FLEETCARE_PIPELINE__CRM_URL)")
    run.set_defaults(handler=_run_flow)


def register_demo(sub: argparse._SubParsersAction) -> None:
    """``fleetcare demo``: what ``make demo`` runs."""
    demo = sub.add_parser("demo", help="run the whole pipeline on one machine",
                          description="Broker, simulated fleet through real agents, ingest to "
                                      "DuckDB, Prefect flow (train, score, advise, deliver) to "
                                      "a local CRM; prints what happened.")
    defaults = DemoOptions()
    demo.add_argument("--output-dir", type=Path, default=defaults.output_dir)
    demo.add_argument("--vehicles", type=int, default=defaults.vehicles)
    demo.add_argument("--days", type=int, default=defaults.days)
    demo.add_argument("--seed", type=int, default=defaults.seed)
    demo.add_argument("--snapshot-s", type=float, default=defaults.snapshot_s,
                      help="seconds of bus traffic per simulated day")
    demo.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto")
    demo.add_argument("--json", action="store_true", help="print the report as JSON too")
    demo.set_defaults(handler=_run_demo)


def _run_flow(args: argparse.Namespace) -> int:
    from flows.maintenance import maintenance_flow
    from pipeline.config import load_pipeline_settings

    settings = load_pipeline_settings(db_path=args.db, crm_url=args.crm_url)
    result = maintenance_flow(str(settings.db_path), settings.crm_url,
                              horizon_days=settings.horizon_days, seed=settings.seed)
    print(orjson.dumps(result, default=str).decode())
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from flows.demo import format_report, run_demo

    options = DemoOptions(output_dir=args.output_dir, vehicles=args.vehicles, days=args.days,
                          seed=args.seed, snapshot_s=args.snapshot_s, broker=args.broker)
    report = run_demo(options, log=lambda line: print(f"- {line}", file=sys.stderr))
    print(format_report(report))
    if args.json:
        print(orjson.dumps(dataclasses.asdict(report), default=str).decode())
    return 0

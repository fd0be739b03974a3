"""``fleetcare flows`` and ``fleetcare demo``: the command-line front of the flows package."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from flows.demo.options import DemoOptions

FLOWS = ("maintenance", "features", "train", "score_and_advise", "deliver_leads",
         "export_cold", "backfill", "campaigns", "health")


def register_flows(sub: argparse._SubParsersAction) -> None:
    """``fleetcare flows run NAME``, ``fleetcare flows serve``, ``fleetcare flows list``."""
    flows = sub.add_parser("flows", help="run or serve the Prefect flows",
                           description="Prefect flows over the pipeline's plain functions.")
    flows_sub = flows.add_subparsers(dest="flows_command", metavar="SUBCOMMAND", required=True)
    run = flows_sub.add_parser("run", help="run one flow now",
                               description="Run a flow now on the configured Prefect API (the "
                                           "ephemeral local server when none is set).")
    run.add_argument("name", choices=FLOWS, help="which flow")
    _store_options(run)
    run.add_argument("--db", type=Path, help="maintenance only: the one-file store "
                                             "(default: FLEETCARE_PIPELINE__DB_PATH)")
    run.add_argument("--dask", action="store_true",
                     help="run partitions on Dask (a local cluster, or --dask-address)")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="a flow parameter (JSON values, e.g. days=14, start=2025-01-01)")
    run.set_defaults(handler=_run_flow)
    serve = flows_sub.add_parser(
        "serve", help="serve every deployment with its schedule",
        description="Serve the scheduled deployments on the configured Prefect API until "
                    "interrupted; creates the duckdb-writer concurrency limit (1) first.")
    _store_options(serve)
    serve.add_argument("--only", action="append", metavar="NAME",
                       help="serve only this deployment; repeat, or give a comma list, for "
                            "several (default: every deployment)")
    serve.add_argument("--interval", type=_seconds, metavar="SECONDS",
                       help="run every scheduled deployment every SECONDS instead of on its "
                            "own schedule (to watch schedules fire)")
    serve.set_defaults(handler=_serve)
    listing = flows_sub.add_parser("list", help="the deployments and their schedules",
                                   description="Each deployment, its schedule and flow.")
    listing.add_argument("--json", action="store_true",
                         help="one JSON array, an object per deployment (default: a line "
                              "per deployment)")
    listing.set_defaults(handler=_list)


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--serving", type=Path,
                        help="serving store (default: FLEETCARE_FLOWS__SERVING_PATH)")
    parser.add_argument("--snapshot", type=Path, action="append",
                        help="landing snapshot; repeat it for several ingest workers, one "
                             "snapshot each (default: FLEETCARE_FLOWS__SNAPSHOT_PATH)")
    parser.add_argument("--export-dir", type=Path, help="Parquet exports of cold telemetry")
    parser.add_argument("--landing", type=Path,
                        help="landing store, for export_cold with ingest stopped")
    parser.add_argument("--inbox", type=Path, help="CRM status-update inbox (JSONL)")
    parser.add_argument("--buckets", type=int, help="vehicle hash buckets (default 1)")
    parser.add_argument("--dask-address", metavar="URL",
                        help="an existing Dask scheduler, tcp://host:8786 (default: a local "
                             "cluster, with --dask)")
    parser.add_argument("--crm-url", help="CRM webhook URL (default: FLEETCARE_PIPELINE__CRM_URL)")


def _seconds(text: str) -> float:
    """A positive, finite number of seconds (argparse turns the error into a usage line)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def register_demo(sub: argparse._SubParsersAction) -> None:
    """``fleetcare demo``: what ``make demo`` runs."""
    demo = sub.add_parser("demo", help="run the whole pipeline on one machine",
                          description="Broker, simulated fleet through real agents, ingest to "
                                      "DuckDB, Prefect flow (train, score, advise, deliver) to "
                                      "a local CRM; prints what happened.")
    defaults = DemoOptions()
    demo.add_argument("--output-dir", type=Path, default=defaults.output_dir,
                      help="where the store, logs and reports go")
    demo.add_argument("--vehicles", type=int, default=defaults.vehicles,
                      help="simulated fleet size")
    demo.add_argument("--days", type=int, default=defaults.days, help="simulated days")
    demo.add_argument("--seed", type=int, default=defaults.seed,
                      help="fleet seed: the same seed, the same fleet and faults")
    demo.add_argument("--snapshot-s", type=float, default=defaults.snapshot_s,
                      help="seconds of bus traffic per simulated day")
    demo.add_argument("--failing-share", type=float, default=defaults.failing_share,
                      help="share of vehicles placed near a failure of one part")
    demo.add_argument("--broker-kind", choices=("auto", "mosquitto", "amqtt"), default="auto",
                      help="the broker the demo starts: auto is mosquitto when installed, "
                           "else the embedded amqtt")
    demo.add_argument("--json", action="store_true", help="print the report as JSON too")
    demo.set_defaults(handler=_run_demo)


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value is JSON when it parses as JSON, else a string."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {pair!r}: write it as KEY=VALUE, e.g. days=14")
        try:
            params[key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            params[key] = value
    return params


def _settings(args: argparse.Namespace) -> tuple[Any, str]:
    from flows.scheduled.config import load_flow_settings
    from pipeline.config import load_pipeline_settings

    settings = load_flow_settings(
        serving_path=args.serving, snapshot_path=_one_or_list(args.snapshot),
        export_dir=args.export_dir,
        landing_path=args.landing, inbox_path=args.inbox, buckets=args.buckets,
        dask_address=args.dask_address)
    return settings, load_pipeline_settings(crm_url=args.crm_url).crm_url


def _one_or_list(paths: list[Path] | None) -> Path | list[Path] | None:
    """A repeated option's values: None when not given, the path alone when given once."""
    if not paths:
        return None
    return paths[0] if len(paths) == 1 else paths


def _run_flow(args: argparse.Namespace) -> int:
    if args.name == "maintenance":
        return _run_maintenance(args)
    from flows.scheduled.deployments import SCHEDULES, flow_parameters
    from flows.scheduled.partitioned import on_dask

    settings, crm_url = _settings(args)
    params = {**flow_parameters(args.name, settings, crm_url), **parse_params(args.param)}
    flow = SCHEDULES[args.name].flow
    if args.dask or settings.dask_address:
        flow = on_dask(flow, settings.dask_address)
    with _training_bar():
        result = flow(**params)
    print(orjson.dumps(result, default=str).decode())
    return 0


def _run_maintenance(args: argparse.Namespace) -> int:
    from flows.demo.maintenance import maintenance_flow
    from pipeline.config import load_pipeline_settings

    settings = load_pipeline_settings(db_path=args.db, crm_url=args.crm_url)
    with _training_bar():
        result = maintenance_flow(str(settings.db_path), settings.crm_url,
                                  horizon_days=settings.horizon_days, seed=settings.seed)
    print(orjson.dumps(result, default=str).decode())
    return 0


def _training_bar() -> contextlib.AbstractContextManager[None]:
    """A bar of the models trained, on a terminal, for any flow that trains."""
    from edge.progress import bar_from_log

    return bar_from_log("train", "training", unit="models")


def _serve(args: argparse.Namespace) -> int:
    from flows.scheduled.deployments import SCHEDULES, serve_all

    only = [name.strip() for given in args.only or () for name in given.split(",")
            if name.strip()]
    unknown = sorted(set(only) - set(SCHEDULES))
    if unknown:
        raise ValueError(f"--only: no deployment named {', '.join(unknown)} "
                         f"(the deployments: {', '.join(SCHEDULES)})")
    settings, crm_url = _settings(args)
    serve_all(settings, crm_url, tuple(only) if only else None, args.interval)
    return 0


def _list(args: argparse.Namespace) -> int:
    from flows.scheduled.deployments import SCHEDULES

    listed = [(name, schedule.cron or (f"every {schedule.interval_s:g} s"
                                       if schedule.interval_s else "on demand"), schedule)
              for name, schedule in SCHEDULES.items()]
    if args.json:
        print(orjson.dumps([{"name": name, "when": when, "cron": s.cron,
                             "interval_s": s.interval_s, "description": s.description}
                            for name, when, s in listed]).decode())
        return 0
    for name, when, schedule in listed:
        print(f"{name:18} {when:16} {schedule.description}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    # The demo starts Prefect's ephemeral server, which gets 20 s by default: too little on a
    # loaded small machine. An explicit setting still wins.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from flows.demo.run import format_report, run_demo

    options = DemoOptions(output_dir=args.output_dir, vehicles=args.vehicles, days=args.days,
                          seed=args.seed, snapshot_s=args.snapshot_s,
                          failing_share=args.failing_share, broker=args.broker_kind)
    report = run_demo(options, log=lambda line: print(f"- {line}", file=sys.stderr))
    print(format_report(report))
    if args.json:
        print(orjson.dumps(dataclasses.asdict(report), default=str).decode())
    return 0

"""Command-line front of the edge package: ``fleetcare edge`` and ``fleetcare sim``.

Only this module prints; the library functions it calls return records.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import orjson

from edge.config import REFERENCE_RULES, load_edge_settings


def register_edge(sub: argparse._SubParsersAction) -> None:
    """``fleetcare edge run``: the agent on a gateway."""
    edge = sub.add_parser("edge", help="run the edge agent on a gateway",
                          description="The in-vehicle agent: read CAN, decode, spool, publish.")
    edge_sub = edge.add_subparsers(dest="edge_command", metavar="SUBCOMMAND", required=True)
    run = edge_sub.add_parser("run", help="read a bus and publish until stopped",
                              description="Read a CAN bus, decode it with DBC files, keep what "
                                          "was read in the on-disk spool and publish it.")
    run.add_argument("--config", type=Path, help="edge.toml (see README: configuration)")
    run.add_argument("--vehicle-id", help="overrides vehicle_id")
    run.add_argument("--interface", help="python-can interface (socketcan, virtual, ...)")
    run.add_argument("--channel", help="python-can channel (can0, vcan0, ...)")
    run.add_argument("--broker", dest="broker_url", help="mqtt://host:port")
    run.set_defaults(handler=_run_edge)


def register_sim(sub: argparse._SubParsersAction) -> None:
    """``fleetcare sim run``: a simulated fleet through real agents."""
    sim = sub.add_parser("sim", help="simulate a fleet on virtual CAN buses",
                         description="Simulated vehicles with hidden, degrading health.")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)
    run = sim_sub.add_parser("run", help="simulate N vehicles for D days through real agents",
                             description="Each vehicle's frames go over a python-can virtual "
                                         "bus to a real agent that publishes to the broker. "
                                         "Prints a JSON summary as the last line.")
    run.add_argument("--broker", required=True, help="mqtt://host:port")
    run.add_argument("--vehicles", type=int, default=10, help="fleet size (default 10)")
    run.add_argument("--days", type=int, default=120, help="simulated days (default 120)")
    run.add_argument("--seed", type=int, default=0, help="fleet seed (default 0)")
    run.add_argument("--start", default="2026-01-01", help="first simulated day (YYYY-MM-DD)")
    run.add_argument("--snapshot-s", type=float, default=1.0,
                     help="seconds of bus traffic per simulated day (default 1.0)")
    run.add_argument("--rules", type=Path, default=REFERENCE_RULES, help="collection rules")
    run.add_argument("--spool-dir", type=Path, help="where the agents' spools live")
    run.add_argument("--progress", action="store_true", help="progress bar on stderr")
    run.set_defaults(handler=_run_sim)


def _run_edge(args: argparse.Namespace) -> int:
    from edge.runtime import run_agent_forever

    overrides = {k: v for k, v in vars(args).items()
                 if k in ("vehicle_id", "interface", "channel", "broker_url") and v is not None}
    settings = load_edge_settings(args.config, **overrides)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stats = run_agent_forever(settings, stop)
    print(orjson.dumps(dataclasses.asdict(stats)).decode())
    return 0


def _run_sim(args: argparse.Namespace) -> int:
    from edge.fleet import run_fleet
    from edge.rules import load_rules
    from edge.simulator import make_fleet

    start = dt.datetime.fromisoformat(args.start).replace(tzinfo=dt.UTC).timestamp()
    specs = make_fleet(args.vehicles, seed=args.seed, start_ts=start)
    on_day = _progress(args.days) if args.progress else None
    with tempfile.TemporaryDirectory(prefix="fleetcare-spool-") as tmp:
        result = run_fleet(specs, args.broker, load_rules(args.rules), days=args.days,
                           start_ts=start, spool_dir=args.spool_dir or Path(tmp),
                           snapshot_s=args.snapshot_s, on_day=on_day)
    summary: dict[str, Any] = dataclasses.asdict(result)
    summary["per_vehicle"] = {k: dataclasses.asdict(v) for k, v in result.per_vehicle.items()}
    print(orjson.dumps(summary).decode())
    return 0


def _progress(days: int) -> Any:
    """A one-line progress display on stderr (tqdm is a backend dependency, not the edge's)."""
    def on_day(day: int) -> None:
        done = day + 1
        width = 30
        if done != days and (done * 100 // days) == (day * 100 // days):
            return  # redraw once per percent, not once per day
        filled = width * done // days
        sys.stderr.write(f"\r  simulating [{'#' * filled}{'.' * (width - filled)}] "
                         f"day {done}/{days}")
        if done == days:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return on_day

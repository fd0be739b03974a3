"""``fleetcare replay``: a recorded CAN log into a DuckDB file, with one command.

Like the demo, this plays every role on one machine: it starts a broker (mosquitto when
installed, else the embedded one) and an ingest loop writing the DuckDB file, runs the
vehicle's side as its own process (``fleetcare edge replay``: the unmodified agent reading the
recording, spooling and publishing), waits until every message the agent spooled has landed,
and prints a one-line JSON summary as its last line of output.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay and where to land it."""

    logs: list[Path]
    dbc: list[Path] = field(default_factory=list)
    db_path: Path = Path("replay.duckdb")
    vehicle: str = "REPLAY"
    rules: Path | None = None
    speed: float = 0.0
    taps: str | None = None
    broker: str = "auto"
    strict: bool = False
    timeout_s: float = 600.0


def register_replay(sub: argparse._SubParsersAction) -> None:
    """``fleetcare replay LOG... --dbc DBC... [--vehicle ID] [--db PATH]``."""
    replay = sub.add_parser(
        "replay", help="land a recorded CAN log in DuckDB (broker, agent and ingest in one go)",
        description="Replay candump/ASC/BLF/TRC/MF4 recordings through a real edge agent, an "
                    "MQTT broker and ingest into a DuckDB file. Prints a JSON summary last: "
                    "frames read, frames decoded, unknown ids, signals published, rows landed, "
                    "dropped.")
    replay.add_argument("logs", nargs="+", type=Path, metavar="LOG")
    replay.add_argument("--dbc", type=Path, nargs="*", default=[], help="DBC files")
    replay.add_argument("--vehicle", default="REPLAY", help="vehicle id (default REPLAY)")
    replay.add_argument("--db", type=Path, default=Path("replay.duckdb"), help="DuckDB file")
    replay.add_argument("--rules", type=Path, help="collection rules (default: the reference)")
    replay.add_argument("--speed", type=float, default=0.0,
                        help="0 as fast as possible (default), 1 recorded pace, N times it")
    replay.add_argument("--taps", help="frame taps (default obd,j1939 when installed)")
    replay.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto")
    replay.add_argument("--strict", action="store_true", help="fail on a malformed log line")
    replay.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    options = ReplayOptions(args.logs, args.dbc, args.db, args.vehicle, args.rules, args.speed,
                            args.taps, args.broker, args.strict)
    summary = run_replay(options, log=lambda line: print(f"- {line}", file=sys.stderr))
    print(orjson.dumps(summary).decode())
    return 0 if summary["rows_landed"] == summary["signals_published"] else 1


def run_replay(options: ReplayOptions, log: Any = print) -> dict[str, Any]:
    """Broker, ingest and the agent's process; returns the summary once everything landed."""
    from pipeline.broker.harness import EmbeddedBroker
    from pipeline.ingest.service import Ingestor

    with EmbeddedBroker(prefer=options.broker) as broker:
        log(f"broker: {broker.kind} at {broker.url}")
        # The operator names the one vehicle on a broker private to this run, and the log
        # replays as fast as possible: no registration check, no rate limit.
        ingestor = Ingestor(broker.url, options.db_path, client_id="fleetcare-replay-ingest",
                            require_registered_vehicles=False, rate_limit=None)
        ingestor.start()
        try:
            edge = edge_replay(options, broker.url)
            rows, messages = edge["signals_spooled"], edge["messages_spooled"]
            log(f"waiting for ingest to land {rows:,} rows ...")
            landed = ingestor.wait_for(lambda s: s.telemetry_rows >= rows
                                       and s.messages_landed + s.duplicates >= messages,
                                       timeout=options.timeout_s)
        finally:
            ingestor.stop()
        stats = ingestor.stats
    counters = edge["counters"]
    return {
        "frames_read": edge["frames_read"], "frames_decoded": edge["frames_decoded"],
        "unknown_frames": edge["unknown_frames"], "unknown_ids": edge["unknown_ids"],
        "malformed_log_lines": counters.get("log_malformed_lines", 0),
        "signals_published": rows, "dtc_events": edge["dtc_events"],
        "rows_landed": stats.telemetry_rows, "dtc_rows": stats.dtc_rows,
        "dead_letters": stats.dead_letters, "dropped": counters.get("evicted", 0),
        "landed_in_time": landed, "db": str(options.db_path), "broker": broker.kind,
        "ingest": asdict(stats),
    }


def edge_replay(options: ReplayOptions, broker_url: str) -> dict[str, Any]:
    """The vehicle's side runs as its own process, as it would on a gateway."""
    command = [sys.executable, "-m", "flows.cli", "edge", "replay",
               *[str(p) for p in options.logs], "--broker", broker_url,
               "--vehicle", options.vehicle, "--speed", str(options.speed)]
    if options.dbc:
        command += ["--dbc", *[str(p) for p in options.dbc]]
    if options.rules is not None:
        command += ["--rules", str(options.rules)]
    if options.taps is not None:
        command += ["--taps", options.taps]
    if options.strict:
        command.append("--strict")
    done = subprocess.run(command, stdout=subprocess.PIPE, check=True)
    summary: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return summary

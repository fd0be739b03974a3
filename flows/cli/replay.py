"""``fleetcare replay``: a recorded CAN log into a DuckDB file, with one command.

Like the demo, this plays every role on one machine: it starts a broker (mosquitto when
installed, else the embedded one) and an ingest loop writing the DuckDB file, runs the
vehicle's side as its own process (``fleetcare edge replay``: the unmodified agent reading the
recording, spooling and publishing), waits until every message the agent spooled has landed,
and prints a one-line JSON summary as its last line of output.

Before any broker starts or any store file is made, the agent's process checks the inputs
(``fleetcare edge replay --check``: the logs exist, are readable, whole and hold frames; the
DBC files, rules and taps load), so a typo costs a second and leaves nothing behind. Failures
of the agent's process come back as its own one-line reason, never as a command line.

The agent keeps its spool in a state directory beside the store (``<db>.replay-state``): a
replay killed half-way into a store is resumed by the same command into the same store, and
the directory is gone once the replay has finished. A store that does not exist yet starts
afresh, whatever an older state directory beside it says.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from pipeline.errors import TerminalPipelineError

STATE_SUFFIX = ".replay-state"
"""The agent's state directory is the store's path with this appended."""
_CHILD_ERROR = "fleetcare edge: error: "
"""How the agent's process states the reason it failed (flows.cli.main's one line)."""


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
    profile: str | None = None
    """Signal profile (name or .toml path); sets the DBC files, rules and taps."""
    register: Path | None = None
    """vehicles.csv: the vehicle's model (or profile column) picks the profile."""
    profile_dirs: list[Path] = field(default_factory=list)
    dbc_dirs: list[Path] = field(default_factory=list)
    start_at: str | None = None
    """ISO 8601 time the recording's first frame is re-stamped to (None: recorded times)."""


def register_replay(sub: argparse._SubParsersAction) -> None:
    """``fleetcare replay LOG... [--dbc DBC]... [--vehicle ID] [--db PATH]``."""
    replay = sub.add_parser(
        "replay", help="land a recorded CAN log in DuckDB (broker, agent and ingest in one go)",
        description="Replay candump/ASC/BLF/TRC/MF4 recordings through a real edge agent, an "
                    "MQTT broker and ingest into a DuckDB file. Prints a JSON summary last: "
                    "frames read, frames decoded, unknown ids, signals published, rows landed, "
                    "dropped.")
    replay.add_argument("logs", nargs="+", type=Path, metavar="LOG",
                        help="recordings, replayed in the order given")
    replay.add_argument("--dbc", type=Path, action="append", default=[], metavar="DBC",
                        help="a DBC file; repeat for several (default: none, or the "
                             "profile's)")
    replay.add_argument("--vehicle", default="REPLAY", help="vehicle id (default REPLAY)")
    replay.add_argument("--db", type=Path, default=Path("replay.duckdb"), help="DuckDB file")
    replay.add_argument("--rules", type=Path,
                        help="collection rules (default: the reference, or the profile's)")
    replay.add_argument("--speed", type=float, default=0.0,
                        help="0 as fast as possible (default), 1 recorded pace, N times it")
    replay.add_argument("--start-at", metavar="TIME",
                        help="re-stamp the recording so its first frame is at TIME (ISO 8601, "
                             "UTC unless it names a zone), every interval kept (default: the "
                             "recorded times)")
    replay.add_argument("--taps", help="frame taps (default: the profile's, else obd,j1939 "
                                       "when installed)")
    replay.add_argument("--profile", help="signal profile: a name or a .toml path; sets the "
                                          "DBC files, rules and taps (default: none, or the "
                                          "register's pick)")
    replay.add_argument("--register", type=Path, metavar="CSV",
                        help="vehicles.csv: the --vehicle's model (or profile column) picks "
                             "the profile (default: not used)")
    replay.add_argument("--profile-dir", type=Path, action="append", default=[],
                        dest="profile_dirs", metavar="DIR",
                        help="folder searched for profiles first; repeatable (default: the "
                             "shipped ones only)")
    replay.add_argument("--dbc-dir", type=Path, action="append", default=[], dest="dbc_dirs",
                        metavar="DIR", help="folder searched for a profile's DBC files first; "
                                            "repeatable (default: the shipped ones only)")
    replay.add_argument("--broker-kind", choices=("auto", "mosquitto", "amqtt"),
                        default="auto",
                        help="the private broker this run starts: auto is mosquitto when "
                             "installed, else the embedded amqtt")
    replay.add_argument("--strict", action="store_true", help="fail on a malformed log line")
    replay.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    options = ReplayOptions(args.logs, args.dbc, args.db, args.vehicle, args.rules, args.speed,
                            args.taps, args.broker_kind, args.strict, profile=args.profile,
                            register=args.register, profile_dirs=args.profile_dirs,
                            dbc_dirs=args.dbc_dirs, start_at=args.start_at)
    summary = run_replay(options, log=lambda line: print(f"- {line}", file=sys.stderr))
    print(orjson.dumps(summary).decode())
    return 0 if summary["complete"] else 1


def state_root(db_path: Path) -> Path:
    """Where the agent keeps its resumable spool for replays into ``db_path``."""
    return db_path.with_name(db_path.name + STATE_SUFFIX)


def run_replay(options: ReplayOptions, log: Any = print) -> dict[str, Any]:
    """Check the inputs, then broker, ingest and the agent's process; returns the summary
    once everything landed.

    Raises:
        TerminalPipelineError: an input is unusable, or the agent's process failed (the
            message is its reason, in one line).
        BrokerError: the broker did not start.
    """
    from pipeline.broker.harness import EmbeddedBroker
    from pipeline.ingest.service import Ingestor

    if not options.db_path.parent.is_dir():
        raise TerminalPipelineError(f"the folder of the store {options.db_path} does not exist")
    check_inputs(options)
    fresh = not options.db_path.exists()
    with EmbeddedBroker(prefer=options.broker) as broker:
        log(f"broker: {broker.kind} at {broker.url}")
        # The operator names the one vehicle on a broker private to this run, and the log
        # replays as fast as possible: no registration check, no rate limit.
        ingestor = Ingestor(broker.url, options.db_path, client_id="fleetcare-replay-ingest",
                            require_registered_vehicles=False, rate_limit=None)
        ingestor.start()
        try:
            edge = edge_replay(options, broker.url, fresh=fresh)
            rows, messages = edge["signals_spooled"], edge["messages_spooled"]
            resent = int(edge.get("resent_messages", 0))
            if resent:
                log(f"resumed an interrupted replay after frame {edge['resumed_after_frame']:,}"
                    f" ({resent:,} messages sent again)")
            # An agent that did not finish (stopped, or its drain timed out) has nothing more
            # on its way: there is no point waiting for it.
            ran_through = bool(edge.get("completed", True) and edge["drained"])
            log(f"waiting for ingest to land {rows:,} rows ...")
            landed = ingestor.wait_for(lambda s: s.telemetry_rows >= rows
                                       and s.messages_landed + s.duplicates >= messages + resent,
                                       timeout=options.timeout_s if ran_through else 1.0)
        finally:
            ingestor.stop()
        stats = ingestor.stats
    counters = edge["counters"]
    finished = ran_through and landed
    # A resumed replay's earlier rows landed in the earlier run, and the messages it sent
    # again may land now: at least this run's rows, then, where a fresh one lands exactly them.
    exact = stats.telemetry_rows == rows if not resent else stats.telemetry_rows >= rows
    return {
        "frames_read": edge["frames_read"], "frames_decoded": edge["frames_decoded"],
        "unknown_frames": edge["unknown_frames"], "unknown_ids": edge["unknown_ids"],
        "malformed_log_lines": counters.get("log_malformed_lines", 0),
        "signals_published": rows, "dtc_events": edge["dtc_events"],
        "rows_landed": stats.telemetry_rows, "dtc_rows": stats.dtc_rows,
        "dead_letters": stats.dead_letters, "dropped": counters.get("evicted", 0),
        "landed_in_time": landed, "db": str(options.db_path), "broker": broker.kind,
        "profile": edge.get("profile"),
        "resumed_after_frame": edge.get("resumed_after_frame", 0), "resent_messages": resent,
        "complete": finished and exact, "ingest": asdict(stats),
    }


def _agent_command(options: ReplayOptions, *extra: str) -> list[str]:
    """``fleetcare edge replay`` for these options (run, never shown: see _reason)."""
    command = [sys.executable, "-m", "flows.cli", "edge", "replay",
               *[str(p) for p in options.logs], "--vehicle", options.vehicle,
               "--speed", str(options.speed), *extra]
    for dbc in options.dbc:
        command += ["--dbc", str(dbc)]
    if options.rules is not None:
        command += ["--rules", str(options.rules)]
    if options.taps is not None:
        command += ["--taps", options.taps]
    if options.strict:
        command.append("--strict")
    if options.profile is not None:
        command += ["--profile", options.profile]
    if options.register is not None:
        command += ["--register", str(options.register)]
    for folder in options.profile_dirs:
        command += ["--profile-dir", str(folder)]
    for folder in options.dbc_dirs:
        command += ["--dbc-dir", str(folder)]
    if options.start_at is not None:
        command += ["--start-at", options.start_at]
    return command


def check_inputs(options: ReplayOptions) -> None:
    """Have the agent's own code load every input, without a broker (``--check``).

    Raises:
        TerminalPipelineError: an input is unusable; the agent's one-line reason.
    """
    done = subprocess.run(_agent_command(options, "--check"), capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise TerminalPipelineError(_reason(done.stderr.splitlines(), done.returncode))


def edge_replay(options: ReplayOptions, broker_url: str, *, fresh: bool = False,
                state: Path | None = None) -> dict[str, Any]:
    """The vehicle's side runs as its own process, as it would on a gateway.

    Its spool lives in ``state`` (default: beside the store, :func:`state_root`); ``fresh``
    forgets an earlier interrupted run's progress. Returns the agent's summary (its
    ``completed`` and ``drained`` say whether it finished).

    Raises:
        TerminalPipelineError: the agent's process failed; its one-line reason.
    """
    root = state if state is not None else state_root(options.db_path)
    extra = ["--broker", broker_url, "--state-dir", str(root), *(["--fresh"] if fresh else [])]
    child = subprocess.Popen(_agent_command(options, *extra), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    errors: list[str] = []
    relay = threading.Thread(target=_relay, args=(child.stderr, errors), daemon=True)
    relay.start()
    try:
        assert child.stdout is not None
        out = child.stdout.read()
        child.wait()
    except BaseException:  # interrupted: the agent's spool keeps what it had, to resume
        child.kill()
        child.wait()
        raise
    finally:
        relay.join(timeout=10)
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()
    with contextlib.suppress(OSError):
        root.rmdir()  # only when empty: a finished replay leaves nothing beside the store
    lines = out.strip().splitlines()
    summary: dict[str, Any] | None = None
    with contextlib.suppress(orjson.JSONDecodeError, IndexError):
        summary = orjson.loads(lines[-1])
    if child.returncode == 0 and summary is not None:
        return summary
    if child.returncode == 1 and summary is not None and not errors:
        return summary  # it ran, and did not finish: the summary says how far it got
    raise TerminalPipelineError(_reason(errors, child.returncode))


def _relay(stream: IO[str] | None, errors: list[str]) -> None:
    """Pass the agent's log lines on to our stderr, keeping back its own error line and any
    traceback (whose last line, the exception, becomes the reason if there is no other)."""
    if stream is None:
        return
    in_traceback = False
    for line in stream:
        if line.startswith("Traceback"):
            in_traceback = True
        elif in_traceback and not line[:1].isspace():
            in_traceback = False  # "ExceptionType: message" ends it
            errors.append(line.rstrip("\n"))
        elif line.startswith(_CHILD_ERROR):
            errors.append(line.rstrip("\n"))
        elif not in_traceback:
            sys.stderr.write(line)
            sys.stderr.flush()


def _reason(lines: list[str], status: int) -> str:
    """The agent's one-line reason for failing, as it stated it (never its command line)."""
    for line in reversed(lines):
        if line.startswith(_CHILD_ERROR):
            return line[len(_CHILD_ERROR):].strip()
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    return (f"the vehicle's agent (fleetcare edge replay) failed with exit status {status}"
            + (f": {last}" if last else ""))

"""Command-line front of the edge package: ``fleetcare edge`` and ``fleetcare sim``.

Only this module prints; the library functions it calls return records.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.util
import logging
import math
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from edge.config import REFERENCE_RULES, EdgeSettings, load_edge_settings
from edge.errors import ConfigError

if TYPE_CHECKING:
    from edge.runtime import ReplayResult

log = logging.getLogger(__name__)

REPLAY_DEFAULT_TAPS = "obd,j1939"


def register_edge(sub: argparse._SubParsersAction) -> None:
    """``fleetcare edge run`` (the agent on a gateway) and ``fleetcare edge replay``."""
    edge = sub.add_parser("edge", help="run the edge agent on a gateway",
                          description="The in-vehicle agent: read CAN, decode, spool, publish.")
    edge_sub = edge.add_subparsers(dest="edge_command", metavar="SUBCOMMAND", required=True)
    run = edge_sub.add_parser("run", help="read a bus and publish until stopped",
                              description="Read a CAN bus, decode it with DBC files, keep what "
                                          "was read in the on-disk spool and publish it. Prints "
                                          "a JSON summary when stopped (SIGTERM).")
    run.add_argument("--config", type=Path, help="edge.toml (see docs/edge.md: configuration)")
    run.add_argument("--vehicle", dest="vehicle_id", metavar="ID",
                     help="the vehicle id (overrides vehicle_id in the config)")
    run.add_argument("--interface", help="python-can interface (socketcan, virtual, ...) or "
                                         "replay")
    run.add_argument("--channel", help="python-can channel (can0, vcan0, ...)")
    run.add_argument("--broker", dest="broker_url", metavar="URL",
                     help="mqtt://host:port, or mqtts://host:port for TLS (overrides "
                          "broker_url in the config)")
    run.add_argument("--taps", type=_names, help="frame taps, e.g. obd,j1939,uds")
    _profile_options(run)
    run.set_defaults(handler=_run_edge)
    replay = edge_sub.add_parser(
        "replay", help="replay recorded CAN logs through the agent to a broker",
        description="Read candump (.log), ASC, BLF, TRC or MF4 recordings through the whole "
                    "agent (decode, rules, spool, publish) and wait until the broker has "
                    "everything. The spool lives in a state directory named after the logs "
                    "and the vehicle, so running the same command again after a kill resumes "
                    "where the spool says it stopped; the directory is removed once the "
                    "replay is complete and the broker has everything. Prints a JSON summary "
                    "as the last line; exit status 1 when the replay did not finish.")
    replay.add_argument("logs", nargs="+", type=Path, metavar="LOG",
                        help="recordings, replayed in the order given")
    replay.add_argument("--dbc", type=Path, action="append", default=None, metavar="DBC",
                        help="a DBC file; repeat for several (default: none, or the "
                             "profile's)")
    replay.add_argument("--rules", type=Path, default=None,
                        help="collection rules (default: the reference rules, or the "
                             "profile's)")
    replay.add_argument("--vehicle", default="REPLAY", help="vehicle id (default REPLAY)")
    replay.add_argument("--broker", metavar="URL",
                        help="mqtt://host:port, or mqtts://host:port for TLS (required "
                             "unless --check)")
    replay.add_argument("--speed", type=float, default=0.0,
                        help="0 as fast as possible (default), 1 recorded pace, N times it")
    replay.add_argument("--start-at", type=_instant, default=None, metavar="TIME",
                        help="re-stamp the recording so its first frame is at TIME (ISO 8601, "
                             "UTC unless it names a zone), every interval kept (default: the "
                             "recorded times)")
    replay.add_argument("--taps", type=_names, default=None,
                        help=f"frame taps (default: the profile's, else {REPLAY_DEFAULT_TAPS} "
                             "when installed; '' none)")
    _profile_options(replay)
    replay.add_argument("--spool-dir", type=Path,
                        help="spool parent, kept as it is (default: the state directory)")
    replay.add_argument("--state-dir", type=Path,
                        help="where state directories live (default "
                             "$XDG_STATE_HOME/fleetcare/replay, else "
                             "~/.local/state/fleetcare/replay)")
    replay.add_argument("--fresh", action="store_true",
                        help="start over: forget what an interrupted run of the same logs "
                             "and vehicle had spooled")
    replay.add_argument("--check", action="store_true",
                        help="only check the logs, DBC files, rules and taps, then exit")
    replay.add_argument("--strict", action="store_true",
                        help="fail on the first malformed log line (default: count and skip)")
    replay.add_argument("--connect-timeout", type=_seconds, default=10.0,
                        help="seconds to wait for the broker to accept the first connection "
                             "(default 10)")
    replay.add_argument("--drain-timeout", type=float, default=600.0,
                        help="seconds to wait for the broker at the end (default 600)")
    _progress_option(replay)
    replay.set_defaults(handler=_run_replay, parser=replay)
    profiles = edge_sub.add_parser(
        "profiles", help="list the signal profiles, check each, or show the one a model gets",
        description="Every signal profile on the search path (each --profile-dir, then the "
                    "shipped dbc/profiles), with the models it lists, its DBC files as found "
                    "on the DBC search path and its taps; a profile that does not resolve (a "
                    "DBC not found, a rule naming a signal its DBC lacks) says why. Exit "
                    "status 1 when any does not resolve. With --model: only the profile that "
                    "model gets.")
    profiles.add_argument("--model", help="show the profile this vehicle model gets "
                                          "(default: list every profile)")
    profiles.add_argument("--profile-dir", type=Path, action="append", default=[],
                          dest="profile_dirs", metavar="DIR",
                          help="folder searched for profiles before the shipped ones; "
                               "repeatable (default: the shipped ones only)")
    profiles.add_argument("--dbc-dir", type=Path, action="append", default=[],
                          dest="dbc_dirs", metavar="DIR",
                          help="folder searched for DBC files before the shipped ones; "
                               "repeatable (default: the shipped ones only)")
    profiles.add_argument("--json", action="store_true",
                          help="one JSON array, an object per profile (default: a line per "
                               "profile)")
    profiles.set_defaults(handler=_run_profiles)


def register_dbc(sub: argparse._SubParsersAction) -> None:
    """``fleetcare dbc check PATH...``."""
    dbc = sub.add_parser("dbc", help="check DBC files", description="DBC file tools.")
    dbc_sub = dbc.add_subparsers(dest="dbc_command", metavar="SUBCOMMAND", required=True)
    check = dbc_sub.add_parser(
        "check", help="does each DBC load (strict, then lenient), and if not, why",
        description="For each file (directories are searched for *.dbc): whether it loads "
                    "strictly, leniently or not at all, its message and signal counts, and the "
                    "parser's error. Exit status 1 when any file does not load.")
    check.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                       help="DBC files, or folders searched for *.dbc")
    check.add_argument("--json", action="store_true",
                       help="one JSON array, an object per file (default: a line per file)")
    check.set_defaults(handler=_run_dbc_check)


def _profile_options(parser: argparse.ArgumentParser) -> None:
    """``--profile``, ``--register``, ``--profile-dir``, ``--dbc-dir`` (edge run and replay)."""
    parser.add_argument("--profile", help="signal profile: a name (dbc/profiles/NAME.toml, or "
                                          "in a --profile-dir) or a .toml path; sets the DBC "
                                          "files, rules and taps (default: none, or the "
                                          "register's pick)")
    parser.add_argument("--register", type=Path, metavar="CSV",
                        help="vehicles.csv: the vehicle's model (or profile column) picks the "
                             "profile (default: not used)")
    parser.add_argument("--profile-dir", type=Path, action="append", dest="profile_dirs",
                        metavar="DIR", help="folder searched for profiles before the shipped "
                                            "ones; repeatable (default: the shipped ones only)")
    parser.add_argument("--dbc-dir", type=Path, action="append", dest="dbc_dirs",
                        metavar="DIR", help="folder searched for a profile's DBC files before "
                                            "the shipped ones; repeatable (default: the "
                                            "shipped ones only)")


def _profile_overrides(args: argparse.Namespace, vehicle_id: str | None) -> dict[str, Any]:
    """Settings overrides for the profile options; the register is read for ``vehicle_id``."""
    from edge.profiles import register_entry

    overrides: dict[str, Any] = {k: getattr(args, k) for k in ("profile", "profile_dirs",
                                                               "dbc_dirs")
                                 if getattr(args, k) is not None}
    if args.register is not None:
        if vehicle_id is None:
            raise ConfigError("--register needs the vehicle id (--vehicle or vehicle_id in "
                              "the config) to find the vehicle's row")
        model, profile = register_entry(args.register, vehicle_id)
        overrides["vehicle_model"] = model
        if profile is not None and args.profile is None:
            overrides["profile"] = profile
    return overrides


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _instant(text: str) -> dt.datetime:
    """An ISO 8601 time, UTC when it names no zone (argparse type)."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time "
                                         "(e.g. 2026-03-01T08:00:00Z)") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _seconds(text: str) -> float:
    """A positive, finite number of seconds (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number of seconds")
    return value


def register_sim(sub: argparse._SubParsersAction) -> None:
    """``fleetcare sim run``: a simulated fleet through real agents."""
    sim = sub.add_parser("sim", help="simulate a fleet on virtual CAN buses",
                         description="Simulated vehicles with hidden, degrading health.")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)
    run = sim_sub.add_parser("run", help="simulate N vehicles for D days through real agents",
                             description="Each vehicle's frames go over a python-can virtual "
                                         "bus to a real agent that publishes to the broker; "
                                         "a fleet larger than one process can host runs in "
                                         "several agent processes. The agents delete a "
                                         "spooled message on the store's receipt, so the run "
                                         "ends once fleetcare ingest has committed "
                                         "everything. Prints a JSON summary as the last "
                                         "line; exit status 1 when messages were left "
                                         "undelivered after --drain-timeout.")
    run.add_argument("--broker", required=True, metavar="URL",
                     help="mqtt://host:port, or mqtts://host:port for TLS")
    run.add_argument("--vehicles", type=int, default=10, help="fleet size (default 10)")
    run.add_argument("--days", type=int, default=120, help="simulated days (default 120)")
    run.add_argument("--seed", type=int, default=0, help="fleet seed (default 0)")
    _failing_share_option(run)
    run.add_argument("--start", default="2026-01-01", help="first simulated day (YYYY-MM-DD)")
    run.add_argument("--snapshot-s", type=float, default=1.0,
                     help="seconds of bus traffic per simulated day (default 1.0)")
    run.add_argument("--rules", type=Path, default=REFERENCE_RULES, help="collection rules")
    run.add_argument("--spool-dir", type=Path, help="where the agents' spools live")
    run.add_argument("--connect-timeout", type=_seconds, default=10.0,
                     help="seconds to wait for every agent's first connection (default 10)")
    run.add_argument("--processes", type=_count, metavar="N",
                     help="agent processes to spread the fleet over (default: as few as keep "
                          "each under --vehicles-per-process; one runs in this process)")
    run.add_argument("--vehicles-per-process", type=_count, metavar="M",
                     help="the most vehicles one process hosts (default and upper bound: "
                          "what fits below the 1,024 file descriptors paho's select() "
                          "can watch, about a hundred)")
    run.add_argument("--drain-timeout", type=_seconds, default=300.0,
                     help="seconds to wait at the end until the store has receipted every "
                          "message (default 300)")
    run.add_argument("--receipt-timeout", type=_seconds, default=30.0,
                     help="seconds after its PUBACK an agent sends a message no receipt named "
                          "again, doubling each time up to 480 (default 30)")
    run.add_argument("--no-receipts", dest="receipts", action="store_false",
                     help="delete a spooled message on the broker's PUBACK, not the store's "
                          "receipt: only for a broker with no fleetcare ingest behind it "
                          "(default: receipts on)")
    _progress_option(run)
    run.set_defaults(handler=_run_sim)
    master = sim_sub.add_parser(
        "fleet", help="write the simulated fleet's master data as DMS CSV files",
        description="vehicles.csv, customers.csv, centres.csv, capacity.csv and catalogue.csv "
                    "for the vehicles `sim run` drives with the same --vehicles and --seed, "
                    "and the regions' temperature outlook (region_forecasts.csv), in the "
                    "format `fleetcare fleet import` reads. Prints the files as JSON.")
    master.add_argument("--vehicles", type=int, default=10, help="fleet size (default 10)")
    master.add_argument("--seed", type=int, default=0, help="fleet seed (default 0)")
    _failing_share_option(master)
    master.add_argument("--start", default="2026-01-01",
                        help="first day of the capacity calendar, YYYY-MM-DD (default "
                             "2026-01-01)")
    master.add_argument("--out", type=Path, default=Path("fleet-master-data"),
                        help="folder to write the files into (default ./fleet-master-data)")
    master.add_argument("--window-start", metavar="DAY",
                        help="first simulated day, YYYY-MM-DD: region_forecasts.csv covers the "
                             "window and 30 days past it (default: --start)")
    master.add_argument("--days", type=int, default=0,
                        help="simulated days of the window (default 0: the forecast covers 30 "
                             "days from --window-start)")
    master.set_defaults(handler=_sim_fleet)
    shop = sim_sub.add_parser(
        "workshop", help="write the simulated fleet's repair history as repair_orders.csv",
        description="The repair orders of the fleet `sim run` drives with the same --vehicles, "
                    "--days, --seed and --start: each failure's unscheduled (0-5 days later) "
                    "or roadside order, routine brake inspections and preventive pad "
                    "replacements, opened within the simulated window, in the format "
                    "`fleetcare service import` reads. Computed from the seed alone (no broker, "
                    "no agents). Prints the file and its order count as JSON.")
    shop.add_argument("--vehicles", type=int, default=10, help="fleet size (default 10)")
    shop.add_argument("--days", type=int, default=120, help="simulated days (default 120)")
    shop.add_argument("--seed", type=int, default=0, help="fleet seed (default 0)")
    _failing_share_option(shop)
    shop.add_argument("--start", default="2026-01-01",
                      help="first simulated day, YYYY-MM-DD (default 2026-01-01)")
    shop.add_argument("--out", type=Path, default=Path("fleet-master-data"),
                      help="folder to write repair_orders.csv into (default "
                           "./fleet-master-data)")
    shop.set_defaults(handler=_sim_workshop)


def _share(text: str) -> float:
    """A share between 0 and 1 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a share from 0 to 1")
    return value


def _failing_share_option(parser: argparse.ArgumentParser) -> None:
    """``--failing-share``: the same on ``sim run``, ``sim fleet`` and ``sim workshop``, so
    the three commands describe one fleet."""
    parser.add_argument("--failing-share", type=_share, default=0.3, metavar="SHARE",
                        help="share of vehicles placed 35-170 days from a failure of one "
                             "part (default 0.3; the rest fail only as their state and luck "
                             "have it)")


def _count(text: str) -> int:
    """A whole number of at least one (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1 or more")
    return value


def _run_edge(args: argparse.Namespace) -> int:
    from edge.runtime import run, summary

    overrides = {k: v for k, v in vars(args).items()
                 if k in ("vehicle_id", "interface", "channel", "broker_url", "taps")
                 and v is not None}
    settings = load_edge_settings(args.config, **overrides)
    picks = _profile_overrides(args, settings.vehicle_id)
    if picks:
        settings = load_edge_settings(args.config, **overrides, **picks)
    stop = _stop_on_signals()
    watchdog = os.environ.get("WATCHDOG_USEC")
    result = run(settings, stop, notify_socket=os.environ.get("NOTIFY_SOCKET"),
                 watchdog_usec=int(watchdog) if watchdog and watchdog.isdigit() else None)
    print(orjson.dumps(summary(*result)).decode())
    return 0


def _run_replay(args: argparse.Namespace) -> int:
    from edge.logfile import check_log
    from edge.profiles import selected_profile
    from edge.replaystate import ReplayState
    from edge.runtime import check_replay, replay_summary

    if args.broker is None and not args.check:
        args.parser.error("the following arguments are required: --broker")
    if args.spool_dir is not None and (args.state_dir is not None or args.fresh):
        raise ConfigError("--state-dir and --fresh are about the state directory, which a "
                          "replay with --spool-dir does not use")
    for path in args.logs:  # before any directory is made or broker asked
        check_log(path)
    picks = _profile_overrides(args, args.vehicle)
    profiled = "profile" in picks or "vehicle_model" in picks
    explicit: dict[str, Any] = {}
    if args.dbc is not None:
        explicit["dbc"] = args.dbc
    elif not profiled:
        explicit["dbc"] = []  # without a profile, a replay decodes with no DBC unless given
    if args.rules is not None:
        explicit["rules"] = args.rules
    taps = args.taps
    if taps is None and not profiled:  # a profile brings its own taps; the default applies
        # only where the diagnostics taps are installed
        have = importlib.util.find_spec("edge.diag.taps") is not None
        taps = _names(REPLAY_DEFAULT_TAPS) if have else []
        if not have:
            log.warning("edge.diag.taps is not installed: replaying without frame taps")

    def settings_for(spool_dir: Path | None) -> EdgeSettings:
        extra: dict[str, Any] = {"spool_dir": spool_dir} if spool_dir is not None else {}
        if args.start_at is not None:
            extra["replay_start"] = args.start_at
        if taps is not None:
            extra["taps"] = taps
        return load_edge_settings(
            vehicle_id=args.vehicle, interface="replay",
            channel=",".join(str(p) for p in args.logs),
            broker_url=args.broker or "mqtt://127.0.0.1", replay_speed=args.speed,
            strict_logs=args.strict, **explicit, **picks, **extra)

    picked = selected_profile(settings_for(None))
    profile = {"profile": picked.name if picked else None}
    if args.check:
        checked = check_replay(settings_for(None))
        print(orjson.dumps({"checked": True, "logs": [str(p) for p in args.logs], **profile,
                            "dbc": [str(p) for p in checked.dbc],
                            "rules": str(checked.rules), "taps": checked.taps}).decode())
        return 0
    if args.spool_dir is not None:
        result = _replay(settings_for(args.spool_dir), args)
    else:
        with ReplayState(args.logs, args.vehicle, root=args.state_dir) as state:
            if args.fresh:
                state.clear()
            try:
                result = _replay(settings_for(state.directory), args)
            except BaseException:
                if not state.holds_work():
                    state.remove()  # nothing stored to resume: leave nothing behind
                raise
            if (result.completed and result.drained) or not state.holds_work():
                state.remove()
            else:
                log.warning("the replay did not finish; %s keeps its spool: the same "
                            "command resumes it", state.directory)
    print(orjson.dumps(replay_summary(result) | profile).decode())
    return 0 if result.completed and result.drained else 1


def _progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="a progress bar on stderr (default: only when stderr is a "
                             "terminal; --progress draws it anyway, --no-progress never)")


def _replay(settings: EdgeSettings, args: argparse.Namespace) -> ReplayResult:
    from edge.progress import Progress
    from edge.runtime import run_replay

    # Counted in megabytes of the recordings read: the frames in a log are not known before
    # it is read, its size is.
    size_mb = sum(Path(p).stat().st_size for p in args.logs) / 1e6
    with Progress("replaying", max(1, math.ceil(size_mb)), unit="MB of logs",
                  enabled=args.progress) as bar:
        return run_replay(settings, _stop_on_signals(), connect_timeout_s=args.connect_timeout,
                          drain_timeout_s=args.drain_timeout,
                          on_progress=lambda read: bar.update(math.ceil(read / 1e6)))


def _run_profiles(args: argparse.Namespace) -> int:
    from edge.profiles import check_profiles, profile_for_model, report_of

    if args.model is not None:
        reports = [report_of(profile_for_model(args.model, args.profile_dirs), args.dbc_dirs)]
    else:
        reports = check_profiles(args.profile_dirs, args.dbc_dirs)
    if args.json:
        print(orjson.dumps([dataclasses.asdict(r) for r in reports]).decode())
    else:
        for report in reports:
            print(f"{'ok' if not report.error else 'fails':5} {report.name}: models "
                  f"{', '.join(report.models) or 'none'}; DBC {', '.join(report.dbc) or 'none'}; "
                  f"taps {', '.join(report.taps) or 'none'}"
                  + (f" - {report.error}" if report.error else ""))
    return 1 if any(r.error for r in reports) else 0


def _run_dbc_check(args: argparse.Namespace) -> int:
    from edge.dbccheck import check_all

    reports = check_all(args.paths)
    if args.json:
        print(orjson.dumps([dataclasses.asdict(r) | {"verdict": r.verdict}
                            for r in reports]).decode())
    else:
        for report in reports:
            print(f"{report.verdict:7} {report.path}: {report.messages} messages, "
                  f"{report.signals} signals" + (f" - {report.error}" if report.error else ""))
    failed = sum(1 for r in reports if not r.loads)
    print(f"{len(reports)} files: {len(reports) - failed} load, {failed} fail", file=sys.stderr)
    return 1 if failed or not reports else 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _run_sim(args: argparse.Namespace) -> int:
    from edge.progress import Progress
    from edge.sim.shards import run_fleet_processes
    from edge.sim.simulator import make_fleet

    start = dt.datetime.fromisoformat(args.start).replace(tzinfo=dt.UTC).timestamp()
    specs = make_fleet(args.vehicles, seed=args.seed, start_ts=start,
                       failing_share=args.failing_share)
    with (tempfile.TemporaryDirectory(prefix="fleetcare-spool-") as tmp,
          Progress("simulating", args.days, unit="days", enabled=args.progress) as bar):
        result = run_fleet_processes(
            specs, args.broker, args.rules, days=args.days, start_ts=start,
            spool_dir=args.spool_dir or Path(tmp), snapshot_s=args.snapshot_s,
            on_day=lambda day: bar.update(day + 1),
            connect_timeout_s=args.connect_timeout, processes=args.processes,
            per_process=args.vehicles_per_process, drain_timeout_s=args.drain_timeout,
            receipts=args.receipts, receipt_timeout_s=args.receipt_timeout)
    summary: dict[str, Any] = dataclasses.asdict(result)
    summary["per_vehicle"] = {k: dataclasses.asdict(v) for k, v in result.per_vehicle.items()}
    if result.messages_undelivered:
        kept = (f"they wait in {args.spool_dir}" if args.spool_dir is not None else
                "they were in temporary spools, now removed (--spool-dir keeps them)")
        log.warning("%d messages were not %s within --drain-timeout %g s: %s",
                    result.messages_undelivered,
                    "receipted by the store" if args.receipts else "acknowledged by the broker",
                    args.drain_timeout, kept)
    print(orjson.dumps(summary).decode())
    return 1 if result.messages_undelivered else 0


def _sim_fleet(args: argparse.Namespace) -> int:
    from edge.sim.masterdata import vehicles_of, write_master_data, write_region_forecasts
    from edge.sim.simulator import make_fleet

    try:
        start = dt.date.fromisoformat(args.start)
    except ValueError:
        print(f"fleetcare sim fleet: --start {args.start!r} is not a day as YYYY-MM-DD",
              file=sys.stderr)
        return 2
    try:
        first = dt.date.fromisoformat(args.window_start) if args.window_start else start
    except ValueError:
        print(f"fleetcare sim fleet: --window-start {args.window_start!r} is not a day as "
              "YYYY-MM-DD", file=sys.stderr)
        return 2
    if args.days < 0:
        print(f"fleetcare sim fleet: --days must be 0 or more, got {args.days}", file=sys.stderr)
        return 2
    specs = make_fleet(args.vehicles, seed=args.seed, failing_share=args.failing_share)
    files = write_master_data(args.out, vehicles_of(specs), seed=args.seed, start=start)
    files["region_forecasts"] = write_region_forecasts(args.out, seed=args.seed, first=first,
                                                       days=args.days)
    print(orjson.dumps({k: str(v) for k, v in files.items()}).decode())
    return 0


def _sim_workshop(args: argparse.Namespace) -> int:
    from edge.sim.simulator import make_fleet
    from edge.sim.workshop import write_repair_orders

    try:
        start = dt.date.fromisoformat(args.start)
    except ValueError:
        print(f"fleetcare sim workshop: --start {args.start!r} is not a day as YYYY-MM-DD",
              file=sys.stderr)
        return 2
    if args.vehicles < 0 or args.days < 0:
        print("fleetcare sim workshop: --vehicles and --days must be 0 or more",
              file=sys.stderr)
        return 2
    start_ts = dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC).timestamp()
    specs = make_fleet(args.vehicles, seed=args.seed, start_ts=start_ts,
                       failing_share=args.failing_share)
    path = write_repair_orders(args.out, specs, start_ts=start_ts, days=args.days)
    with path.open(encoding="utf-8") as handle:
        orders = sum(1 for _ in handle) - 1
    print(orjson.dumps({"repair_orders": str(path), "orders": orders}).decode())
    return 0

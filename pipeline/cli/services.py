"""Command-line front of the pipeline: broker, ingest, dead letters, export (crm, leads:
cli_leads).

Heavy modules are imported inside the handlers, so listing commands stays cheap.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from pipeline.broker.limits import derive_limits
from pipeline.cli.broker_options import add_fleet_size_argument

if TYPE_CHECKING:
    from pipeline.config import PipelineSettings
    from pipeline.ingest.service import Ingestor
    from pipeline.leads.urgent import UrgentLeads

SubParsers = argparse._SubParsersAction
BROKER_KINDS = ("auto", "mosquitto", "amqtt")
"""``--broker-kind``'s choices: the one-machine broker a command starts itself."""
FLUSH_BYTES = 32 * 1024 * 1024
"""``--flush-bytes``' default: :data:`pipeline.ingest.service.FLUSH_BYTES` (kept here so
listing commands does not import ingest; a test holds the two equal)."""
log = logging.getLogger(__name__)


def _print_json(value: Any) -> None:
    print(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode())


def register_broker(sub: SubParsers) -> None:
    """``fleetcare broker``: the one-machine MQTT broker."""
    broker = sub.add_parser("broker", help="run the embedded MQTT broker",
                            description="mosquitto when installed, else amqtt, on 127.0.0.1.")
    broker.add_argument("--port", type=int, default=1883, help="TCP port on 127.0.0.1")
    broker.add_argument("--broker-kind", "--prefer", dest="broker_kind",
                        choices=BROKER_KINDS, default="auto",
                        help="which broker runs: auto is mosquitto when installed, else the "
                             "embedded amqtt (--prefer: the old spelling)")
    broker.add_argument("--data-dir", type=Path, help="where the broker persists sessions")
    add_fleet_size_argument(broker)
    broker.set_defaults(handler=_broker)


def _broker(args: argparse.Namespace) -> int:
    from pipeline.broker.harness import check_port_free, serve_forever

    limits = derive_limits(args.fleet_size)  # before the banner, like the port's check
    check_port_free(args.port)  # before the banner: a busy port is one line and exit 1
    print(f"broker on mqtt://127.0.0.1:{args.port} (Ctrl-C stops)", file=sys.stderr)
    serve_forever(args.port, args.broker_kind, args.data_dir, limits)
    return 0


def register_ingest(sub: SubParsers) -> None:
    """``fleetcare ingest``: MQTT to DuckDB exactly once."""
    ingest = sub.add_parser("ingest", help="land MQTT messages in DuckDB exactly once",
                            description="Subscribe with a persistent QoS 1 session; acknowledge "
                                        "each message only after its rows are committed.")
    ingest.add_argument("--broker", required=True, metavar="URL",
                        help="mqtt://host:port, or mqtts://host:port for TLS")
    ingest.add_argument("--db", type=Path, required=True, help="DuckDB file (the one writer)")
    ingest.add_argument("--client-id", default="fleetcare-ingest",
                        help="MQTT client id: the persistent session's name on the broker")
    ingest.add_argument("--share-group", help="MQTT shared-subscription group (several workers)")
    ingest.add_argument("--fault-codes", action=argparse.BooleanOptionalAction, default=True,
                        help="subscribe to fault codes and vehicle info; --no-fault-codes for "
                             "every worker of a share group but one, so that one sees every "
                             "fault code and raises each urgent lead once (default: on)")
    ingest.add_argument("--flush-rows", type=int, default=122_880,
                        help="land a batch at this many telemetry rows (default 122880, "
                             "DuckDB's row-group size)")
    ingest.add_argument("--flush-bytes", type=int, default=FLUSH_BYTES,
                        help=f"...or at this many bytes of payload, whatever the rows "
                             f"(default {FLUSH_BYTES}: 32 MiB; an oversize message counts "
                             f"only the 64 KiB it keeps)")
    ingest.add_argument("--flush-interval", type=float, default=1.0,
                        help="...or when its oldest message has waited this many seconds")
    ingest.add_argument("--urgent", action=argparse.BooleanOptionalAction, default=None,
                        help="raise a critical fault's lead as soon as its fault code lands "
                             "and deliver it to the CRM at once (default: on when "
                             "FLEETCARE_PIPELINE__CRM_URL and FLEETCARE_PIPELINE__CRM_SECRET "
                             "are both set)")
    _add_admission_arguments(ingest)
    _add_maintenance_arguments(ingest)
    ingest.set_defaults(handler=_ingest)


def _add_admission_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.ingest.admission import DEFAULT_RATE_LIMIT as LIMIT  # light: no DuckDB work

    parser.add_argument("--vehicles", type=Path, metavar="CSV",
                        help="fleet register (vehicles.csv as `fleet import` reads it, or "
                             "vehicle_id,model,region) to import now and again whenever it "
                             "changes (default: none)")
    parser.add_argument("--customers", type=Path, metavar="CSV",
                        help="customers.csv (as `fleet import` reads it) to import likewise, so "
                             "ingest's urgent leads can name the customer; without it they are "
                             "held (default: none)")
    parser.add_argument("--allow-unregistered", action="store_true",
                        help="land messages of vehicles not in the vehicles table (default: "
                             "dead-letter them)")
    parser.add_argument("--rate-limit", type=float, default=LIMIT.rows_per_s, metavar="ROWS",
                        help=f"rows per second each vehicle may send on average; excess is "
                             f"dead-lettered; 0 turns the limit off "
                             f"(default {LIMIT.rows_per_s:.0f})")
    parser.add_argument("--rate-burst", type=float, default=LIMIT.burst_rows, metavar="ROWS",
                        help=f"rows a vehicle may send at once (default {LIMIT.burst_rows:.0f})")
    parser.add_argument("--rate-catch-up", type=float, default=LIMIT.catch_up_s,
                        metavar="SECONDS",
                        help=f"after ingest was down, each vehicle may also send what it could "
                             f"have sent meanwhile, for a downtime up to this long; 0 grants "
                             f"nothing (default {LIMIT.catch_up_s:.0f})")


def _add_maintenance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--export-dir", type=Path,
                        help="move cold telemetry to Parquet here (date/vehicle partitions)")
    parser.add_argument("--cold-after-days", type=float, default=7.0,
                        help="telemetry older than this many whole days is cold (default 7)")
    parser.add_argument("--snapshot", type=Path,
                        help="keep a read-only copy of the store here for readers")
    parser.add_argument("--maintenance-interval", type=float, default=300.0,
                        help="seconds between exports/snapshots (default 300)")


def _check_ingest_arguments(args: argparse.Namespace) -> None:
    """Refuse numbers ingest cannot work with, before anything is opened or connected.

    argparse takes ``nan``, ``inf`` and negatives for a float; left alone, a NaN or negative
    ``--rate-limit`` would silently turn the limit off (it is off only at 0), and
    ``--flush-rows 0`` would land every message alone.

    Raises:
        TerminalPipelineError: the first argument out of range, with what it must be.
    """
    from pipeline.errors import TerminalPipelineError

    positive = {"--flush-rows": args.flush_rows, "--flush-bytes": args.flush_bytes,
                "--flush-interval": args.flush_interval, "--rate-burst": args.rate_burst,
                "--maintenance-interval": args.maintenance_interval}
    at_least_zero = {"--rate-limit": args.rate_limit, "--rate-catch-up": args.rate_catch_up,
                     "--cold-after-days": args.cold_after_days}
    for flag, value in positive.items():
        if not (math.isfinite(value) and value > 0):
            raise TerminalPipelineError(f"{flag} must be a positive number, not {value}")
    for flag, value in at_least_zero.items():
        if not (math.isfinite(value) and value >= 0):
            raise TerminalPipelineError(f"{flag} must be 0 or a positive number, not {value}")


def _ingest(args: argparse.Namespace) -> int:
    from pipeline.broker.auth import credentials_from_settings, tls_from_settings
    from pipeline.config import load_pipeline_settings
    from pipeline.foreground import run_until_terminated
    from pipeline.ingest.admission import RateLimit
    from pipeline.ingest.service import Ingestor
    from pipeline.leads.urgent import critical_codes
    from pipeline.store.export import ExportPolicy

    _check_ingest_arguments(args)
    settings = load_pipeline_settings()
    policy = None
    if args.export_dir or args.snapshot:
        policy = ExportPolicy(args.export_dir, args.cold_after_days, args.snapshot)
    limit = (RateLimit(args.rate_limit, args.rate_burst, args.rate_catch_up)
             if args.rate_limit > 0 else None)
    urgent = _urgent_hook(args.urgent, settings)
    ingestor = Ingestor(
        args.broker, args.db, client_id=args.client_id, share_group=args.share_group,
        flush_rows=args.flush_rows, flush_interval_s=args.flush_interval,
        flush_bytes=args.flush_bytes, after_commit=urgent,
        critical_codes=critical_codes(),  # land at once, with or without urgent leads
        fault_codes=args.fault_codes,
        maintenance=policy, maintenance_interval_s=args.maintenance_interval,
        require_registered_vehicles=not args.allow_unregistered,
        vehicles_file=args.vehicles, customers_file=args.customers,
        rate_limit=limit,
        credentials=credentials_from_settings(settings), tls=tls_from_settings(settings),
        mqtt_client=settings.mqtt_client)
    run_until_terminated(_announced(ingestor))
    return 0


@contextmanager
def _announced(ingestor: Ingestor) -> Iterator[Ingestor]:
    """Run ``ingestor`` between two lines on stderr, printed at any verbosity: once it is
    subscribed, what it listens to and where it writes; once it has stopped (SIGTERM,
    Ctrl-C) and landed what was pending, what it did. An operator, or a script waiting for
    ingest to be ready, sees both without ``-v``; the counters' detail stays in the log."""
    from pipeline.broker.auth import redact_url

    with ingestor:
        admits = ("registered vehicles only" if ingestor.require_registered_vehicles
                  else "any vehicle")
        print(f"ingest: listening on {redact_url(ingestor.broker_url)} for "
              f"{', '.join(ingestor.topic_filters)}; writing {ingestor.db_path} "
              f"({admits}); SIGTERM or Ctrl-C stops", file=sys.stderr, flush=True)
        yield ingestor
    stats = ingestor.stats
    print(f"ingest: stopped after {stats.messages_received:,} messages: "
          f"{stats.messages_landed:,} landed ({stats.telemetry_rows:,} telemetry rows, "
          f"{stats.dtc_rows:,} fault codes), {stats.dead_letters:,} dead letters, "
          f"{stats.duplicates:,} duplicates", file=sys.stderr, flush=True)


_CRM_URL_ENV = "FLEETCARE_PIPELINE__CRM_URL"
_CRM_SECRET_ENV = "FLEETCARE_PIPELINE__CRM_SECRET"


def _urgent_hook(choice: bool | None, settings: PipelineSettings) -> UrgentLeads | None:
    """The critical-fault hook ingest runs after each commit, or None (with the reason logged).

    ``choice`` is ``--urgent`` (True), ``--no-urgent`` (False) or neither (None). Left to
    itself, ingest raises urgent leads only when the CRM endpoint and its signing key were
    both configured: the URL has a default (``fleetcare crm serve``'s local address) that
    ``crm deliver`` may use, but leads posted to an address nobody chose would only pile up
    failed attempts. ``--urgent`` takes the URL setting as it is, default included, and
    then needs a valid key: the key is checked here, so a bad one stops ingest at start
    instead of failing every delivery later. A lead the CRM does not take stays pending in
    the outbox, where the scheduled delivery retries it.

    Raises:
        TerminalPipelineError: ``--urgent`` without a signing key, or a key that is not
            ``whsec_`` followed by base64.
    """
    from pipeline.broker.auth import redact_url
    from pipeline.crm.signing import check_secret, key_list
    from pipeline.errors import TerminalPipelineError
    from pipeline.leads.urgent import UrgentLeads

    keys = key_list(settings.crm_secret.get_secret_value())
    url_set = "crm_url" in settings.model_fields_set
    if choice is False:
        log.info("urgent leads off (--no-urgent): critical faults wait for the scheduled "
                 "advice and delivery")
        return None
    if choice is None and not (keys and url_set):
        missing = [name for name, given in ((_CRM_URL_ENV, url_set), (_CRM_SECRET_ENV, keys))
                   if not given]
        log.warning("urgent leads off: %s not set, so critical faults wait for the scheduled "
                    "advice and delivery (set both, or pass --urgent)", " and ".join(missing))
        return None
    if not keys:
        raise TerminalPipelineError(
            f"--urgent needs the CRM's signing key: set {_CRM_SECRET_ENV} (or "
            f"{_CRM_SECRET_ENV}_FILE) to its whsec_... key")
    for key in keys:
        try:
            check_secret(key)
        except ValueError as exc:
            raise TerminalPipelineError(f"{_CRM_SECRET_ENV}: {exc}") from None
    log.info("urgent leads on: critical faults are delivered to %s as they land",
             redact_url(settings.crm_url))
    return UrgentLeads(settings.crm_url, keys)


def register_export(sub: SubParsers) -> None:
    """``fleetcare export``: cold telemetry to Parquet and a snapshot, now (ingest stopped)."""
    export = sub.add_parser(
        "export", help="move cold telemetry to Parquet and/or write a snapshot now",
        description="Needs the store's write lock: run it while ingest is stopped, or let "
                    "ingest do it periodically (fleetcare ingest --export-dir/--snapshot).")
    export.add_argument("--db", type=Path, required=True, help="DuckDB file")
    export.add_argument("--dir", type=Path, help="Parquet export folder")
    export.add_argument("--older-than-days", type=float, default=7.0,
                        help="move telemetry older than this many whole days (default 7)")
    export.add_argument("--snapshot", type=Path, help="also write a snapshot of the store here")
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from pipeline.store import connection as store
    from pipeline.store import export

    if args.dir is None and args.snapshot is None:
        print("nothing to do: give --dir (Parquet export) and/or --snapshot PATH",
              file=sys.stderr)
        return 2
    report: dict[str, Any] = {}
    with store.connect(_existing_store(args.db)) as con:
        if args.dir is not None:
            report["export"] = dataclasses.asdict(
                export.export_cold(con, args.dir, args.older_than_days))
        if args.snapshot is not None:
            report["snapshot"] = str(export.write_snapshot(con, args.snapshot))
    _print_json(report)
    return 0


def register_deadletter(sub: SubParsers) -> None:
    """``fleetcare deadletter list|replay``."""
    dead = sub.add_parser("deadletter", help="inspect and replay messages that did not land",
                          description="Messages ingest could not land, with the reason.")
    dead_sub = dead.add_subparsers(dest="dead_command", metavar="SUBCOMMAND", required=True)
    show = dead_sub.add_parser("list", help="list dead letters with their reasons")
    show.add_argument("--db", type=Path, required=True, help="DuckDB file (the landing store)")
    show.add_argument("--limit", type=int, default=50, help="at most this many, newest first")
    show.add_argument("--pending", action="store_true", help="only letters not yet replayed")
    show.add_argument("--json", action="store_true",
                      help="one JSON array of the letters instead of tab-separated lines")
    show.set_defaults(handler=_deadletter_list)
    replay = dead_sub.add_parser("replay", help="land dead letters again (after a fix)")
    replay.add_argument("--db", type=Path, required=True, help="DuckDB file (the landing store)")
    replay.add_argument("ids", nargs="*", type=int, help="only these ids (default: all)")
    replay.add_argument("--allow-unregistered", action="store_true",
                        help="also land letters of vehicles not in the vehicles table")
    replay.set_defaults(handler=_deadletter_replay)


def _existing_store(path: Path) -> Path:
    """``path`` if a store is there; reading commands must not create an empty one.

    Raises:
        StoreError: nothing at ``path``.
    """
    from pipeline.errors import StoreError

    if not path.is_file():
        raise StoreError(f"no store at {path} (ingest creates it; check the --db path)")
    return path


def _deadletter_list(args: argparse.Namespace) -> int:
    from pipeline.ingest import deadletters
    from pipeline.store import connection as store

    with store.connect_readonly(_existing_store(args.db)) as con:
        letters = deadletters.list_dead_letters(con, limit=args.limit,
                                                pending_only=args.pending)
    if args.json:
        _print_json([_letter_json(letter) for letter in letters])
        return 0
    print("id\treceived_at\ttopic\treason")
    for letter in letters:
        print(f"{letter.id}\t{letter.received_at:%Y-%m-%d %H:%M:%S}\t{letter.topic}\t"
              f"{letter.reason}")
    return 0


def _letter_json(letter: Any) -> dict[str, Any]:
    """A dead letter as JSON: the payload as text (invalid UTF-8 replaced), since bytes have no
    JSON form; ``truncated`` says when that text is only the payload's head."""
    fields = dataclasses.asdict(letter)
    fields["payload"] = letter.payload.decode("utf-8", errors="replace")
    return fields | {"truncated": letter.truncated}


def _deadletter_replay(args: argparse.Namespace) -> int:
    from pipeline.ingest import deadletters
    from pipeline.store import connection as store

    with store.connect(_existing_store(args.db)) as con:
        result = deadletters.replay_dead_letters(
            con, args.ids or None, require_registered_vehicles=not args.allow_unregistered)
        unreplayable = deadletters.unreplayable_letters(con, args.ids or None)
    for letter in unreplayable:  # say why, one line each, next to the counts
        print(f"dead letter {letter.id} not replayed: {letter.reason}", file=sys.stderr)
    _print_json(dataclasses.asdict(result))
    return 0


# The crm and leads commands live with the rest of advice and delivery's CLI; the entry points
# name them here.
from pipeline.cli.leads import register_crm, register_leads  # noqa: E402, F401

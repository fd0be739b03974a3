"""Command-line front of the pipeline: broker, ingest, dead letters (crm, leads: cli_leads).

Heavy modules are imported inside the handlers, so listing commands stays cheap.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import orjson

SubParsers = argparse._SubParsersAction


def _print_json(value: Any) -> None:
    print(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode())


def register_broker(sub: SubParsers) -> None:
    """``fleetcare broker``: the one-machine MQTT broker."""
    broker = sub.add_parser("broker", help="run the embedded MQTT broker",
                            description="mosquitto when installed, else amqtt, on 127.0.0.1.")
    broker.add_argument("--port", type=int, default=1883)
    broker.add_argument("--prefer", choices=("auto", "mosquitto", "amqtt"), default="auto")
    broker.add_argument("--data-dir", type=Path, help="where the broker persists sessions")
    broker.set_defaults(handler=_broker)


def _broker(args: argparse.Namespace) -> int:
    from pipeline.broker import serve_forever

    print(f"broker on mqtt://127.0.0.1:{args.port} (Ctrl-C stops)", file=sys.stderr)
    serve_forever(args.port, args.prefer, args.data_dir)
    return 0


def register_ingest(sub: SubParsers) -> None:
    """``fleetcare ingest``: MQTT to DuckDB exactly once."""
    ingest = sub.add_parser("ingest", help="land MQTT messages in DuckDB exactly once",
                            description="Subscribe with a persistent QoS 1 session; acknowledge "
                                        "each message only after its rows are committed.")
    ingest.add_argument("--broker", required=True, help="mqtt://host:port")
    ingest.add_argument("--db", type=Path, required=True, help="DuckDB file (the one writer)")
    ingest.add_argument("--client-id", default="fleetcare-ingest")
    ingest.add_argument("--share-group", help="MQTT shared-subscription group (several workers)")
    ingest.set_defaults(handler=_ingest)


def _ingest(args: argparse.Namespace) -> int:
    from pipeline.ingest import run_forever

    run_forever(args.broker, args.db, client_id=args.client_id, share_group=args.share_group)
    return 0


def register_deadletter(sub: SubParsers) -> None:
    """``fleetcare deadletter list|replay``."""
    dead = sub.add_parser("deadletter", help="inspect and replay messages that did not land",
                          description="Messages ingest could not land, with the reason.")
    dead_sub = dead.add_subparsers(dest="dead_command", metavar="SUBCOMMAND", required=True)
    show = dead_sub.add_parser("list", help="list dead letters with their reasons")
    show.add_argument("--db", type=Path, required=True)
    show.add_argument("--limit", type=int, default=50)
    show.set_defaults(handler=_deadletter_list)
    replay = dead_sub.add_parser("replay", help="land dead letters again (after a fix)")
    replay.add_argument("--db", type=Path, required=True)
    replay.add_argument("ids", nargs="*", type=int, help="only these ids (default: all)")
    replay.set_defaults(handler=_deadletter_replay)


def _deadletter_list(args: argparse.Namespace) -> int:
    from pipeline import deadletters, store

    with store.connect_readonly(args.db) as con:
        letters = deadletters.list_dead_letters(con, limit=args.limit)
    for letter in letters:
        print(f"{letter.id}\t{letter.received_at:%Y-%m-%d %H:%M:%S}\t{letter.topic}\t"
              f"{letter.reason}")
    return 0


def _deadletter_replay(args: argparse.Namespace) -> int:
    from pipeline import deadletters, store

    with store.connect(args.db) as con:
        result = deadletters.replay_dead_letters(con, args.ids or None)
    _print_json(dataclasses.asdict(result))
    return 0


# The crm and leads commands live with the rest of advice and delivery's CLI; the entry points
# name them here.
from pipeline.cli_leads import register_crm, register_leads  # noqa: E402, F401

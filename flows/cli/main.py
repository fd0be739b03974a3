"""The ``fleetcare`` command: one entry point in front of every package.

Each top-level command is an entry point in the ``fleetcare.commands`` group that names a
``register(subparsers)`` function. Only the command being run is imported, so
``fleetcare edge run`` on a gateway never loads the backend's packages (which a gateway does
not even have installed); ``fleetcare --help`` loads every command's parser to list them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points

GROUP = "fleetcare.commands"


def build_parser(commands: Sequence[EntryPoint]) -> argparse.ArgumentParser:
    """The top-level parser with the given commands registered."""
    parser = argparse.ArgumentParser(
        prog="fleetcare",
        description="Connected-vehicle predictive maintenance: edge agent, ingest, models, "
                    "advice and CRM delivery.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands:
        command.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``fleetcare`` command; the return value is the process exit code."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    available = sorted(entry_points(group=GROUP), key=lambda e: e.name)
    first = next((a for a in args_in if not a.startswith("-")), None)
    chosen = [e for e in available if e.name == first]
    parser = build_parser(chosen[:1] or available)
    args = parser.parse_args(args_in)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI turns every error into one clear line and a status
        if args.verbose:
            raise
        print(f"fleetcare {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

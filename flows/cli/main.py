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
from collections.abc import Iterator, Sequence
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, version

GROUP = "fleetcare.commands"
DISTRIBUTION = "fleetcare"


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that always shows an option's default.

    Unlike ``argparse.ArgumentDefaultsHelpFormatter`` it leaves alone a help text that
    already says its default in its own words (most do, where the default needs explaining,
    such as "default: $FLEETCARE_PIPELINE__DB_PATH"), and it does not print the defaults
    that carry no information: none, off, an empty list.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if text is None or "default" in text.lower() or not shows_default(action):
            return text
        return f"{text} (default: %(default)s)"


def shows_default(action: argparse.Action) -> bool:
    """Whether ``action``'s default is worth printing in its help."""
    default = action.default
    if action.nargs == 0:  # a flag (on/off, a count): its help says what it turns on
        return False
    if default is None or default is argparse.SUPPRESS:
        return False
    return not (isinstance(default, list | tuple) and not default)


def all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every sub-parser below it, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to one parser
                yield from all_parsers(child)


def distribution_version() -> str:
    """The installed fleetcare distribution's version (``unknown`` when run from a bare
    source tree, where there is no distribution to ask)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def build_parser(commands: Sequence[EntryPoint]) -> argparse.ArgumentParser:
    """The top-level parser with the given commands registered.

    Every sub-parser gets :class:`DefaultsHelpFormatter` here, once, so a command's
    ``register`` function cannot forget it.
    """
    parser = argparse.ArgumentParser(
        prog="fleetcare",
        description="Connected-vehicle predictive maintenance: edge agent, ingest, models, "
                    "advice and CRM delivery.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging on stderr (-v info, -vv debug; default: warnings "
                             "only)")
    parser.add_argument("--version", action="version",
                        version=f"fleetcare {distribution_version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands:
        command.load()(sub)
    for each in all_parsers(parser):
        each.formatter_class = DefaultsHelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``fleetcare`` command; the return value is the process exit code."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    available = sorted(entry_points(group=GROUP), key=lambda e: e.name)
    first = next((a for a in args_in if not a.startswith("-")), None)
    if first is None and "--version" in args_in:
        available = []  # the version needs no command's parser
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

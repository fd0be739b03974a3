"""One CLI: every registered command's parser follows the same conventions.

The checks walk the real parser, with every entry point of ``fleetcare.commands`` loaded, so a
new command (or a new option on an old one) is held to them without anyone listing it here.
Each check is a function returning what breaks the rule; the last tests run those functions on
a parser that breaks every rule, so a check that had stopped finding anything would fail.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from importlib.metadata import entry_points

import pytest

from flows.cli.main import GROUP, DefaultsHelpFormatter, build_parser, shows_default

Parsers = list[tuple[str, argparse.ArgumentParser]]
LISTS_OR_SHOWS = {"list", "show", "profiles", "coverage", "check", "read", "flows list"}
"""Leaf command names (the last word, or the last two) that list or show something."""


def named_parsers(parser: argparse.ArgumentParser, path: str = "fleetcare"
                  ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser below ``parser`` with its command line (``fleetcare leads list``)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from named_parsers(child, f"{path} {name}")


def own_actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """The options and positionals a user types (not -h, --version or the sub-commands)."""
    for action in parser._actions:
        if not isinstance(action, argparse._HelpAction | argparse._VersionAction
                          | argparse._SubParsersAction):
            yield action


def label(path: str, action: argparse.Action) -> str:
    return f"{path} {'/'.join(action.option_strings) or action.metavar or action.dest}"


def without_help(parsers: Parsers) -> list[str]:
    """Options, positionals and sub-commands with no help text."""
    missing = [label(path, a) for path, p in parsers for a in own_actions(p)
               if not (a.help or "").strip()]
    for path, parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):  # help= lists it in --help
                helped = [action.choices[c.dest] for c in action._choices_actions
                          if (c.help or "").strip()]
                missing += [f"{path} {name}" for name, child in action.choices.items()
                            if not any(child is h for h in helped)]
    return missing


def hidden_defaults(parsers: Parsers) -> list[str]:
    """Options whose default is worth saying but whose rendered help does not say it."""
    hidden = []
    for path, parser in parsers:
        formatter = parser._get_formatter()
        for action in own_actions(parser):
            if action.help and shows_default(action):
                rendered = formatter._expand_help(action)  # what --help prints for it
                if "default" not in rendered.lower():
                    hidden.append(label(path, action))
    return hidden


def swallowing(parsers: Parsers) -> list[str]:
    """Options taking a variable number of values: ``--dbc A.dbc LOG`` would eat the LOG."""
    return [label(path, a) for path, p in parsers for a in own_actions(p)
            if a.option_strings and a.nargs in ("*", "+", argparse.REMAINDER)]


def broker_kinds_as_broker(parsers: Parsers) -> list[str]:
    """``--broker`` options that are not a URL, and broker kinds not named ``--broker-kind``."""
    return [label(path, a) for path, p in parsers for a in own_actions(p)
            if ("--broker" in a.option_strings
                and (a.choices is not None or "mqtt://" not in (a.help or "")))
            or ("amqtt" in (a.choices or ()) and "--broker-kind" not in a.option_strings)]


def other_vehicle_flags(parsers: Parsers) -> list[str]:
    """Options naming a vehicle by another spelling than ``--vehicle``."""
    return [label(path, a) for path, p in parsers for a in own_actions(p)
            for flag in a.option_strings
            if flag.startswith("--vehicle") and flag not in ("--vehicle", "--vehicles")
            and "per-process" not in flag]


def without_json(parsers: Parsers) -> list[str]:
    """Commands that list or show something but have no ``--json``."""
    leaves = [(path, p) for path, p in parsers
              if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]
    return [path for path, p in leaves
            if (path.split()[-1] in LISTS_OR_SHOWS or " ".join(path.split()[-2:])
                in LISTS_OR_SHOWS)
            and not any("--json" in a.option_strings for a in p._actions)]


def registered() -> Parsers:
    """Every parser of every registered command, with its command line."""
    return list(named_parsers(build_parser(sorted(entry_points(group=GROUP),
                                                  key=lambda e: e.name))))


CHECKS = {"help": without_help, "defaults": hidden_defaults, "swallow": swallowing,
          "broker-url": broker_kinds_as_broker, "vehicle-flag": other_vehicle_flags,
          "json": without_json}


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_every_registered_command_follows_the_rule(check: str) -> None:
    parsers = registered()
    assert len(parsers) > 40  # every command was loaded, not just one
    assert CHECKS[check](parsers) == []


def test_every_parser_renders_defaults_with_the_shared_formatter() -> None:
    assert {type(p._get_formatter()) for _, p in registered()} == {DefaultsHelpFormatter}


def broken_parser() -> Parsers:
    """A command breaking every rule once."""
    top = argparse.ArgumentParser(prog="fleetcare", formatter_class=DefaultsHelpFormatter)
    sub = top.add_subparsers(dest="command")
    bad = sub.add_parser("list", formatter_class=DefaultsHelpFormatter)  # no help, no --json
    bad.add_argument("--limit", type=int, default=50)  # no help
    plain = argparse.ArgumentParser(prog="fleetcare plain")  # default formatter: not shown
    plain.add_argument("--seed", type=int, default=7, help="the seed")
    bad.add_argument("--dbc", nargs="*", help="DBC files")
    bad.add_argument("--broker", choices=("auto", "amqtt"), default="auto", help="which")
    bad.add_argument("--vehicle-id", help="the vehicle")
    bad.add_argument("--prefer", choices=("mosquitto", "amqtt"), help="which broker runs")
    return [*named_parsers(top), ("fleetcare plain", plain)]


def test_the_checks_see_a_command_breaking_each_rule() -> None:
    parsers = broken_parser()
    assert without_help(parsers) == ["fleetcare list --limit", "fleetcare list"]
    assert hidden_defaults(parsers) == ["fleetcare plain --seed"]
    assert swallowing(parsers) == ["fleetcare list --dbc"]
    assert broker_kinds_as_broker(parsers) == ["fleetcare list --broker", "fleetcare list --prefer"]
    assert other_vehicle_flags(parsers) == ["fleetcare list --vehicle-id"]
    assert without_json(parsers) == ["fleetcare list"]


def test_the_formatter_adds_a_default_once_and_only_where_it_says_something() -> None:
    parser = argparse.ArgumentParser(prog="x", formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--port", type=int, default=1883, help="where to listen")
    parser.add_argument("--days", type=int, default=7, help="how long (default 7)")
    parser.add_argument("--db", help="the store")
    parser.add_argument("--json", action="store_true", help="JSON out")
    text = " ".join(parser.format_help().split())
    assert "where to listen (default: 1883)" in text
    assert "how long (default 7)" in text and "(default: 7)" not in text
    assert "the store --json" in text and "JSON out" in text and "(default: False)" not in text


def test_the_broker_s_old_kind_spelling_is_still_taken() -> None:
    broker = [e for e in entry_points(group=GROUP) if e.name == "broker"]
    parser = build_parser(broker)
    assert parser.parse_args(["broker", "--prefer", "amqtt"]).broker_kind == "amqtt"
    assert parser.parse_args(["broker", "--broker-kind", "mosquitto"]).broker_kind == "mosquitto"

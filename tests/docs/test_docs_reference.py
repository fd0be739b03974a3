"""The reference pages and the README stay true to the code they describe.

The CLI page must have a section for every ``fleetcare`` command, the configuration page must
name every setting's environment variable, and every repository path the README points a
newcomer at must exist. (The store page has its own check in ``tests/pipeline/test_store.py``.)
Each check reads the real parser, settings classes and files, so adding a command, a setting
or moving a module without updating the docs fails here with the names that are missing.
"""

from __future__ import annotations

import argparse
import re
from importlib.metadata import entry_points
from pathlib import Path

from pydantic_settings import BaseSettings

from edge.config import EdgeSettings
from flows.cli.main import GROUP, build_parser
from flows.scheduled.config import FlowSettings
from pipeline.config import PipelineSettings

ROOT = Path(__file__).resolve().parents[2]
CLI_PAGE = ROOT / "docs" / "reference" / "cli.md"
CONFIG_PAGE = ROOT / "docs" / "reference" / "configuration.md"
README = ROOT / "README.md"


def leaf_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
                  ) -> list[str]:
    """``fleetcare a b`` for every command that has no sub-commands of its own."""
    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += leaf_commands(child, (*prefix, name)) or [" ".join((*prefix, name))]
    return found


def documented_commands(page: str) -> set[str]:
    """Commands the page gives a section heading: ``## `fleetcare edge run` ``."""
    return set(re.findall(r"^#{2,3} `fleetcare ([a-z0-9 -]+)`$", page, flags=re.MULTILINE))


def test_every_command_has_a_section_on_the_cli_page() -> None:
    parser = build_parser(sorted(entry_points(group=GROUP), key=lambda e: e.name))
    commands = leaf_commands(parser)
    assert "edge run" in commands and "flows serve" in commands
    missing = sorted(set(commands) - documented_commands(CLI_PAGE.read_text(encoding="utf-8")))
    assert missing == []


def test_the_cli_page_check_sees_a_missing_command() -> None:
    page = "## `fleetcare broker`\n\ntext\n\n### `fleetcare edge run`\n"
    assert documented_commands(page) == {"broker", "edge run"}
    assert "edge replay" not in documented_commands(page)


def environment_names(settings: type[BaseSettings]) -> list[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return [f"{prefix}{name}".upper() for name in settings.model_fields]


def test_every_setting_is_on_the_configuration_page() -> None:
    page = CONFIG_PAGE.read_text(encoding="utf-8")
    names = [n for s in (EdgeSettings, PipelineSettings, FlowSettings)
             for n in environment_names(s)]
    assert "FLEETCARE_EDGE__VEHICLE_ID" in names and "FLEETCARE_FLOWS__BUCKETS" in names
    missing = [n for n in names if f"`{n}`" not in page]
    assert missing == []


def repository_paths(text: str) -> set[str]:
    """Backticked things in ``text`` that name a file or folder of the repository."""
    paths = set()
    for span in re.findall(r"`([^`\s]+)`", text):
        candidate = span.rstrip("/")
        if re.fullmatch(r"(dbc|deploy|docs|edge|pipeline|models|flows|tests|bench)(/[\w.*<>-]+)*",
                        candidate) or candidate in ("pyproject.toml", "mkdocs.yml",
                                                    "CHANGELOG.md"):
            paths.add(candidate)
    return paths


def exists(pattern: str) -> bool:
    """A path, a glob (``dbc/*.dbc``) or a template (``flows/scheduled/<name>.py``)."""
    glob = re.sub(r"<[^>]+>", "*", pattern)
    return any(ROOT.glob(glob)) if "*" in glob else (ROOT / glob).exists()


def test_every_path_the_readme_names_exists() -> None:
    paths = repository_paths(README.read_text(encoding="utf-8"))
    assert {"pipeline/ingest", "edge/wire/contract.py", "dbc/*.dbc"} <= paths
    assert sorted(p for p in paths if not exists(p)) == []


def test_the_path_check_sees_a_missing_file() -> None:
    paths = repository_paths("see `edge/spool.py`, `pipeline/nowhere.py` and `make test`")
    assert paths == {"edge/spool.py", "pipeline/nowhere.py"}
    assert [p for p in sorted(paths) if not exists(p)] == ["pipeline/nowhere.py"]

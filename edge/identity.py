"""Who an agent is: its version and the exact DBC and rules files it decodes with.

The backend cannot see a gateway's disk, and two gateways that name the same DBC may hold
different editions of it. So an agent reports the SHA-256 of each file's contents (not its
name or date) in its vehicle-info message, next to the VIN it reads from the bus: a changed
fingerprint explains a change in what a vehicle sends, and a changed VIN with the same gateway
says the gateway was moved to another car.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Final

from edge.errors import ConfigError

DISTRIBUTION: Final = "fleetcare"
"""The installed distribution whose version the agent reports."""
UNKNOWN_VERSION: Final = "unknown"


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """What a vehicle-info message says about the agent itself (the VIN is the bus's)."""

    agent_version: str
    dbc_fingerprints: dict[str, str] = field(default_factory=dict)
    """DBC file name -> hex SHA-256 of its contents."""
    rules_fingerprint: str = ""
    """Hex SHA-256 of the collection rules file (empty: no file)."""


def agent_version() -> str:
    """The installed fleetcare version (``unknown`` when running from an uninstalled tree)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return UNKNOWN_VERSION


def file_fingerprint(path: str | Path) -> str:
    """Hex SHA-256 of a file's contents.

    Raises:
        ConfigError: the file cannot be read (the message names it).
    """
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigError(f"cannot read {path} to fingerprint it: {exc.strerror or exc}") from exc


def identity_of(dbc_paths: Sequence[str | Path], rules_path: str | Path | None) -> AgentIdentity:
    """The identity of an agent decoding with ``dbc_paths`` under the rules at ``rules_path``.

    DBC files are keyed by file name; two files of one name (in different folders) are keyed
    by the path as given, so neither hides the other.

    Raises:
        ConfigError: a file cannot be read.
    """
    names = [Path(p).name for p in dbc_paths]
    fingerprints = {
        (name if names.count(name) == 1 else str(path)): file_fingerprint(path)
        for name, path in zip(names, dbc_paths, strict=True)}
    rules = file_fingerprint(rules_path) if rules_path is not None else ""
    return AgentIdentity(agent_version(), fingerprints, rules)

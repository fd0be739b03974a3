"""Where edge finds the data it ships: the reference DBC and rules, UDS maps, signal profiles.

The files live in the repository's top-level ``dbc/`` folder, where data engineers edit them.
pyproject.toml maps that folder onto the package ``edge.reference_data``: a wheel carries the
files inside ``edge/reference_data/``, and an editable install reads ``dbc/`` itself, so an
edit there is seen without reinstalling. Everything that needs one of these files asks this
module, which asks ``importlib.resources``, instead of a path relative to the source tree: on
a gateway that installed the wheel there is no ``dbc/`` folder beside the code.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

from edge.errors import ReferenceDataError

PACKAGE: Final = "edge.reference_data"
"""The data package; pyproject.toml maps it onto ``dbc/``."""
DBC_NAME: Final = "fleetcare_ref.dbc"
RULES_NAME: Final = "fleetcare_ref.rules.toml"
UDS_FOLDER: Final = "uds"
PROFILES_FOLDER: Final = "profiles"


def reference_files() -> Traversable:
    """The packaged folder as ``importlib.resources`` sees it.

    Raises:
        ReferenceDataError: the data package is not installed, as with an editable install
            made before it existed (``pip install -e .`` again fixes that).
    """
    try:
        return files(PACKAGE)
    except ModuleNotFoundError as exc:
        raise ReferenceDataError(
            f"edge's reference data (package {PACKAGE}) is not installed: reinstall fleetcare "
            "(in a checkout: pip install -e .)"
        ) from exc


@cache
def reference_dir() -> Path:
    """The packaged folder on disk: cantools, tomllib and the CLI's defaults want a path.

    pip always unpacks a wheel, so this is a real folder; only running edge straight out of
    an archive (zipimport) would not give one, and that is refused with a clear message.

    Raises:
        ReferenceDataError: the data package is missing or is not a folder on disk.
    """
    root = reference_files()
    if not isinstance(root, Path) or not root.is_dir():
        raise ReferenceDataError(
            f"edge's reference data {root} is not a folder on disk; install fleetcare with pip "
            "instead of importing it from an archive"
        )
    return root


def reference_dbc() -> Path:
    """The reference vehicle's DBC (``dbc/fleetcare_ref.dbc`` in the repository)."""
    return reference_dir() / DBC_NAME


def reference_rules() -> Path:
    """The collection rules for the reference DBC, the default of every ``--rules``."""
    return reference_dir() / RULES_NAME


def uds_map_path(name: str) -> Path:
    """The shipped UDS map called ``name`` (``dbc/uds/<name>.toml``); it may not exist."""
    return reference_dir() / UDS_FOLDER / f"{name}.toml"


def uds_map_paths() -> list[Path]:
    """Every shipped UDS map, sorted by name: what the ``uds`` tap reads by default."""
    return sorted((reference_dir() / UDS_FOLDER).glob("*.toml"))


def profiles_dir() -> Path:
    """The shipped signal profiles (``dbc/profiles/*.toml``), searched after the user's."""
    return reference_dir() / PROFILES_FOLDER

"""Which code and which packages produced a model (stored with it in the registry)."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Final

PACKAGES: Final = ("fleetcare", "scikit-learn", "numpy", "scipy", "polars", "duckdb", "skops")
"""Packages whose versions decide what a stored model computes or whether it loads."""


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`PACKAGES` ("missing" for one that is not installed)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


@cache
def code_version() -> str:
    """``git describe`` of the source tree (with ``-dirty``), else the package version.

    Only a checkout of fleetcare itself is described: an installed wheel lives in a venv that
    may sit inside some unrelated git repository, whose commit would say nothing about us.
    """
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists() or not (root / "pyproject.toml").is_file():
        return f"fleetcare {package_versions()['fleetcare']}"
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=root,
            capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return f"fleetcare {package_versions()['fleetcare']}"
    return out.stdout.strip() or "unknown"

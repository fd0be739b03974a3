"""Running ``fleetcare`` as a deployment does, from tests: its own process, its own settings.

Each command runs as ``python -m flows.cli`` with this interpreter (the project's venv), and
with an environment stripped of any ``FLEETCARE_*`` setting the developer's shell may carry,
so a test sees only the settings it gives.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cli(*args: str) -> list[str]:
    """The argument vector of ``fleetcare ARGS...``."""
    return [sys.executable, "-m", "flows.cli", *args]


def cli_env(**pipeline: str) -> dict[str, str]:
    """This process's environment without any fleetcare setting, plus ``pipeline``'s
    (``crm_url="..."`` becomes ``FLEETCARE_PIPELINE__CRM_URL``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCARE_")}
    env.update({f"FLEETCARE_PIPELINE__{k.upper()}": v for k, v in pipeline.items()})
    return env


@contextmanager
def holding_store(path: Path) -> Iterator[None]:
    """Another process holds ``path``'s DuckDB write lock for the duration of the block."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]);"
         " print('open', flush=True); time.sleep(120)", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        yield
    finally:
        holder.kill()
        holder.wait()

"""The README's "Your own fleet" block, run line by line as written.

The block runs on what ``make demo`` leaves (its DMS files in ``demo-output/master-data``) and
on the recording the repository ships (``docs/examples``). Substituted, mechanically: port
1883 by a free one, and the demo's DMS files by the same files made by the commands the demo
runs (``fleetcare sim fleet``, ``fleetcare sim workshop``) for a three-vehicle fleet, so the
test does not run the whole demo. Lines run as :class:`Shell` in test_running_each_part.py
runs the getting-started block: a fresh environment, ``&`` lines in the background until
their ready line, ``kill %N; wait %N`` must stop them cleanly.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import pytest

from pipeline.broker.harness import free_port
from tests.docs.test_running_each_part import Shell
from tests.processes import cli, cli_env

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
HEADING = "## Your own fleet"

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]


def readme_block(text: str) -> list[str]:
    """The ``sh`` block under the heading, as logical lines (continuations joined)."""
    section = text.split(HEADING, 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    return [line for line in section.replace("\\\n", " ").splitlines() if line.strip()]


def test_the_readme_own_fleet_block_runs_as_written(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    lines = readme_block(text.replace("1883", str(free_port())))
    work = tmp_path / "work"
    (work / "docs").mkdir(parents=True)
    (work / ".venv").symlink_to(ROOT / ".venv")
    (work / "docs" / "examples").symlink_to(ROOT / "docs" / "examples")
    dms = work / "demo-output" / "master-data"
    for command in (("sim", "fleet"), ("sim", "workshop")):
        subprocess.run(cli(*command, "--vehicles", "3", "--out", str(dms)), env=cli_env(),
                       stdout=subprocess.DEVNULL, check=True, timeout=300)
    shell = Shell(work, {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"),
                         "LANG": "C.UTF-8"}, [], [])
    try:
        for line in lines:
            shell.run(line)
    finally:
        for job in shell.jobs:
            job.stop(600)

    with duckdb.connect(str(work / "fleet.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM telemetry WHERE vehicle_id = 'VIN00000'"
                           ).fetchall()[0][0]
        dead = con.execute("SELECT count(*) FROM dead_letters").fetchall()[0][0]
        orders = con.execute("SELECT count(*) FROM repair_orders").fetchall()[0][0]
    assert rows > 0 and dead == 0 and orders > 0
    shown = shell.output_of(".venv/bin/fleetcare fleet show VIN00000")
    assert "VIN00000" in shown and "consents to contact" in shown
    assert all(job.process.poll() is not None for job in shell.jobs)

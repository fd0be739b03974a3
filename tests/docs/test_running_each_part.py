"""The getting-started page's "Running each part alone" block, run as written.

The block is read from ``docs/getting-started.md`` and run line by line, each line its own
``bash`` process, by the rule the page states under the block:

* the working directory is a fresh temporary directory holding only a ``.venv`` link to this
  repository's venv, and the environment is a fresh shell's (system ``PATH``, a temporary
  ``HOME``): nothing but the block's own ``source`` and ``export`` lines sets anything up;
* the ports 1883 and 8787 are replaced by free ones: the only change made to the text;
* a line ending in ``&`` runs in the background until it prints its ready line; ``kill %N``
  sends SIGTERM to the Nth background line, ``wait %N`` waits for it to exit (status 0), and
  ``kill $(jobs -p)`` stops every background line still running;
* a ``source`` or ``export`` line runs once and its environment carries to the lines after it.

Then it checks what the block promises: the registered vehicles' rows landed (as many as the
agents read, none dead-lettered), ingest's summary line says so, and leads were made and
delivered to the CRM.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import duckdb
import orjson
import pytest

from pipeline.broker.harness import free_port, wait_for_port
from tests.background import Background

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "getting-started.md"
HEADING = "## Running each part alone"
PORTS = (1883, 8787)
READY_LINES = ("broker on ", "ingest: listening on ", "CRM receiver on ")
"""What each background command prints on stderr once it serves."""
TIMEOUT_S = 600.0
"""A bound on a hung line, not a speed: the machine running the tests is shared and slow."""

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]


def block_lines(text: str) -> list[str]:
    """The first ``sh`` block under the heading, as logical lines (``\\`` continuations
    joined); comments are left in, bash ignores them."""
    section = text.split(HEADING, 1)[1]
    match = re.search(r"```sh\n(.*?)\n```", section, re.DOTALL)
    assert match, f"no sh block under {HEADING!r} in {PAGE}"
    joined = match.group(1).replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip()]


def test_the_block_is_the_one_the_page_shows() -> None:
    lines = block_lines(PAGE.read_text(encoding="utf-8"))
    assert lines[0] == "source .venv/bin/activate"
    assert any(line.startswith("fleetcare fleet import ") for line in lines), (
        "the block must register the vehicles before ingest admits them")
    assert sum(_background(line) for line in lines) == 3


def _background(line: str) -> bool:
    return _code(line).endswith("&")


def _code(line: str) -> str:
    """The line without its trailing comment (whitespace, ``# `` and the rest: the block has
    no other ``#``)."""
    return re.sub(r"\s+# .*$", "", line).strip()


@dataclass
class Shell:
    """The state a terminal would carry from line to line."""

    cwd: Path
    env: dict[str, str]
    jobs: list[Background]
    outputs: list[tuple[str, str]]

    def run(self, line: str) -> None:
        code = _code(line)
        if code.startswith(("source ", "export ")):
            self._carry_environment(code)
        elif code.endswith("&"):
            self._start(line, code.removesuffix("&").strip())
        elif code.startswith("kill $(jobs -p)"):
            for job in self.jobs:
                job.stop(TIMEOUT_S)
        elif re.fullmatch(r"kill %\d+; wait %\d+", code):
            first, second = (int(n) for n in re.findall(r"%(\d+)", code))
            assert first == second, line
            job = self.jobs[first - 1]
            assert job.stop(TIMEOUT_S) == 0, f"{line}: {job.lines}"
        else:
            done = subprocess.run(["bash", "-c", line], cwd=self.cwd, env=self.env,
                                  capture_output=True, text=True, timeout=TIMEOUT_S)
            assert done.returncode == 0, f"{line}\n{done.stderr}"
            assert "Traceback" not in done.stderr, f"{line}\n{done.stderr}"
            self.outputs.append((line, done.stdout))

    def _carry_environment(self, code: str) -> None:
        done = subprocess.run(["bash", "-c", f"{code}\nenv -0"], cwd=self.cwd, env=self.env,
                              capture_output=True, timeout=TIMEOUT_S, check=True)
        pairs = (item.split(b"=", 1) for item in done.stdout.split(b"\0") if b"=" in item)
        self.env = {k.decode(): v.decode() for k, v in pairs}

    def _start(self, line: str, code: str) -> None:
        job = Background(["bash", "-c", f"exec {code}"], cwd=self.cwd, env=self.env)
        self.jobs.append(job)
        job.wait_for_line(READY_LINES, TIMEOUT_S)
        for port in re.findall(r"--port (\d+)", code):
            assert wait_for_port("127.0.0.1", int(port), TIMEOUT_S), f"{line}: {job.lines}"

    def output_of(self, prefix: str) -> str:
        """What the line starting with ``prefix`` printed on stdout."""
        return next(out for line, out in self.outputs if line.startswith(prefix))


def test_running_each_part_alone_as_written(tmp_path: Path) -> None:
    text = PAGE.read_text(encoding="utf-8")
    ports = {str(port): str(free_port()) for port in PORTS}
    for documented, used in ports.items():
        assert documented in text.split(HEADING, 1)[1]
        text = text.replace(documented, used)
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(ROOT / ".venv")
    fresh = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8",
             # Prefect's local server gets longer to start on the loaded test machine.
             "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"}
    shell = Shell(work, fresh, [], [])
    try:
        for line in block_lines(text):
            shell.run(line)
    finally:
        for job in shell.jobs:
            job.stop(TIMEOUT_S)

    sim = orjson.loads(shell.output_of("fleetcare sim run ").strip().splitlines()[-1])
    with duckdb.connect(str(work / "fleet.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM telemetry").fetchall()[0][0]
        dead = con.execute("SELECT count(*) FROM dead_letters").fetchall()[0][0]
        vehicles = con.execute("SELECT count(DISTINCT vehicle_id) FROM telemetry").fetchall()
        leads = con.execute("SELECT count(*) FROM leads").fetchall()[0][0]
    assert rows == sim["signals_spooled"] > 0 and dead == 0 and vehicles == [(5,)]
    ingest = shell.jobs[1]
    assert ingest.lines[-1].startswith("ingest: stopped after "), ingest.lines
    assert f"({rows:,} telemetry rows" in ingest.lines[-1] and " 0 dead letters" in ingest.lines[-1]
    flow = orjson.loads(shell.output_of("fleetcare flows run maintenance").strip()
                        .splitlines()[-1])
    listed = shell.output_of("fleetcare leads list").strip().splitlines()
    assert leads > 0 and len(listed) - 1 == leads
    assert flow["delivery"]["delivered"] > 0, (flow["delivery"], flow["advice"], listed)
    assert all(job.process.poll() is not None for job in shell.jobs)

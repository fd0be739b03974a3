"""``fleetcare replay`` checks its inputs before it starts a broker, and says why in one line.

Each case runs the command as its own process. A bad input must cost no broker, no ingest and
no store file, and the reason must be the agent's own sentence: never the command line of the
process ``fleetcare replay`` runs for the vehicle's side.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CRUISE = REPO.parent / "shared" / "data" / "can" / "subaru_wrx" / "cruise.log"


@pytest.mark.parametrize(("case", "says"), [
    ("missing log", "does not exist"),
    ("empty log", "is empty"),
    ("broken dbc", "does not load"),
])
def test_bad_input_is_one_line_before_any_broker_or_store(tmp_path: Path, case: str,
                                                          says: str) -> None:
    log, dbc = CRUISE, tmp_path / "broken.dbc"
    dbc.write_text("this is not a DBC file\n", encoding="utf-8")
    if case == "missing log":
        log = tmp_path / "nope.log"
    elif case == "empty log":
        log = tmp_path / "empty.log"
        log.write_bytes(b"")
    dbcs = ["--dbc", str(dbc)] if case == "broken dbc" else []
    db_path = tmp_path / "replay.duckdb"
    done = subprocess.run([sys.executable, "-m", "flows.cli", "replay", str(log),
                           *dbcs, "--db", str(db_path), "--taps", ""], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines  # no "- broker: ..." line: none was started
    assert lines[0].startswith("fleetcare replay: error: ") and says in lines[0]
    assert "flows.cli" not in done.stderr and sys.executable not in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["broken.dbc", *(["empty.log"] if case == "empty log" else [])])  # no store, no state

"""``fleetcare ingest`` at the default verbosity: one start-up line once it is subscribed
(what it listens to, where it writes) and one summary line when SIGTERM stops it (messages,
rows, dead letters, duplicates), and nothing else on stderr.

A real ``fleetcare ingest`` process against the session broker, fed by a real ``fleetcare
sim run`` of one vehicle for two days.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import duckdb
import orjson
import pytest

from tests.background import Background
from tests.processes import cli, cli_env

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_ingest_says_where_it_listens_and_what_it_did(broker_url: str, db_path: Path,
                                                      tmp_path: Path) -> None:
    client_id = f"announce-{uuid.uuid4().hex[:8]}"
    ingest = Background(cli("ingest", "--broker", broker_url, "--db", str(db_path),
                            "--client-id", client_id, "--allow-unregistered",
                            "--rate-limit", "0", "--no-urgent"),
                        cwd=tmp_path, env=cli_env())
    try:
        start = ingest.wait_for_line("ingest: ")
        assert f"listening on {broker_url} for " in start
        assert "fleetcare/v1/vehicles/+/telemetry" in start and f"writing {db_path}" in start
        sim = Background(cli("sim", "run", "--broker", broker_url, "--vehicles", "1",
                             "--days", "2", "--seed", "3", "--snapshot-s", "0.2"),
                         cwd=tmp_path, env=cli_env(), stdout_path=tmp_path / "sim.json")
        assert sim.process.wait(timeout=300) == 0, sim.lines
        summary = orjson.loads((tmp_path / "sim.json").read_text().splitlines()[-1])
    finally:
        code = ingest.stop()
    assert code == 0, ingest.lines
    assert len(ingest.lines) == 2, ingest.lines
    stopped = ingest.lines[1]
    match = re.fullmatch(r"ingest: stopped after ([\d,]+) messages: ([\d,]+) landed \(([\d,]+) "
                         r"telemetry rows, ([\d,]+) fault codes\), ([\d,]+) dead letters, "
                         r"([\d,]+) duplicates", stopped)
    assert match, stopped
    received, landed, rows, _, dead, dupes = (int(g.replace(",", "")) for g in match.groups())
    with duckdb.connect(str(db_path), read_only=True) as con:
        stored = con.execute("SELECT count(*) FROM telemetry").fetchall()[0][0]
    assert rows == stored == summary["signals_spooled"] > 0
    assert received == landed + dead + dupes and landed >= summary["messages"]
    assert dead == 0

"""A fleet larger than one process can host lands every signal its agents spooled.

``fleetcare sim run`` runs as its own process with a per-process limit small enough to need
four agent processes, against mosquitto with the configuration ``fleetcare broker`` writes;
an :class:`~pipeline.ingest.service.Ingestor` lands what the agents publish. The rows in the
store must equal the signals the agents counted, vehicle by vehicle, with no row twice.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from pipeline.broker.harness import EmbeddedBroker, find_mosquitto
from pipeline.ingest.service import Ingestor
from pipeline.store import connection as store

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
VEHICLES, PER_PROCESS = 240, 60
"""Four agent processes: more vehicles than one process hosts at this limit."""


def _landed(db_path: Path) -> dict[str, tuple[int, int]]:
    """Per vehicle: (telemetry rows, distinct rows by message, time and signal)."""
    with store.connect_readonly(db_path) as con:
        found = con.execute(
            "SELECT vehicle_id, count(*), count(DISTINCT (msg_id, ts, signal)) "
            "FROM telemetry GROUP BY vehicle_id").fetchall()
    return {str(v): (int(rows), int(distinct)) for v, rows, distinct in found}


def test_a_fleet_in_four_agent_processes_lands_every_signal(tmp_path: Path) -> None:
    if find_mosquitto() is None:
        pytest.skip("needs mosquitto: the fleet's broker is the one fleetcare broker runs")
    db_path = tmp_path / "fleet.duckdb"
    with EmbeddedBroker(prefer="mosquitto", data_dir=tmp_path / "broker") as broker:
        # Simulated days go by in fractions of a second, and the fleet registers itself only
        # through its closing truth records: no rate limit, no register (as in the demo).
        ingestor = Ingestor(broker.url, db_path, client_id=f"fleet-{uuid.uuid4().hex[:8]}",
                            flush_interval_s=0.2, require_registered_vehicles=False,
                            rate_limit=None)
        ingestor.start()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "flows.cli", "-v", "sim", "run", "--broker", broker.url,
                 "--vehicles", str(VEHICLES), "--vehicles-per-process", str(PER_PROCESS),
                 "--days", "2", "--snapshot-s", "0.2", "--spool-dir", str(tmp_path / "spool")],
                cwd=REPO, text=True, capture_output=True, timeout=600, check=False)
            assert done.returncode == 0, done.stderr[-3000:]
            summary = orjson.loads(done.stdout.strip().splitlines()[-1])
            assert ingestor.wait_for(
                lambda s: s.messages_landed + s.duplicates >= summary["messages"]
                and s.telemetry_rows >= summary["signals_spooled"], timeout=300), \
                ingestor.stats
        finally:
            ingestor.stop()
    assert f"{VEHICLES} vehicles in 4 agent processes (at most {PER_PROCESS} each)" in done.stderr
    assert summary["vehicles"] == VEHICLES and summary["frames_read"] == summary["frames_sent"]
    assert summary["spool_dropped"] == 0
    landed = _landed(db_path)
    spooled = {v: stats["signals_spooled"] for v, stats in summary["per_vehicle"].items()}
    # A parked car or an offline gateway sends nothing that day: most vehicles publish.
    assert len(spooled) == VEHICLES and sum(n > 0 for n in spooled.values()) > VEHICLES // 2
    published = {v: n for v, n in spooled.items() if n > 0}
    assert {v: rows for v, (rows, _) in landed.items()} == published  # every signal, per vehicle
    assert all(rows == distinct for rows, distinct in landed.values())  # none twice
    assert sum(spooled.values()) == summary["signals_spooled"]

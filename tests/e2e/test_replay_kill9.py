"""``kill -9`` mid-stream, then a restart on the same spool: exactly every signal lands once."""

from __future__ import annotations

import signal
import subprocess
import uuid
from pathlib import Path

import orjson
import pytest

from pipeline.ingest.service import Ingestor
from tests.e2e.replay_helpers import (
    KONA_DBC,
    KONA_LOG,
    REPO,
    edge_replay_command,
    expected_signals,
    rows_of,
)


@pytest.mark.e2e
@pytest.mark.broker
def test_kill_9_mid_stream_then_restart_lands_every_signal_exactly_once(
    mosquitto_url: str, db_path: Path, tmp_path: Path,
) -> None:
    vehicle = f"KILL9-{uuid.uuid4().hex[:6]}"
    expected = expected_signals([KONA_LOG], [KONA_DBC], tmp_path / "expected")
    spool_dir = tmp_path / "spool"
    command = edge_replay_command([KONA_LOG], [KONA_DBC], mosquitto_url, vehicle, spool_dir)
    ingestor = Ingestor(mosquitto_url, db_path, client_id=f"ingest-{vehicle}",
                        require_registered_vehicles=False, rate_limit=None).start()
    try:
        # At twice the recorded pace the 9 s recording takes about 4.5 s: kill it once some
        # rows have landed, i.e. with data read, in the open batch, spooled and in flight.
        first = subprocess.Popen([*command, "--speed", "2"], cwd=REPO, stdout=subprocess.PIPE)
        assert ingestor.wait_for(lambda s: s.telemetry_rows >= 20_000, timeout=60)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        assert first.returncode == -signal.SIGKILL
        landed_before = ingestor.stats.telemetry_rows
        assert landed_before < expected  # it really was mid-stream

        second = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, check=True)
        summary = orjson.loads(second.stdout.strip().splitlines()[-1])
        assert summary["drained"] is True
        assert 0 < summary["frames_read"] < 17173  # resumed after its checkpoint
        assert ingestor.wait_for(lambda s: s.telemetry_rows >= expected, timeout=60)
    finally:
        ingestor.stop()
    rows, messages = rows_of(db_path, vehicle)
    assert rows == expected  # nothing lost, nothing doubled
    assert messages > 1

"""bench/fleet_soak.py at a small size: every signal lands once through a kill -9 of each part.

The benchmark itself runs (``fleetcare broker``, ``fleetcare ingest`` and ``fleetcare sim
run`` as processes; the broker and then ingest killed with SIGKILL and restarted while the
fleet's data lands), with 10 vehicles, 2 days and no reference run. The test holds it to
what it reports: rows landed equal the signals the agents spooled, none twice, nothing left
in a spool, and both kills made while the fleet was running.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pipeline.broker.harness import find_mosquitto

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_a_small_soak_lands_every_signal_once_through_both_kills(tmp_path: Path) -> None:
    if find_mosquitto() is None:
        pytest.skip("needs mosquitto: the soak runs fleetcare broker")
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fleet_soak.py"), "--vehicles", "10",
         "--days", "2", "--kill-broker-at", "0.5", "--broker-down", "1",
         "--kill-ingest-at", "3", "--ingest-down", "1", "--no-reference",
         "--keep", str(tmp_path / "soak")],
        cwd=REPO, text=True, capture_output=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert set(figures["kills_s_after_first_receipt"]) == {
        "ingest killed", "ingest back up", "broker killed", "broker back up"}
    assert figures["kills_skipped_fleet_had_stopped"] == []
    assert figures["signals_spooled"] > 0
    assert figures["rows_landed"] == figures["distinct_rows"] == figures["signals_spooled"]
    assert figures["duplicates"] == figures["duplicate_samples"] == figures["rows_lost"] == 0
    assert figures["messages_landed"] == figures["messages_spooled"]
    assert figures["left_in_spools"] == figures["agents_undelivered"] == 0
    assert figures["agents_receipted"] == figures["messages_spooled"]

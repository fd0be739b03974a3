"""bench/fleet_soak.py at a small size: every signal lands once through a kill -9 of each part.

The benchmark itself runs (``fleetcare broker``, ``fleetcare ingest`` and ``fleetcare sim
run`` as processes; ingest and then the broker killed with SIGKILL and restarted while the
fleet's data lands), with 10 vehicles, 4 days and no reference run. The test holds it to
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
    # Ingest dies at the fleet's first receipt, so the fleet cannot finish until it is back
    # (its agents wait for receipts); the broker dies as soon as ingest is back, before the
    # backlog's first commit: both kills fall while the fleet runs, however fast the machine.
    # What the broker acknowledged and lost in its kill comes again 5 s later, not 30 s.
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fleet_soak.py"), "--vehicles", "10",
         "--days", "4", "--kill-ingest-at", "0", "--ingest-down", "1",
         "--kill-broker-at", "1", "--broker-down", "1", "--receipt-timeout", "5",
         "--no-reference",
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
    # The drain is timed from the sim's progress reaching the last day (its bar, forced by
    # --progress into the pipe) to the last commit: both ends were seen.
    assert figures["drain_s"] is not None and figures["drain_s"] >= 0
    assert figures["sim_exit_after_last_day_s"] is not None

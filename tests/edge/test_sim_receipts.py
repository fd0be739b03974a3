"""The simulated fleet's agents delete spool entries on the store's receipts, as a gateway does.

``fleetcare sim run`` runs as its own process against the test broker: with a real
:class:`~pipeline.ingest.service.Ingestor` it ends once every message is receipted and its
summary says so; with no ingest behind the broker nothing is receipted, so the entries stay
spooled, the summary counts them and the command exits 1 after ``--drain-timeout``;
``--no-receipts`` retires them on the broker's PUBACK instead.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.ingest.service import Ingestor
from pipeline.store import connection as store

pytestmark = [pytest.mark.broker]

REPO = Path(__file__).resolve().parents[2]


def _sim(broker_url: str, spool: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "sim", "run", "--broker", broker_url,
         "--vehicles", "3", "--days", "2", "--snapshot-s", "0.2", "--spool-dir", str(spool),
         *extra], cwd=REPO, text=True, capture_output=True, timeout=300, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, orjson.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _spooled(spool: Path) -> int:
    """Entries left in the agents' spools (what the summary must count)."""
    left = 0
    for path in spool.glob("*/spool.sqlite3"):
        with closing(sqlite3.connect(path)) as db:
            left += int(db.execute("SELECT count(*) FROM entry").fetchone()[0])
    return left


def test_a_sim_run_ends_once_the_store_has_receipted_every_message(broker_url: str,
                                                                   tmp_path: Path) -> None:
    db_path = tmp_path / "sim.duckdb"
    with Ingestor(broker_url, db_path, client_id=f"sim-receipts-{uuid.uuid4().hex[:8]}",
                  flush_interval_s=0.2, require_registered_vehicles=False,
                  rate_limit=None) as ingestor:
        code, summary, err = _sim(broker_url, tmp_path / "spool")
        # The command returned after the last receipt: everything is committed already.
        landed = ingestor.stats
    assert code == 0, err
    assert summary["messages_receipted"] == summary["messages"] > 0
    assert summary["messages_undelivered"] == 0 and _spooled(tmp_path / "spool") == 0
    assert landed.telemetry_rows == summary["signals_spooled"] > 0
    with store.connect_readonly(db_path) as con:
        rows, distinct = con.execute("SELECT count(*), count(DISTINCT (msg_id, ts, signal)) "
                                     "FROM telemetry").fetchone() or (0, 0)
    assert rows == distinct == summary["signals_spooled"]


def test_without_an_ingest_nothing_is_receipted_the_entries_stay_and_the_exit_is_1(
        broker_url: str, tmp_path: Path) -> None:
    code, summary, err = _sim(broker_url, tmp_path / "spool", "--drain-timeout", "2")
    assert code == 1
    assert summary["messages_receipted"] == 0
    assert summary["messages_undelivered"] == summary["messages"] > 0
    assert _spooled(tmp_path / "spool") == summary["messages"]  # kept for a later start
    assert (f"{summary['messages']} messages were not receipted by the store within "
            f"--drain-timeout 2 s: they wait in {tmp_path / 'spool'}") in err


def test_no_receipts_retires_entries_on_the_brokers_puback(broker_url: str,
                                                           tmp_path: Path) -> None:
    code, summary, err = _sim(broker_url, tmp_path / "spool", "--no-receipts")
    assert code == 0, err
    assert summary["messages_receipted"] == summary["messages_undelivered"] == 0
    assert summary["messages"] > 0 and _spooled(tmp_path / "spool") == 0

"""``fleetcare edge replay`` resumes by default: a ``kill -9`` costs nothing and doubles nothing.

Both replays run as the command a person types (no ``--spool-dir``), each in its own process,
against the session's mosquitto with ingest landing in a real DuckDB file. One replay runs
through; the other is killed half-way and started again with the same command. The rows the
second vehicle ends up with must be the rows of the first, one for one, and neither leaves a
state directory behind once it has finished.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from edge.replaystate import ReplayState
from pipeline.ingest.service import Ingestor
from pipeline.store import connection as store
from tests.e2e.replay_helpers import KONA_DBC, KONA_LOG, REPO, expected_signals
from tests.polling import wait_until

KONA_FRAMES = 17173


def _command(broker_url: str, vehicle: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "edge", "replay", str(KONA_LOG), "--dbc",
            str(KONA_DBC), "--broker", broker_url, "--vehicle", vehicle, "--taps", "", *extra]


def _checkpoint(spool_file: Path) -> int:
    """The frame position the replay's spool has committed (0 before there is one)."""
    if not spool_file.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{spool_file}?mode=ro", uri=True, timeout=5) as con:
            row = con.execute("SELECT max(position) FROM checkpoint").fetchone()
    except sqlite3.Error:  # created but not initialised yet
        return 0
    return int(row[0] or 0)


def _rows(db_path: Path, vehicle: str) -> list[tuple[object, ...]]:
    with store.connect_readonly(db_path) as con:
        return con.execute("SELECT ts, signal, value FROM telemetry WHERE vehicle_id = ? "
                           "ORDER BY ts, signal, value", [vehicle]).fetchall()


@pytest.mark.e2e
@pytest.mark.broker
def test_a_killed_replay_resumes_by_default_with_the_rows_of_an_uninterrupted_one(
    mosquitto_url: str, db_path: Path, tmp_path: Path,
) -> None:
    tag = uuid.uuid4().hex[:6]
    whole, resumed = f"WHOLE-{tag}", f"RESUMED-{tag}"
    root = tmp_path / "state" / "fleetcare" / "replay"
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    expected = expected_signals([KONA_LOG], [KONA_DBC], tmp_path / "expected")
    spool_file = ReplayState([KONA_LOG], resumed, root=root).directory / resumed / "spool.sqlite3"
    ingestor = Ingestor(mosquitto_url, db_path, client_id=f"ingest-{tag}",
                        require_registered_vehicles=False, rate_limit=None).start()
    try:
        done = subprocess.run(_command(mosquitto_url, whole), cwd=REPO, env=env,
                              stdout=subprocess.PIPE, check=True)
        summary = orjson.loads(done.stdout.strip().splitlines()[-1])
        assert summary["completed"] is True and summary["drained"] is True
        assert summary["resumed_after_frame"] == 0
        assert root.is_dir() and list(root.iterdir()) == []  # finished: nothing left behind

        # At the recorded pace the recording takes about 9 s: killed once its spool has
        # committed some frames, it has data spooled, in flight and in the open batch.
        first = subprocess.Popen(_command(mosquitto_url, resumed, "--speed", "1"), cwd=REPO,
                                 env=env, stdout=subprocess.DEVNULL)
        try:
            assert wait_until(lambda: _checkpoint(spool_file) >= 2000, timeout=120)
        finally:
            first.kill()
            first.wait(timeout=30)
        kept = _checkpoint(spool_file)
        assert 0 < kept < KONA_FRAMES  # killed mid-stream, and the state stayed

        done = subprocess.run(_command(mosquitto_url, resumed), cwd=REPO, env=env,
                              stdout=subprocess.PIPE, check=True)
        summary = orjson.loads(done.stdout.strip().splitlines()[-1])
        assert summary["completed"] is True and summary["drained"] is True
        assert summary["resumed_after_frame"] == kept
        assert summary["frames_read"] == KONA_FRAMES - kept
        assert list(root.iterdir()) == []  # resumed, finished, removed
        assert ingestor.wait_for(lambda s: s.telemetry_rows >= 2 * expected, timeout=120)
    finally:
        ingestor.stop()
    reference = _rows(db_path, whole)
    assert len(reference) == expected
    assert _rows(db_path, resumed) == reference  # nothing lost, nothing doubled, same values


@pytest.mark.e2e
@pytest.mark.broker
def test_a_stopped_replay_keeps_its_state_and_fresh_starts_over(
    mosquitto_url: str, db_path: Path, tmp_path: Path,
) -> None:
    vehicle = f"STOPPED-{uuid.uuid4().hex[:6]}"
    root = tmp_path / "state" / "fleetcare" / "replay"
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    spool_file = ReplayState([KONA_LOG], vehicle, root=root).directory / vehicle / "spool.sqlite3"
    ingestor = Ingestor(mosquitto_url, db_path, client_id=f"ingest-{vehicle}",
                        require_registered_vehicles=False, rate_limit=None).start()
    try:
        first = subprocess.Popen(_command(mosquitto_url, vehicle, "--speed", "1"), cwd=REPO,
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        try:
            assert wait_until(lambda: _checkpoint(spool_file) >= 1000, timeout=120)
            first.send_signal(signal.SIGTERM)
            out, err = first.communicate(timeout=120)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        assert first.returncode == 1  # stopped is not finished
        summary = orjson.loads(out.strip().splitlines()[-1])
        assert summary["completed"] is False and summary["drained"] is True
        assert "keeps its spool: the same command resumes it" in err
        assert 0 < _checkpoint(spool_file) < KONA_FRAMES  # kept for the next run

        done = subprocess.run(_command(mosquitto_url, vehicle, "--fresh"), cwd=REPO, env=env,
                              stdout=subprocess.PIPE, check=True)
        summary = orjson.loads(done.stdout.strip().splitlines()[-1])
        assert summary["resumed_after_frame"] == 0 and summary["frames_read"] == KONA_FRAMES
        assert summary["completed"] is True and summary["drained"] is True
        assert list(root.iterdir()) == []
    finally:
        ingestor.stop()

"""Every shared real log replayed end to end: agent process, broker, ingest, DuckDB."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from flows.cli.replay import ReplayOptions, edge_replay
from pipeline.ingest.service import Ingestor
from pipeline.store import connection as store
from tests.e2e.replay_helpers import CAN, DBC, REPO, expected_signals, rows_of

CASES = [
    ("kona", [CAN / "kona_2018" / "turnonlog.log"], [DBC / "hyundai_kia_generic.dbc"], 17173),
    ("subaru", [CAN / "subaru_wrx" / "cruise.log"], [DBC / "subaru_outback_2015_generated.dbc"],
     6106),
    ("truck-mf4", [CAN / "truck_j1939_tp" / "00000001-60B621D9.MF4"],
     [DBC / "CSS-Electronics-SAE-J1939-DEMO.dbc"], 1815),
    ("leaf-mf4", [CAN / "leaf_2019_uds" / "00000001.MF4"], [DBC / "tp_uds_nissan.dbc"], 5588),
    ("car-obd2", [CAN / "car_obd2_gnss" / "00000002-60FE415D.candump.log"], [], 73785),
]


@pytest.mark.e2e
@pytest.mark.broker
@pytest.mark.parametrize(("name", "logs", "dbcs", "frames"), CASES, ids=[c[0] for c in CASES])
def test_shared_log_lands_in_duckdb(broker_url: str, db_path: Path, tmp_path: Path, name: str,
                                    logs: list[Path], dbcs: list[Path], frames: int) -> None:
    vehicle = f"REPLAY-{name}-{uuid.uuid4().hex[:6]}"
    expected = expected_signals(logs, dbcs, tmp_path / "expected")
    ingestor = Ingestor(broker_url, db_path, client_id=f"ingest-{vehicle}",
                        require_registered_vehicles=False, rate_limit=None).start()
    try:
        options = ReplayOptions(logs, dbcs, db_path, vehicle, taps="")
        summary = edge_replay(options, broker_url)
        assert summary["frames_read"] == frames
        assert summary["signals_spooled"] == expected
        assert summary["frames_decoded"] + summary["unknown_frames"] + summary[
            "malformed_frames"] == frames
        assert summary["drained"] is True
        assert ingestor.wait_for(lambda s: s.telemetry_rows >= expected, timeout=120)
    finally:
        ingestor.stop()
    assert rows_of(db_path, vehicle)[0] == expected


@pytest.mark.e2e
@pytest.mark.broker
def test_default_taps_turn_obd_answers_into_rows(broker_url: str, db_path: Path,
                                                 tmp_path: Path) -> None:
    pytest.importorskip("edge.diag.taps", reason="the OBD-II/J1939 taps come with issue 5")
    log = CAN / "car_obd2_gnss" / "00000002-60FE415D.candump.log"
    vehicle = f"REPLAY-taps-{uuid.uuid4().hex[:6]}"
    ingestor = Ingestor(broker_url, db_path, client_id=f"ingest-{vehicle}",
                        require_registered_vehicles=False, rate_limit=None).start()
    try:
        summary = edge_replay(ReplayOptions([log], [], db_path, vehicle), broker_url)
        expected = summary["signals_spooled"]
        assert summary["frames_decoded"] == 0 and expected > 0  # no DBC: all from the tap
        assert ingestor.wait_for(lambda s: s.telemetry_rows >= expected, timeout=120)
    finally:
        ingestor.stop()
    with store.connect_readonly(db_path) as con:
        row = con.execute("SELECT count(*), count(*) FILTER (WHERE signal LIKE 'OBD.%') "
                          "FROM telemetry WHERE vehicle_id = ?", [vehicle]).fetchone()
    assert row is not None and row[0] == expected and row[1] > 0


@pytest.mark.e2e
@pytest.mark.broker
def test_fleetcare_replay_prints_the_summary_last(tmp_path: Path) -> None:
    log = CAN / "subaru_wrx" / "cruise.log"
    dbc = DBC / "subaru_outback_2015_generated.dbc"
    db_path = tmp_path / "replay.duckdb"
    done = subprocess.run([sys.executable, "-m", "flows.cli", "replay", str(log), "--dbc",
                           str(dbc), "--db", str(db_path), "--vehicle", "WRX1", "--taps", ""],
                          cwd=REPO, stdout=subprocess.PIPE, check=True)
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert summary["frames_read"] == 6106
    assert summary["rows_landed"] == summary["signals_published"] > 0
    assert summary["dropped"] == 0
    assert {"frames_decoded", "unknown_frames", "unknown_ids"} <= summary.keys()
    assert rows_of(db_path, "WRX1")[0] == summary["signals_published"]
    assert summary["complete"] is True
    assert not (tmp_path / "replay.duckdb.replay-state").exists()  # finished: no spool left


def test_edge_replay_reports_a_missing_log(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "flows.cli", "edge", "replay",
                           str(tmp_path / "nope.log"), "--broker", "mqtt://127.0.0.1:1"],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "nope.log does not exist" in done.stderr

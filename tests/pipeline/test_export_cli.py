"""``fleetcare export`` and ``fleetcare deadletter``: the store's CLI for data engineers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import orjson

from edge.wire import contract
from pipeline.ingest.landing import InboundMessage, land
from pipeline.store import connection as store

T0 = 1_767_225_600.0  # 2026-01-01: older than any cut-off the CLI computes from today


def fleetcare(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def seed(db_path: Path) -> None:
    batch = contract.TelemetryBatch("m1", "VIN1", [T0, T0 + 1], ["a", "b"], [1.0, 2.0])
    with store.connect(db_path) as con:
        land(con, [InboundMessage(contract.telemetry_topic("VIN1"), contract.encode(batch), T0),
                   InboundMessage(contract.dtc_topic("VIN1"), b"not json", T0)])


def test_export_moves_cold_rows_and_writes_a_snapshot(db_path: Path, tmp_path: Path) -> None:
    seed(db_path)

    done = fleetcare("export", "--db", str(db_path), "--dir", str(tmp_path / "parquet"),
                     "--older-than-days", "1", "--snapshot", str(tmp_path / "snap.duckdb"))

    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert (report["export"]["rows"], report["export"]["files"]) == (2, 1)
    with duckdb.connect(str(tmp_path / "snap.duckdb"), read_only=True) as snap:
        assert snap.execute("SELECT count(*) FROM telemetry").fetchone() == (0,)
    reader = duckdb.connect()
    from pipeline.store.export import attach_exports

    attach_exports(reader, tmp_path / "parquet")
    assert reader.execute("SELECT signal, value FROM telemetry_all ORDER BY ts").fetchall() == [
        ("a", 1.0), ("b", 2.0)]


def test_export_without_a_target_says_what_to_give(db_path: Path) -> None:
    done = fleetcare("export", "--db", str(db_path))

    assert done.returncode == 2
    assert "--dir" in done.stderr and "--snapshot" in done.stderr


def test_deadletter_list_and_replay(db_path: Path) -> None:
    seed(db_path)

    listed = fleetcare("deadletter", "list", "--db", str(db_path), "--pending")
    replayed = fleetcare("deadletter", "replay", "--db", str(db_path))

    assert listed.returncode == 0 and "not valid JSON" in listed.stdout
    header, first = listed.stdout.splitlines()[:2]
    assert header == "id\treceived_at\ttopic\treason"
    assert first.startswith("1\t") and contract.dtc_topic("VIN1") in first
    as_json = orjson.loads(fleetcare("deadletter", "list", "--db", str(db_path), "--json").stdout)
    assert [(d["id"], d["topic"]) for d in as_json] == [(1, contract.dtc_topic("VIN1"))]
    assert as_json[0]["payload"] == "not json" and as_json[0]["truncated"] is False
    assert orjson.loads(replayed.stdout)["dead_letters"] == 1  # still broken: kept, not lost

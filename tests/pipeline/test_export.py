"""Cold telemetry to Parquet and snapshots: every row readable exactly once, ingest unblocked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from edge.wire import contract
from pipeline.ingest.landing import InboundMessage, land
from pipeline.ingest.service import Ingestor
from pipeline.store import connection as store
from pipeline.store.export import (
    ExportPolicy,
    attach_exports,
    export_cold,
    recover,
    write_snapshot,
)

DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
NOW = datetime(2026, 1, 11, 12, 0, tzinfo=UTC)


def telemetry(msg_id: str, vehicle: str, day: int, n: int = 4) -> InboundMessage:
    ts = [T0 + day * DAY + i * 60 for i in range(n)]
    batch = contract.TelemetryBatch(msg_id, vehicle, ts, [f"S{i}" for i in range(n)],
                                    [float(day * 100 + i) for i in range(n)])
    return InboundMessage(contract.telemetry_topic(vehicle), contract.encode(batch), T0)


@pytest.fixture
def con(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = store.connect(db_path)
    land(connection, [telemetry(f"m{d}{v}", v, d) for d in range(10) for v in ("VA", "VB")])
    yield connection
    connection.close()


def everything(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return con.execute("SELECT vehicle_id, epoch(ts), signal, value, msg_id FROM telemetry_all "
                       "ORDER BY ALL").fetchall()


def test_cold_rows_move_to_date_and_vehicle_partitions_and_stay_visible(
        con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    attach_exports(con, tmp_path / "exports")
    before = everything(con)

    report = export_cold(con, tmp_path / "exports", older_than_days=3, now=NOW)

    assert report.cutoff == datetime(2026, 1, 8, tzinfo=UTC)
    assert (report.rows, report.files) == (7 * 2 * 4, 7 * 2)
    assert (tmp_path / "exports/telemetry/date=2026-01-01/vehicle_id=VA").is_dir()
    assert con.execute("SELECT min(ts) FROM telemetry").fetchone() == (report.cutoff,)
    attach_exports(con, tmp_path / "exports")
    assert everything(con) == before
    assert con.execute("SELECT n_rows FROM telemetry_exports").fetchall() == [(56,)]


def test_a_second_export_moves_only_late_rows(con: duckdb.DuckDBPyConnection,
                                              tmp_path: Path) -> None:
    export_cold(con, tmp_path, older_than_days=3, now=NOW)
    land(con, [telemetry("late", "VA", 1)])
    attach_exports(con, tmp_path)
    before = everything(con)

    again = export_cold(con, tmp_path, older_than_days=3, now=NOW)
    nothing = export_cold(con, tmp_path, older_than_days=3, now=NOW)

    assert (again.rows, again.files) == (4, 1)
    assert (nothing.export_id, nothing.rows) == (None, 0)
    attach_exports(con, tmp_path)
    assert everything(con) == before
    assert len(list((tmp_path / "telemetry/date=2026-01-02/vehicle_id=VA").iterdir())) == 2


def test_readers_need_neither_the_write_lock_nor_the_file(con: duckdb.DuckDBPyConnection,
                                                          db_path: Path, tmp_path: Path) -> None:
    export_cold(con, tmp_path, older_than_days=3, now=NOW)
    snapshot = write_snapshot(con, tmp_path / "snap" / "fleet.duckdb")
    land(con, [telemetry("after-snapshot", "VC", 9)])

    with store.connect_readonly(snapshot) as reader:
        attach_exports(reader, tmp_path)
        assert reader.execute("SELECT count(*) FROM telemetry_all").fetchone() == (80,)
    parquet_only = duckdb.connect()
    attach_exports(parquet_only, tmp_path)
    assert parquet_only.execute("SELECT count(*), count(DISTINCT vehicle_id), max(ts) < $c "
                                "FROM telemetry_all", {"c": datetime(2026, 1, 8, tzinfo=UTC)}
                                ).fetchone() == (56, 2, True)


def test_an_interrupted_export_is_finished_or_discarded(con: duckdb.DuckDBPyConnection,
                                                        tmp_path: Path) -> None:
    report = export_cold(con, tmp_path, older_than_days=3, now=NOW)
    published = sorted((tmp_path / "telemetry").rglob("*.parquet"))
    staged = tmp_path / "_staging" / str(report.export_id)
    for path in published[:3]:  # a crash after the commit, before every rename
        target = staged / path.relative_to(tmp_path / "telemetry")
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    orphan = tmp_path / "_staging" / "never-committed" / "date=2026-01-01" / "vehicle_id=VA"
    orphan.mkdir(parents=True)
    (orphan / "part-x-0.parquet").write_bytes(b"half written")

    recover(con, tmp_path)

    assert sorted((tmp_path / "telemetry").rglob("*.parquet")) == published
    assert not any((tmp_path / "_staging").iterdir())
    attach_exports(con, tmp_path)
    assert con.execute("SELECT count(*), count(DISTINCT (msg_id, signal)) FROM telemetry_all"
                       ).fetchone() == (80, 80)


def test_a_failed_export_deletes_nothing(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")

    with pytest.raises(Exception, match=r"export|Directory|directory|exist"):
        export_cold(con, blocker, older_than_days=3, now=NOW)

    assert con.execute("SELECT count(*) FROM telemetry").fetchone() == (80,)


@pytest.mark.broker
def test_ingest_keeps_a_snapshot_readers_can_open_while_it_runs(
        broker_url: str, db_path: Path, tmp_path: Path) -> None:
    from tests.pipeline.test_ingest import publish

    snapshot = tmp_path / "snapshot.duckdb"
    policy = ExportPolicy(snapshot=snapshot)
    with Ingestor(broker_url, db_path, client_id=f"exp-{uuid.uuid4().hex[:8]}",
                  flush_interval_s=0.05, maintenance=policy,
                  maintenance_interval_s=0.05, require_registered_vehicles=False) as ingestor:
        msg = telemetry("snap-1", "VS", 2)
        publish(broker_url, [(msg.topic, msg.payload)])
        assert ingestor.wait_for(lambda s: s.messages_landed == 1, timeout=15)
        runs = ingestor.stats.maintenance_runs
        assert ingestor.wait_for(lambda s: s.maintenance_runs > runs, timeout=15)

        with pytest.raises(duckdb.Error, match="lock"):  # the live file stays locked
            _open_in_subprocess(db_path)
        with store.connect_readonly(snapshot) as reader:
            assert reader.execute("SELECT msg_id FROM telemetry").fetchall() == [("snap-1",)] * 4
    assert ingestor.stats.maintenance_failures == 0


def _open_in_subprocess(path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import duckdb,sys; "
                           "duckdb.connect(sys.argv[1], read_only=True)", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise duckdb.IOException(done.stderr.strip().splitlines()[-1])

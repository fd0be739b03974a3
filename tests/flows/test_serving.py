"""The serving store: the flows' own file, reading the landing store through its snapshot."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from flow_fixtures import URGENT_VEHICLE, Stores
from synth_fleet import START

from pipeline.errors import StoreError
from pipeline.store import connection as store
from pipeline.store import export
from pipeline.store.serving import LANDING_TABLES, ServingStoreBusyError, connect_serving


def _count(con: object, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0])  # type: ignore[attr-defined]


def test_landing_tables_are_read_through_the_snapshot(stores: Stores) -> None:
    with store.connect_readonly(stores.landing) as land:
        expected = {t: _count(land, f"SELECT count(*) FROM {t}") for t in LANDING_TABLES}
    with connect_serving(stores.serving, stores.snapshot) as con:
        seen = {t: _count(con, f"SELECT count(*) FROM {t}") for t in LANDING_TABLES}
        own = {t: _count(con, f"SELECT count(*) FROM serving.main.{t}") for t in LANDING_TABLES}
    assert seen == expected and expected["telemetry"] > 10_000
    assert set(own.values()) == {0}  # the serving file never copies landed rows


def test_vehicles_sync_keeps_assignments_and_urgent_leads_are_copied_once(
        stores: Stores) -> None:
    with connect_serving(stores.serving, stores.snapshot) as con:
        con.execute("UPDATE vehicles SET customer_id = 'C1', centre_id = 'S1'"
                    " WHERE vehicle_id = 'ok1'")
    with store.connect(stores.landing) as land:
        land.execute("UPDATE vehicles SET region = 'south' WHERE vehicle_id = 'ok1'")
        export.write_snapshot(land, stores.snapshot)
    with connect_serving(stores.serving, stores.snapshot) as con:
        row = con.execute("SELECT region, customer_id, centre_id FROM vehicles"
                          " WHERE vehicle_id = 'ok1'").fetchall()
        leads = con.execute("SELECT vehicle_id, severity FROM leads").fetchall()
        outbox = _count(con, "SELECT count(*) FROM outbox")
    assert row == [("south", "C1", "S1")]
    assert leads == [(URGENT_VEHICLE, "critical")] and outbox == 1


def test_exported_parquet_counts_once_even_with_an_older_snapshot(stores: Stores) -> None:
    with store.connect_readonly(stores.landing) as land:
        total = _count(land, "SELECT count(*) FROM telemetry")
    old_snapshot = str(Path(stores.snapshot).with_name("old.duckdb"))
    with store.connect(stores.landing) as land:
        export.write_snapshot(land, old_snapshot)
        moved = export.export_cold(land, stores.export_dir, older_than_days=30,
                                   now=START + dt.timedelta(days=60)).rows
        export.write_snapshot(land, stores.snapshot)
    assert 0 < moved < total
    for snapshot in (stores.snapshot, old_snapshot):
        with connect_serving(stores.serving, snapshot, stores.export_dir) as con:
            assert _count(con, "SELECT count(*) FROM telemetry") == total
            assert _count(con, "SELECT count(DISTINCT (vehicle_id, ts, signal)) "
                               "FROM telemetry") == total


def test_missing_snapshot_says_how_to_publish_one(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no landing snapshot .* --snapshot"):
        connect_serving(tmp_path / "serving.duckdb", tmp_path / "nope.duckdb")


def test_a_serving_file_held_by_another_process_is_a_transient_error(stores: Stores) -> None:
    holder = hold_lock(stores.serving)
    try:
        with pytest.raises(ServingStoreBusyError, match="open in another process"):
            connect_serving(stores.serving, stores.snapshot)
    finally:
        release(holder)


def hold_lock(path: str) -> subprocess.Popen[str]:
    """A child process holding ``path``'s DuckDB write lock until its stdin closes."""
    code = ("import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('locked', flush=True);"
            " sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code, path], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    return child


def release(child: subprocess.Popen[str]) -> None:
    """Let the lock holder exit."""
    if child.stdin is not None:
        child.stdin.close()
    child.wait(timeout=30)

"""The serving store over two ingest workers' snapshots (issue 20 item 5).

Two workers on a shared subscription each land into their own store and publish their own
snapshot. The test fleet's landing store is split into two such stores by vehicle, and one
vehicle's messages are in both, as when an agent sent them again (no receipt in time) and the
shared subscription dealt the copy to the other worker. Read through both snapshots, every
landing table must hold what the one whole store holds: the copy counts once.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from flow_fixtures import CARS, N_DAYS, URGENT_VEHICLE, Stores
from synth_fleet import START

from pipeline.errors import StoreError
from pipeline.features.materialised import DayRange, compute_daily_features
from pipeline.leads import advice
from pipeline.ml import partitions
from pipeline.store import connection as store
from pipeline.store import export
from pipeline.store.serving import LANDING_TABLES, connect_serving

MSG_TABLES = ("telemetry", "dtc_events", "ground_truth", "edge_health", "vehicle_info")
"""Landing tables whose rows name the message they came in (``ingested_messages`` too)."""
SHARED_VEHICLE = "ice0"
"""The vehicle whose messages both workers landed."""


@dataclass(frozen=True)
class Workers:
    """The whole landing store's snapshot and the two workers' snapshots split from it."""

    whole: str
    worker_a: str
    worker_b: str


def _one_message_id_per_row_source(con: object) -> None:
    """Give the synthetic rows distinct message ids and record them as ingest does.

    The synthetic fleet reuses one id for every fault code and truth row; ingest never would
    (an id is one message), and exactly-once across stores is decided by id.
    """
    run = con.execute  # type: ignore[attr-defined]
    run("UPDATE dtc_events SET msg_id = vehicle_id || '-dtc-' || code || '-' || epoch(ts)")
    run("UPDATE ground_truth SET msg_id = vehicle_id || '-truth-' || component")
    for table in MSG_TABLES:
        run(f"INSERT OR IGNORE INTO ingested_messages (msg_id, vehicle_id, kind, topic, n_rows)"
            f" SELECT msg_id, any_value(vehicle_id), '{table}', 'fleetcare/v1/vehicles/'"
            f" || any_value(vehicle_id), count(*) FROM {table} GROUP BY msg_id")


def _keep_only(path: Path, vehicles: set[str]) -> None:
    """Delete every landed row of the other vehicles (leads, outbox and register stay)."""
    with store.connect(path) as con:
        for table in (*MSG_TABLES, "ingested_messages"):
            con.execute(f"DELETE FROM {table} WHERE NOT list_contains(?, vehicle_id)",
                        [sorted(vehicles)])


@pytest.fixture
def workers(stores: Stores, tmp_path: Path) -> Workers:
    landing = Path(stores.landing)
    with store.connect(landing) as con:
        _one_message_id_per_row_source(con)
        export.write_snapshot(con, stores.snapshot)
    ids = sorted(car.vehicle_id for car in CARS)
    half_a = set(ids[::2])
    half_b = set(ids[1::2])
    assert SHARED_VEHICLE in half_a and URGENT_VEHICLE in half_a | half_b
    snapshots = []
    for name, keep in (("a", half_a), ("b", half_b | {SHARED_VEHICLE})):
        path = tmp_path / f"worker-{name}.duckdb"
        shutil.copy(landing, path)
        _keep_only(path, keep)
        with store.connect(path) as con:
            snapshots.append(str(export.write_snapshot(con, tmp_path / f"snap-{name}.duckdb")))
    return Workers(stores.snapshot, snapshots[0], snapshots[1])


def _counts(serving: Path, snapshots: str | list[str]) -> dict[str, int]:
    with connect_serving(serving, snapshots) as con:
        return {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0])
                for t in LANDING_TABLES}


def test_a_message_both_workers_landed_counts_once(workers: Workers, tmp_path: Path) -> None:
    whole = _counts(tmp_path / "one.duckdb", workers.whole)
    both = _counts(tmp_path / "two.duckdb", [workers.worker_a, workers.worker_b])
    with store.connect_readonly(workers.worker_b) as con:
        copied = int(con.execute("SELECT count(*) FROM telemetry WHERE vehicle_id = ?",
                                 [SHARED_VEHICLE]).fetchall()[0][0])
    assert copied > 0  # the copy is there to be left out
    assert both == whole and whole["telemetry"] > 10_000
    with connect_serving(tmp_path / "two.duckdb", [workers.worker_b, workers.worker_a]) as con:
        reversed_total = int(con.execute("SELECT count(*) FROM telemetry").fetchall()[0][0])
    assert reversed_total == whole["telemetry"]  # whichever store is read first


def test_features_and_partitions_over_two_snapshots_equal_the_whole_store(
        workers: Workers, tmp_path: Path) -> None:
    days = DayRange(START.date() + dt.timedelta(days=N_DAYS - 7), START.date()
                    + dt.timedelta(days=N_DAYS - 1))
    pair = [workers.worker_a, workers.worker_b]
    with connect_serving(tmp_path / "one.duckdb", workers.whole) as con:
        expected = compute_daily_features(con, days).sort(pl.all())
    with connect_serving(tmp_path / "two.duckdb", pair) as con:
        served = compute_daily_features(con, days).sort(pl.all())
        vehicles = partitions.fleet_vehicles(con)
    parted = pl.concat([partitions.partition_features(pair, part, days)
                        for part in partitions.partition_vehicles(vehicles, 3) if part])
    assert expected.height > 0
    assert served.equals(expected)
    assert parted.sort(pl.all()).equals(expected)
    assert "+" in partitions.snapshot_version(pair)  # a new snapshot of either: a new key


def test_the_urgent_lead_both_stores_hold_is_copied_and_advised_once(
        workers: Workers, tmp_path: Path) -> None:
    serving = tmp_path / "two.duckdb"
    pair = [workers.worker_a, workers.worker_b]
    with connect_serving(serving, pair) as con:
        leads = con.execute("SELECT lead_id, vehicle_id FROM leads").fetchall()
        outbox = con.execute("SELECT event_id FROM outbox").fetchall()
        report = advice.advise(con, vehicles=[URGENT_VEHICLE], min_severity="critical",
                               daily_features=False,
                               now=START + dt.timedelta(days=N_DAYS - 1, hours=14))
    assert [v for _, v in leads] == [URGENT_VEHICLE] and len(outbox) == 1
    assert not report.lead_ids  # the copied lead is the vehicle's open lead
    with connect_serving(serving, pair) as con:  # and the next sync copies nothing again
        assert con.execute("SELECT count(*) FROM leads").fetchall()[0][0] == 1
        assert con.execute("SELECT count(*) FROM outbox").fetchall()[0][0] == 1


def test_one_snapshot_given_twice_is_refused(workers: Workers, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="given twice"):
        connect_serving(tmp_path / "s.duckdb", [workers.worker_a, workers.worker_a])


def test_fleet_coverage_command_reads_both_snapshots(workers: Workers, tmp_path: Path) -> None:
    serving = tmp_path / "two.duckdb"
    with connect_serving(serving, [workers.worker_a, workers.worker_b]):
        pass  # the serving store exists, as after any flow run
    runs = {}
    for name, snapshots in (("whole", [workers.whole]),
                            ("both", [workers.worker_a, workers.worker_b])):
        options = [arg for s in snapshots for arg in ("--snapshot", s)]
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", "fleet", "coverage", "--db", str(serving),
             *options, "--json"], capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        runs[name] = json.loads(done.stdout)
    assert runs["both"] == runs["whole"]
    assert runs["whole"]


def test_features_flow_takes_both_snapshots_in_one_writer_and_in_buckets(
        workers: Workers, tmp_path: Path, prefect_harness: None) -> None:
    from flows.scheduled.features import features_flow

    pair = [workers.worker_a, workers.worker_b]
    whole = features_flow(str(tmp_path / "one.duckdb"), workers.whole, days=7)
    assert whole["rows"] > 0
    assert features_flow(str(tmp_path / "two.duckdb"), pair, days=7) == whole
    assert features_flow(str(tmp_path / "three.duckdb"), pair, days=7, buckets=3) == whole


def test_the_snapshot_age_check_judges_the_oldest_snapshot(
        workers: Workers, tmp_path: Path) -> None:
    import os

    from pipeline.ops.health import check_health

    now = dt.datetime.now(dt.UTC)
    stale = now.timestamp() - 7200
    os.utime(workers.worker_b, (stale, stale))
    pair = [workers.worker_a, workers.worker_b]
    missing: list[str | Path] = [workers.worker_a, tmp_path / "none.duckdb"]
    with connect_serving(tmp_path / "two.duckdb", pair) as con:
        both, fresh, gone = (
            next(c for c in check_health(con, now=now, snapshot_path=given).checks
                 if c.name == "snapshot_age")
            for given in (pair, workers.worker_a, missing))
    assert fresh.healthy and not both.healthy and workers.worker_b in both.message
    assert both.value is not None and both.value >= 7000
    assert not gone.healthy and "no landing snapshot" in gone.message


def test_flows_run_takes_one_snapshot_per_worker(
        workers: Workers, tmp_path: Path, prefect_harness: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    from flows.cli.main import main

    code = main(["flows", "run", "features", "--serving", str(tmp_path / "two.duckdb"),
                 "--snapshot", workers.worker_a, "--snapshot", workers.worker_b,
                 "--param", "days=3"])
    assert code == 0
    both = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["flows", "run", "features", "--serving", str(tmp_path / "one.duckdb"),
                 "--snapshot", workers.whole, "--param", "days=3"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == both
    assert both["rows"] > 0


def test_deployments_take_the_snapshot_list_and_export_cold_refuses_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.scheduled.config import load_flow_settings
    from flows.scheduled.deployments import flow_parameters

    monkeypatch.setenv("FLEETCARE_FLOWS__SNAPSHOT_PATH", '["a.duckdb", "b.duckdb"]')
    settings = load_flow_settings(export_dir="exports")
    assert flow_parameters("features", settings, "http://crm")["snapshot_path"] == [
        "a.duckdb", "b.duckdb"]
    with pytest.raises(ValueError, match="once per ingest worker"):
        flow_parameters("export_cold", settings, "http://crm")
    monkeypatch.setenv("FLEETCARE_FLOWS__SNAPSHOT_PATH", "one.duckdb")
    assert flow_parameters("health", load_flow_settings(), "http://crm")["snapshot_path"] == (
        "one.duckdb")

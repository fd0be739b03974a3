"""``fleetcare report``: hot spots per model and component, response times per centre."""

from __future__ import annotations

import base64
import datetime as dt
import struct
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from synth_fleet import START, Car, build_store, day

from pipeline.crm.inbound import Inbox, StatusUpdate
from pipeline.crm.outbox import deliver_outbox
from pipeline.leads.advice import advise
from pipeline.leads.appointments import iso
from pipeline.leads.lifecycle import apply_inbound
from pipeline.ops.report import write_report
from pipeline.sandbox.reference_crm import CrmReceiver
from pipeline.store.connection import connect
from tests.master_data import import_master_data

SECRET = "whsec_" + base64.b64encode(b"fleetcare-report-test-key").decode()
NOW = START + dt.timedelta(days=29, hours=18)


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """Three EVs north (two with brake leads), one ICE south (a brake lead); all delivered.

    The north centre acknowledges one lead after 2 h and finishes the other after 10 h; the
    south centre has not answered yet.
    """
    cars = [Car("ev-a"), Car("ev-b"), Car("ev-c"), Car("ice-a", ev=False, region="south")]
    store = build_store(tmp_path / "fleet.duckdb", cars, 30)
    import_master_data(store, start=day(29))
    store.execute("INSERT INTO model_registry (model_id, component, features, metrics,"
                  " artifact, promoted) VALUES ('m', 'brakes', [], '{\"threshold\": 0.5}',"
                  " ''::BLOB, true)")
    for vehicle in ("ev-a", "ev-b", "ice-a"):
        store.execute("INSERT INTO scores (vehicle_id, component, as_of, probability,"
                      " horizon_days, model_id) VALUES (?, 'brakes', ?, 0.9, 30, 'm')",
                      [vehicle, day(29)])
    advise(store, now=NOW)
    with CrmReceiver(SECRET) as crm:
        assert deliver_outbox(store, url=crm.url, secret=SECRET, now=NOW).delivered == 3
    leads = dict(store.execute("SELECT vehicle_id, lead_id FROM leads").fetchall())
    inbox = Inbox(tmp_path / "status.jsonl")
    for vehicle, state, hours in (("ev-a", "acknowledged", 2), ("ev-b", "done", 10)):
        at = iso(NOW + dt.timedelta(hours=hours))
        inbox.append(StatusUpdate(f"u-{vehicle}", leads[vehicle], state, at, {}))
    apply_inbound(store, inbox, now=NOW)
    return store


def test_report_tables_say_where_failures_cluster_and_who_answers(
    con: duckdb.DuckDBPyConnection, tmp_path: Path,
) -> None:
    report = write_report(con, tmp_path / "report")
    hot = {(r["model"], r["component"]): r for r in report.hotspots.iter_rows(named=True)}
    assert hot[("ICE-1", "brakes")]["per_100_vehicles"] == 100.0
    assert hot[("EV-1", "brakes")]["per_100_vehicles"] == pytest.approx(66.7)
    assert hot[("EV-1", "brakes")]["confirmed"] == 1
    times = {r["centre_id"]: r for r in report.response_times.iter_rows(named=True)}
    assert (times["centre-north"]["answered"], times["centre-north"]["median_hours"]) == (2, 6.0)
    assert (times["centre-south"]["answered"], times["centre-south"]["waiting"]) == (0, 1)
    page = report.html_path.read_text()
    assert "centre-north" in page and "ICE-1" in page
    for chart in ("hotspots.png", "response_times.png"):
        assert f"src='{chart}'" in page
        png = (report.html_path.parent / chart).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png[16:24])
        assert width > 100 and height > 100


def test_report_command_on_an_empty_store(db_path: Path, tmp_path: Path) -> None:
    connect(db_path).close()
    out = tmp_path / "empty-report"
    done = subprocess.run([sys.executable, "-m", "flows.cli", "report", "--db", str(db_path),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "No data yet" in (out / "report.html").read_text()
    assert str(out / "report.html") in done.stdout

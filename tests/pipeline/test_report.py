"""``fleetcare report``: the manager's KPIs per centre, today's call list, the page, the CLI.

The store is filled through the real doors (master data import, advice, delivery to the
reference CRM over HTTP, the CRM's status updates, the follow-up and reminder campaigns); the
story it tells is in ``report_store``'s docstring, so each expected figure can be checked by
hand.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from report_store import NORTH, SECRET, TODAY, build_report_store
from synth_fleet import add_dtc, add_repair_order

from edge.sim.masterdata import SimVehicle, write_master_data
from pipeline.crm.outbox import deliver_outbox
from pipeline.fleet import import_fleet
from pipeline.leads.advice import advise
from pipeline.leads.campaigns import visit_reminders
from pipeline.report import (
    CentreKpis,
    Median,
    Share,
    WrittenReport,
    resolve_period,
    write_report,
)
from pipeline.sandbox.reference_crm import CrmReceiver
from pipeline.store.connection import connect

LATER = dt.date(2025, 2, 10)
"""Every 3-day booking window of the story has closed by the end of this day."""


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The story's store, built once for the module and read by each test."""
    path = tmp_path_factory.mktemp("report") / "fleet.duckdb"
    build_report_store(path).close()
    return path


@pytest.fixture
def con(store_path: Path) -> duckdb.DuckDBPyConnection:
    """The story's store, read-only as the report opens it."""
    return duckdb.connect(str(store_path), read_only=True)


def report_on(con: duckdb.DuckDBPyConnection, out: Path, today: dt.date) -> WrittenReport:
    return write_report(con, out, resolve_period(today=today))


def centres(written: WrittenReport) -> dict[str, CentreKpis]:
    return {c.centre: c for c in written.report.centres}


def test_centre_kpis_follow_the_story(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    by_name = centres(report_on(con, tmp_path / "r", TODAY))
    north, south, total = (by_name["Fleetcare Service North"], by_name["Fleetcare Service South"],
                           by_name["All centres"])
    assert (north.leads_sent, north.small, south.leads_sent, south.small) == (5, False, 1, True)
    assert north.first_response_hours == Median(2.5, 4), "20 min, 2 h, 3 h, 20 h"
    assert (north.waiting_for_response, south.waiting_for_response) == (1, 1)
    assert south.first_response_hours == Median(None, 0)
    assert north.booked_within_3_days == Share(2, 2), "open windows (ev-a, ev-e) not judged"
    assert north.follow_ups_on_time == Share(1, 1)
    assert (north.critical_faults, north.critical_not_in_crm) == (1, 0)
    assert north.critical_minutes_to_crm == Median(5.0, 1)
    assert north.critical_answered_within_30_min == Share(1, 1)
    assert (total.leads_sent, total.customers, total.waiting_for_response) == (6, 6, 2)


def test_closed_booking_windows_count_as_misses(
    con: duckdb.DuckDBPyConnection, tmp_path: Path,
) -> None:
    by_name = centres(report_on(con, tmp_path / "r", LATER))
    assert by_name["Fleetcare Service North"].booked_within_3_days == Share(2, 4)
    assert by_name["Fleetcare Service South"].booked_within_3_days == Share(0, 1)
    assert by_name["All centres"].booked_within_3_days.percent == 40


def test_a_period_before_the_leads_has_none(
    con: duckdb.DuckDBPyConnection, tmp_path: Path,
) -> None:
    written = write_report(con, tmp_path / "r", resolve_period(
        today=TODAY, since=dt.date(2025, 1, 1), until=dt.date(2025, 1, 29)))
    assert all(c.leads_sent == 0 and c.critical_faults == 0 for c in written.report.centres)
    assert written.report.hotspots == ()
    assert written.charts == {"response": None, "hotspots": None}
    page = written.html_path.read_text()
    assert "No lead was issued in this period, so there are no failure hot spots" in page
    assert "<img" not in page


def test_hot_spots_carry_the_model_fleet_size(
    con: duckdb.DuckDBPyConnection, tmp_path: Path,
) -> None:
    spots = {(h.model, h.component): h for h in report_on(con, tmp_path / "r", TODAY)
             .report.hotspots}
    assert (spots[("EV-1", "brakes")].per_100_vehicles, spots[("EV-1", "brakes")].vehicles,
            spots[("EV-1", "brakes")].confirmed) == (80.0, 5, 1)
    assert (spots[("ICE-1", "brakes")].per_100_vehicles, spots[("ICE-1", "brakes")].small) == (
        100.0, True), "one ICE car: 100 per 100, marked small n"
    assert spots[("EV-1", "traction_battery")].critical == 1


def test_call_list_for_today(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    calls = report_on(con, tmp_path / "r", TODAY).report.calls
    names = dict(con.execute("SELECT v.vehicle_id, c.name FROM vehicles v JOIN customers c"
                             " USING (customer_id)").fetchall())
    got = [(c.centre, c.vehicle_id, c.customer, c.what, c.when) for c in calls.calls]
    assert got == [
        ("Fleetcare Service North", "ev-e", names["ev-e"],
         "First contact about the high-severity brakes advisory", "by 2025-02-01 19:05 CET"),
        ("Fleetcare Service North", "ev-b", names["ev-b"],
         "Follow-up call after the brakes repair on 2025-01-31", "from 2025-02-01 05:05 CET"),
        ("Fleetcare Service North", "ev-d", names["ev-d"],
         "Appointment today for the brakes: confirm it", "today"),
        ("Fleetcare Service South", "ice-a", names["ice-a"],
         "First contact about the high-severity brakes advisory", "by 2025-02-01 19:05 CET"),
    ]
    assert all(c.phone for c in calls.calls) and calls.held_left_out == 0
    later = [(c.vehicle_id, c.when) for c in report_on(con, tmp_path / "l", LATER)
             .report.calls.calls]
    assert later == [("ev-e", "overdue since 2025-02-01 19:05 CET"),
                     ("ice-a", "overdue since 2025-02-01 19:05 CET")]


def test_dormant_customers_and_wake_up_calls(store_path: Path, tmp_path: Path) -> None:
    """Ninety days on, the open advisories (ev-a, ev-c, ev-e, ice-a) have had no visit but a
    repair order for ev-e counts as one; the reminder campaign then re-sends them (it reads
    only visits that closed a lead, so it reminds ev-e too)."""
    path = tmp_path / "copy.duckdb"
    path.write_bytes(store_path.read_bytes())
    spring = dt.date(2025, 5, 1)
    with connect(path) as con:
        add_repair_order(con, "ev-e", "brakes", 100)
        before = report_on(con, tmp_path / "before", spring)
        with CrmReceiver(SECRET) as crm:
            at = dt.datetime(2025, 5, 1, 9, tzinfo=dt.UTC)
            assert visit_reminders(con, now=at).contacted == ("ev-a", "ev-c", "ev-e", "ice-a")
            deliver_outbox(con, url=crm.url, secret=SECRET, now=at)
        after = report_on(con, tmp_path / "after", spring)
    north = centres(before)["Fleetcare Service North"]
    assert (north.dormant_customers, north.dormant_reminded) == (2, 0)
    assert centres(after)["All centres"].dormant_customers == 3
    assert centres(after)["All centres"].dormant_reminded == 3
    wake = [(c.vehicle_id, c.when) for c in after.report.calls.calls
            if c.what.startswith("Wake-up call")]
    assert wake == [("ev-a", "today (reminder already sent)"),
                    ("ev-c", "today (reminder already sent)"),
                    ("ice-a", "today (reminder already sent)")]
    assert "ev-e" not in {c.vehicle_id for c in after.report.calls.calls
                          if c.what.startswith("Wake-up")}


def test_page_speaks_plainly_and_shows_every_n(
    con: duckdb.DuckDBPyConnection, tmp_path: Path,
) -> None:
    written = report_on(con, tmp_path / "r", TODAY)
    page = written.html_path.read_text()
    assert "Fleet report: 2025-01-03 to 2025-02-01 (30 days)" in page
    assert "Fleet: 6 vehicles, 6 customers, 3 service centres." in page
    assert "Fleetcare Service North" in page and "centre-north" not in page
    headers = re.findall(r"<th scope='col'>([^<]*)</th>", page)
    assert "First response, median hours" in headers and "Booked within 3 days" in headers
    assert not [h for h in headers if "_" in h], "no snake_case column names"
    percents = re.findall(r"\d+ %[^<]*", page)
    assert percents and all(re.match(r"\d+ % \(\d+ of \d+\)", p) for p in percents)
    south = re.search(r"<tr class='small-n'><td>Fleetcare Service South</td>.*?</tr>", page)
    assert south and "small n" in south.group(0)
    assert "<h3>Fleetcare Service North: 3 call(s)</h3>" in page
    for chart in ("hotspots.png", "response_times.png"):
        assert f"src='{chart}'" in page
        png = (written.html_path.parent / chart).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png[16:24])
        assert width > 100 and height > 100


def fleetcare(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_report_command_on_an_empty_store(db_path: Path, tmp_path: Path) -> None:
    connect(db_path).close()
    out = tmp_path / "empty-report"
    (out).mkdir()
    (out / "hotspots.png").write_bytes(b"stale")
    done = fleetcare("report", "--db", str(db_path), "--out", str(out), "--today", "2025-02-01")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out / "report.html")
    page = (out / "report.html").read_text()
    assert "No calls are due today." in page
    assert "no response times to chart" in page and "no failure hot spots to chart" in page
    assert "<img" not in page and not (out / "hotspots.png").exists(), "no empty chart"


def test_report_command_json_prints_the_page_figures(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    done = fleetcare("report", "--db", str(store_path), "--out", str(out), "--today",
                     TODAY.isoformat(), "--period-days", "7", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["html_path"] == str(out / "report.html")
    assert (data["period"]["since"], data["period"]["until"], data["period"]["days"]) == (
        "2025-01-26", "2025-02-01", 7)
    assert data["fleet"] == {"vehicles": 6, "customers": 6, "centres": 3}
    north = next(c for c in data["centres"] if c["centre_id"] == "centre-north")
    assert north["booked_within_3_days"] == {"hits": 2, "n": 2, "percent": 100, "small": True}
    assert north["leads_sent"] == len(NORTH) and north["small"] is False
    assert [c["vehicle_id"] for c in data["calls"]["calls"]] == ["ev-e", "ev-b", "ev-d", "ice-a"]
    assert data["small_n"] == 5


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "2025-02-02", "--until", "2025-02-01"],
     "--since 2025-02-02 is after --until 2025-02-01"),
    (["--period-days", "0"], "--period-days must be 1 or more, not 0"),
    (["--today", "1 Feb"], "'1 Feb' is not a date: write YYYY-MM-DD"),
    (["--since", "2025-01-01", "--period-days", "3"], "not allowed with argument"),
], ids=["since-after-until", "zero-days", "not-a-date", "since-and-days"])
def test_report_command_refuses_bad_periods(store_path: Path, tmp_path: Path,
                                            args: list[str], message: str) -> None:
    out = tmp_path / "r"
    done = fleetcare("report", "--db", str(store_path), "--out", str(out), *args)
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not out.exists(), "nothing written"


def copy_of(store_path: Path, tmp_path: Path) -> Path:
    """A private copy of the story's store, for a test that adds to it."""
    path = tmp_path / "copy.duckdb"
    path.write_bytes(store_path.read_bytes())
    return path


def test_a_critical_fault_not_in_the_crm_tops_the_call_list(
    store_path: Path, tmp_path: Path,
) -> None:
    """ev-e reports an isolation fault on 31 January; ingest's urgent advice (that vehicle,
    critical only) issues a lead, but the CRM is down, so it waits in the outbox."""
    with connect(copy_of(store_path, tmp_path)) as con:
        add_dtc(con, "ev-e", 30, "P0AA6")
        assert advise(con, now=dt.datetime(2025, 1, 31, 13, tzinfo=dt.UTC), vehicles=["ev-e"],
                      min_severity="critical").new == 1
        written = report_on(con, tmp_path / "r", TODAY)
    north = centres(written)["Fleetcare Service North"]
    assert (north.critical_faults, north.critical_not_in_crm) == (2, 1)
    assert north.critical_minutes_to_crm == Median(5.0, 1), "only the delivered one timed"
    first = written.report.calls.calls[0]
    assert (first.vehicle_id, first.what, first.when) == (
        "ev-e", "Critical high-voltage battery fault: arrange roadside assistance"
        " (not in the CRM yet)", "now (reported 2025-01-31 14:00 CET)")
    assert "2, 1 not in the CRM yet" in written.html_path.read_text()


def test_held_customers_are_left_off_the_call_list(store_path: Path, tmp_path: Path) -> None:
    """The DMS now says ice-a's customer withdrew consent: nobody may call them."""
    with connect(copy_of(store_path, tmp_path)) as con:
        (customer,) = con.execute(
            "SELECT customer_id FROM vehicles WHERE vehicle_id = 'ice-a'").fetchone() or ()
        exported = write_master_data(tmp_path / "dms", [SimVehicle(str(v), str(m), str(r))
                                     for v, m, r in con.execute(
                                         "SELECT vehicle_id, model, region FROM vehicles"
                                         " ORDER BY vehicle_id").fetchall()], seed=0, start=TODAY)
        customers = exported["customers"]
        with customers.open(newline="", encoding="utf-8") as f:
            table = list(csv.DictReader(f))
        for row in table:
            if row["customer_id"] == customer:
                row["contact_consent"] = "false"
        with customers.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
        import_fleet(con, {"customers": customers})
        written = report_on(con, tmp_path / "r", TODAY)
    assert "ice-a" not in {c.vehicle_id for c in written.report.calls.calls}
    assert written.report.calls.held_left_out == 1
    assert "1 call(s) left out" in written.html_path.read_text()


def test_report_command_refuses_a_missing_store(tmp_path: Path) -> None:
    out = tmp_path / "r"
    done = fleetcare("report", "--db", str(tmp_path / "nowhere.duckdb"), "--out", str(out))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"fleetcare report: error: cannot open DuckDB file {tmp_path}")
    assert "does not exist" in line
    assert not out.exists() and not (tmp_path / "nowhere.duckdb").exists()

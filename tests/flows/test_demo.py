"""``make demo``'s orchestration on a small fleet: the report says what happened, truthfully,
the files it names exist, and its next steps run as printed in a fresh shell.

One small demo run serves every test in this module (the demo is the slowest thing here).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import duckdb
import pytest

from flows.demo.options import DemoOptions
from flows.demo.run import DemoReport, format_report, run_demo
from models.warnings import EVENT_KEYS

# The first test pays for the one demo run in its set-up: more than the default 300 s.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory,
               prefect_harness: None) -> tuple[DemoReport, list[str], Path]:
    """One demo run of six vehicles for 45 days (12 V labels need 30 days past a day, the
    60-day parts' 60, and no part fails in its first 30): its report, log lines and output
    folder."""
    out = tmp_path_factory.mktemp("demo") / "out"
    options = DemoOptions(output_dir=out, vehicles=6, days=45, seed=1, snapshot_s=0.2,
                          progress=False)
    lines: list[str] = []
    report = run_demo(options, log=lines.append)
    return report, lines, out


def test_small_demo_reports_what_landed(small_demo: tuple[DemoReport, list[str], Path]) -> None:
    report, lines, out = small_demo
    assert report.fleet["vehicles"] == 6 and report.fleet["days"] == 45
    assert report.ingest["telemetry_rows"] == report.fleet["signals_spooled"] > 0
    with duckdb.connect(report.db_path, read_only=True) as con:
        landed = con.execute("SELECT count(*) FROM telemetry").fetchone()
        sent = con.execute("SELECT count(*) FROM outbox WHERE status = 'delivered'").fetchone()
        orders = con.execute("SELECT count(*) FROM repair_orders").fetchall()
        scored = con.execute("SELECT count(*) FROM scores").fetchone()
    assert landed is not None and landed[0] == report.fleet["signals_spooled"]
    csv_rows = (out / "master-data" / "repair_orders.csv").read_text().splitlines()
    assert orders == [(len(csv_rows) - 1,)] == [(report.repair_orders["inserted"],)]
    assert any(line.startswith("repair orders imported from ") for line in lines)
    assert sent is not None and sent[0] == report.crm_received and scored is not None
    assert sum(report.leads_by_component.values()) == report.crm_received
    text = format_report(report)
    assert f"{report.fleet['signals_spooled']:,} published" in text
    assert "where to look next" in text
    scoring = report.flow["scoring"]
    assert scoring["rows"] == sum(c["scored"] for c in scoring["components"]) == scored[0]
    assert ("  scores      vehicles scored: " in text) == bool(scoring["components"])
    assert any(line.startswith("broker: ") for line in lines)


def test_six_vehicles_hold_too_few_failures_to_promote_a_model(
        small_demo: tuple[DemoReport, list[str], Path]) -> None:
    report, _, _ = small_demo
    text = format_report(report)
    models = report.flow["models"]
    assert {m["component"] for m in models} == {"traction_battery", "lv_battery", "brakes"}
    for model in models:
        line = next(ln for ln in text.splitlines()
                    if ln.startswith(f"  model       {model['component']}: "))
        if model["model_id"] is None:
            assert "skipped" in line
            continue
        assert list(model["events"]) == list(EVENT_KEYS)
        assert model["events"]["failures"] < 5 and not model["promoted"]
        assert "registered, not promoted" in line
    assert report.flow["scoring"]["rows"] == 0  # no promoted model scores anybody


def test_demo_leaves_the_report_the_leads_and_what_the_crm_received(
        small_demo: tuple[DemoReport, list[str], Path]) -> None:
    report, _, out = small_demo
    assert report.files is not None
    html = (out / "report.html").read_text(encoding="utf-8")
    assert report.files.report_html == out / "report.html" and "<html" in html.lower()
    leads = json.loads((out / "leads.json").read_text(encoding="utf-8"))
    received = json.loads((out / "crm-received.json").read_text(encoding="utf-8"))
    assert len(leads) == sum(report.leads_by_component.values())
    assert all(lead["document"]["lead_id"] == lead["lead_id"] for lead in leads)
    assert len(received) == report.crm_received
    sent_ids = {lead["lead_id"] for lead in leads if lead["state"] != "held"}
    assert {doc["lead_id"] for doc in received} <= sent_ids
    text = format_report(report)
    for path in (out / "report.html", out / "leads.json", out / "crm-received.json"):
        assert f"  {path}   " in text
    assert not list(out.glob("*.partial"))


def _next_step_commands(text: str) -> list[str]:
    """The command lines under "where to look next" (the indented lines that start with a
    path to an executable, not the prose after them)."""
    section = text.split("where to look next", 1)[1].splitlines()[1:]
    return [line.strip() for line in section
            if line.startswith("  ") and "/" in line.split()[0]
            and os.access(Path(line.split()[0]), os.X_OK)]


def test_next_steps_run_in_a_fresh_shell(small_demo: tuple[DemoReport, list[str], Path],
                                         tmp_path: Path) -> None:
    report, _, _ = small_demo
    commands = _next_step_commands(format_report(report))
    assert len(commands) >= 4, commands
    # A fresh shell: nothing activated, no fleetcare or Prefect settings, only the system PATH.
    fresh = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    for command in commands:
        assert not command.startswith("fleetcare "), command
        done = subprocess.run(["bash", "-c", command], env=fresh, cwd=Path.cwd(),
                              capture_output=True, text=True)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        assert done.stdout.strip(), command
        assert "Traceback" not in done.stderr, command
    leads_list = next(c for c in commands if shlex.split(c)[1:3] == ["leads", "list"])
    listed = subprocess.run(["bash", "-c", leads_list], env=fresh, cwd=Path.cwd(),
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(listed) - 1 == sum(report.leads_by_component.values())

"""``make demo``'s orchestration on a small fleet: the report says what happened, truthfully."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from flows.demo.options import DemoOptions
from flows.demo.run import format_report, run_demo


@pytest.mark.e2e
@pytest.mark.slow
def test_small_demo_reports_what_landed(tmp_path: Path, prefect_harness: None) -> None:
    options = DemoOptions(output_dir=tmp_path / "out", vehicles=6, days=30, seed=1,
                          snapshot_s=0.2, progress=False)
    lines: list[str] = []
    report = run_demo(options, log=lines.append)

    assert report.fleet["vehicles"] == 6 and report.fleet["days"] == 30
    assert report.ingest["telemetry_rows"] == report.fleet["signals_spooled"] > 0
    with duckdb.connect(report.db_path, read_only=True) as con:
        landed = con.execute("SELECT count(*) FROM telemetry").fetchone()
        sent = con.execute("SELECT count(*) FROM outbox WHERE status = 'delivered'").fetchone()
        orders = con.execute("SELECT count(*) FROM repair_orders").fetchall()
        scored = con.execute("SELECT count(*) FROM scores").fetchone()
    assert landed is not None and landed[0] == report.fleet["signals_spooled"]
    csv_rows = (tmp_path / "out" / "master-data" / "repair_orders.csv").read_text().splitlines()
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

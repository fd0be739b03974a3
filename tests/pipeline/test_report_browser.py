"""The manager's report as a browser shows it: loaded from disk in headless Chromium.

A page that is valid on disk can still show a broken image or log an error in the browser;
these tests load ``report.html`` as a manager would open it (a file, no server) and look.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest
from report_store import TODAY, build_report_store

from pipeline.report import resolve_period, write_report
from pipeline.store.connection import connect
from tests.browser import Browser, artifact_path, needs_chromium

pytestmark = [pytest.mark.browser, needs_chromium]


def test_full_report_shows_charts_tables_and_calls(tmp_path: Path) -> None:
    store = build_report_store(tmp_path / "fleet.duckdb")
    store.close()
    with duckdb.connect(str(tmp_path / "fleet.duckdb"), read_only=True) as con:
        written = write_report(con, tmp_path / "report", resolve_period(today=TODAY))
    with Browser() as browser:
        page = browser.open(written.html_path)
        assert page.console_errors == ()
        assert page.failed_requests == ()
        widths = page.evaluate("Array.from(document.images, i => i.naturalWidth)")
        assert len(widths) == 2 and all(w > 100 for w in widths), "both charts drawn"
        assert page.count("figure p.no-data") == 0
        assert page.texts("h3") == ["Fleetcare Service North: 3 call(s)",
                                    "Fleetcare Service South: 1 call(s)"]
        north = page.text("table.centres tbody tr:nth-child(2)")
        assert north.startswith("Fleetcare Service North") and "2.5 h (n = 4)" in north
        page.screenshot(artifact_path("report-full.png"))


def test_empty_report_says_so_in_words(tmp_path: Path) -> None:
    connect(tmp_path / "fleet.duckdb").close()
    with duckdb.connect(str(tmp_path / "fleet.duckdb"), read_only=True) as con:
        written = write_report(con, tmp_path / "report",
                               resolve_period(today=dt.date(2025, 2, 1)))
    with Browser() as browser:
        page = browser.open(written.html_path)
        assert page.console_errors == () and page.failed_requests == ()
        assert page.count("img") == 0
        sentences = page.texts("figure p.no-data")
        assert len(sentences) == 2
        assert all("so there are no" in s for s in sentences)
        assert "No calls are due today." in page.text()
        page.screenshot(artifact_path("report-empty.png"))

"""The headless-Chromium helper reports what a page's visitor would see go wrong."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.browser import Browser, artifact_path, needs_chromium

pytestmark = [pytest.mark.browser, needs_chromium]

_CLEAN = """<!doctype html><html><head><meta charset="utf-8"><title>clean</title>
<link rel="icon" href="data:,"></head><body><h1>Pads</h1>
<svg width="40" height="20"><rect width="40" height="20"/></svg>
<svg width="40" height="20"><circle cx="10" cy="10" r="5"/></svg></body></html>"""

_BROKEN = """<!doctype html><html><head><meta charset="utf-8"><title>broken</title>
<link rel="icon" href="data:,"></head><body><p>x</p>
<img src="missing-picture.png">
<script>console.error("drawn badly"); undefinedFunction();</script></body></html>"""


def test_a_clean_page_has_no_errors_and_its_dom_can_be_queried(tmp_path: Path) -> None:
    page_file = tmp_path / "clean.html"
    page_file.write_text(_CLEAN)
    with Browser() as browser:
        page = browser.open(page_file)
        assert page.console_errors == ()
        assert page.failed_requests == ()
        assert page.count("svg") == 2
        assert page.text("h1") == "Pads"
        assert page.texts("title") == ["clean"]
        shot = page.screenshot(tmp_path / "shots" / "clean.png")
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert width == 1280 and height > 0


def test_console_errors_exceptions_and_missing_files_are_reported(tmp_path: Path) -> None:
    page_file = tmp_path / "broken.html"
    page_file.write_text(_BROKEN)
    with Browser() as browser:
        page = browser.open(page_file)
        errors = " | ".join(page.console_errors)
        assert "drawn badly" in errors
        assert "undefinedFunction" in errors
        assert any(r.url.endswith("missing-picture.png") for r in page.failed_requests)


def test_artifacts_go_where_the_environment_says(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETCARE_TEST_ARTIFACTS", str(tmp_path / "kept"))
    assert artifact_path("x.png") == tmp_path / "kept" / "x.png"
    assert (tmp_path / "kept").is_dir()

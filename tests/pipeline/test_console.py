"""``fleetcare console``: the evidence pages, served by the real command over a real store.

The store is built by advice itself (synthetic telemetry, imported master data, scores with
explanations, :func:`pipeline.leads.advise`); the console runs as its own process and is
asked over HTTP, and its pages are loaded in headless Chromium.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import httpx
import pytest
from synth_fleet import START, Car, add_dtc, build_store, day, register_stand_in_models

from pipeline.features.materialised import DayRange, materialise_daily_features
from pipeline.leads.advice import advise
from pipeline.store.connection import connect
from tests.browser import Browser, artifact_path, needs_chromium
from tests.master_data import import_master_data
from tests.polling import wait_until
from tests.processes import cli, cli_env, holding_store

NOW = START + dt.timedelta(days=29, hours=18)
HOSTILE_NAME = '<script>alert("owned")</script> Müller & Söhne'
EXPLANATION = [{"feature": "pad_wear_fl", "value": 93.2, "contribution": 2.4},
               {"feature": "distance_km", "value": 61.0, "contribution": 0.3}]


def _build(path: Path) -> dict[str, str]:
    """A store with a brake lead (model reasons, a slot) on an EV with a fault-code history,
    and a 12 V lead on a combustion car; returns lead ids by vehicle."""
    cars = [Car("ev-worn", fails={"brakes": 35}), Car("ice-weak", ev=False,
                                                        fails={"lv_battery": 40})]
    con = build_store(path, cars, 30)
    import_master_data(con, start=day(29))
    register_stand_in_models(con)
    for vehicle, comp in (("ev-worn", "brakes"), ("ice-weak", "lv_battery")):
        con.execute("INSERT INTO scores (vehicle_id, component, as_of, probability,"
                    " horizon_days, model_id, explanation) VALUES (?, ?, ?, 0.9, 30, ?, ?)",
                    [vehicle, comp, day(29), f"m-{comp}", json.dumps(EXPLANATION)])
    add_dtc(con, "ev-worn", 12, "U0100")
    add_dtc(con, "ev-worn", 14, "U0100", cleared=True)
    con.execute("UPDATE customers SET name = ? WHERE customer_id ="
                " (SELECT customer_id FROM vehicles WHERE vehicle_id = 'ev-worn')",
                [HOSTILE_NAME])
    assert advise(con, now=NOW).new == 2
    leads = dict(con.execute("SELECT vehicle_id, lead_id FROM leads").fetchall())
    con.close()
    return leads


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("console") / "fleet.duckdb"
    return path, _build(path)


def _start(db: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """``fleetcare console`` on a free port; its process and base URL once it answers."""
    process = subprocess.Popen(cli("console", "--db", str(db), "--port", "0", *extra),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=cli_env())
    assert process.stdout is not None
    first = process.stdout.readline()
    assert first.startswith("fleetcare console: serving http://"), (
        first, process.stderr.read() if process.stderr else "")
    base = first.split()[3].rstrip("/")

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False
    assert wait_until(healthy), f"{base}/healthz never answered 200"
    return process, base


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, as a service manager stops it: a clean exit 0, saying so."""
    process.terminate()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert err.strip().splitlines()[-1] == "fleetcare console: stopped"


@pytest.fixture(scope="module")
def console(store: tuple[Path, dict[str, str]]) -> Iterator[str]:
    process, base = _start(store[0])
    try:
        yield base
    finally:
        _stop(process)


def _get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=60)


def test_the_index_lists_each_lead_with_links_to_its_pages(
        console: str, store: tuple[Path, dict[str, str]]) -> None:
    _, leads = store
    page = _get(f"{console}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for vehicle, lead_id in leads.items():
        assert f'href="./leads/{lead_id}"' in page.text
        assert f'href="./vehicles/{vehicle}"' in page.text
    assert _get(f"{console}/healthz").json()["status"] == "ok"


def test_a_lead_page_gives_reasons_in_words_the_slot_and_escapes_names(
        console: str, store: tuple[Path, dict[str, str]]) -> None:
    _, leads = store
    page = _get(f"{console}/leads/{leads['ev-worn']}")
    assert page.status_code == 200
    text = page.text
    assert "front-left pad wear" in text and "strongly raises the risk" in text
    assert "2.4" not in text.split("Why the model raised it")[1].split("</section>")[0], (
        "the reasons are words, not raw contributions")
    assert "Proposed slot" in text and "none proposed" not in text
    assert 'href="../vehicles/ev-worn"' in text and 'href="../"' in text, (
        "links are relative: they work behind a proxy that adds a path prefix")
    assert "<script>" not in text
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt; Müller &amp; Söhne" in text


def test_the_lead_json_links_to_its_page(console: str,
                                         store: tuple[Path, dict[str, str]]) -> None:
    path, leads = store
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute("SELECT document FROM leads WHERE lead_id = ?",
                          [leads["ice-weak"]]).fetchone()
    assert row is not None
    document = json.loads(row[0])
    url = urlsplit(document["evidence_url"])
    assert url.path == f"/leads/{leads['ice-weak']}"
    assert _get(f"{console}{url.path}").status_code == 200


@pytest.mark.parametrize("path", ["/leads/no-such-lead", "/vehicles/no-such-vehicle",
                                  "/no/such/page"], ids=["lead", "vehicle", "path"])
def test_unknown_pages_are_404_pages(console: str, path: str) -> None:
    page = _get(f"{console}{path}")
    assert page.status_code == 404
    assert "Not found" in page.text and page.headers["content-type"].startswith("text/html")


def test_a_store_held_by_a_writer_is_a_503_page_until_released(
        tmp_path: Path, store: tuple[Path, dict[str, str]]) -> None:
    copy = tmp_path / "held.duckdb"
    copy.write_bytes(store[0].read_bytes())
    process, base = _start(copy)
    try:
        with holding_store(copy):
            busy = _get(f"{base}/leads/{store[1]['ev-worn']}")
            assert busy.status_code == 503
            assert busy.headers["retry-after"] == "2"
            assert "cannot be read right now" in busy.text
        assert _get(f"{base}/leads/{store[1]['ev-worn']}").status_code == 200
    finally:
        _stop(process)


def test_a_serving_store_draws_from_daily_features_and_the_leads_fault_codes(
        tmp_path: Path, store: tuple[Path, dict[str, str]]) -> None:
    """A serving store has materialised features and leads but no telemetry or fault-code
    reports of its own (they stay in the landing store)."""
    serving = tmp_path / "serving.duckdb"
    serving.write_bytes(store[0].read_bytes())
    con = connect(serving)
    materialise_daily_features(con, DayRange(day(0), day(29)))
    add_dtc(con, "ev-worn", 29, "P0AA6")
    assert advise(con, now=NOW).new == 1
    con.execute("DELETE FROM telemetry")
    con.execute("DELETE FROM dtc_events")
    con.close()
    process, base = _start(serving)
    try:
        page = _get(f"{base}/vehicles/ev-worn")
    finally:
        _stop(process)
    assert page.status_code == 200
    pads = page.text.split('data-chart="pad_wear"')[1].split("</figure>")[0]
    assert pads.count('class="series"') == 4
    timeline = page.text.split('data-chart="fault_codes"')[1].split("</figure>")[0]
    assert ">P0AA6<" in timeline and timeline.count('class="event"') == 1


def test_a_missing_store_is_one_line_and_exit_1(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.duckdb"
    done = subprocess.run(cli("console", "--db", str(missing), "--port", "0"),
                          capture_output=True, text=True, env=cli_env(), timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"fleetcare console: error: no store at {missing}: give the serving or one-file "
        "store with --db"]
    assert not missing.exists()


def test_a_busy_port_is_one_line_and_exit_1(store: tuple[Path, dict[str, str]]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(cli("console", "--db", str(store[0]), "--port", str(port)),
                              capture_output=True, text=True, env=cli_env(), timeout=120)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert f"port {port} on 127.0.0.1 is already in use" in line


def test_help_shows_each_default() -> None:
    done = subprocess.run(cli("console", "--help"), capture_output=True, text=True,
                          env=cli_env(), check=True)
    flat = " ".join(done.stdout.split())
    for shown in ("(default: 127.0.0.1", "(default: 8765",
                  "(default: $FLEETCARE_PIPELINE__DB_PATH"):
        assert shown in flat


@pytest.mark.browser
@needs_chromium
def test_pages_load_in_chromium_with_their_charts_and_no_errors(
        console: str, store: tuple[Path, dict[str, str]]) -> None:
    _, leads = store
    with Browser() as browser:
        lead = browser.open(f"{console}/leads/{leads['ev-worn']}")
        assert lead.console_errors == ()
        assert lead.failed_requests == ()
        assert lead.status == 200
        charts = lead.evaluate(
            "Array.from(document.querySelectorAll('figure.chart'), f => [f.dataset.chart,"
            " f.querySelectorAll('svg polyline, svg circle').length])")
        assert [name for name, _ in charts] == ["soh", "pad_wear", "cranking", "fault_codes"]
        assert all(marks > 0 for _, marks in charts), charts
        assert lead.count("figure[data-chart=pad_wear] polyline.series") == 4
        assert lead.count("figure[data-chart=fault_codes] circle.event") == 2
        assert HOSTILE_NAME in lead.text("table")
        assert lead.evaluate("document.querySelector('nav a').href") == f"{console}/"
        lead.screenshot(artifact_path("console-lead.png"))

        vehicle = browser.open(f"{console}/vehicles/ice-weak")
        assert vehicle.console_errors == ()
        assert vehicle.count("figure.chart") == 4
        assert "No high-voltage battery health reported" in vehicle.text(
            "figure[data-chart=soh]")
        assert vehicle.count("figure[data-chart=cranking] circle.point") > 0
        vehicle.screenshot(artifact_path("console-vehicle.png"))
    assert artifact_path("console-lead.png").stat().st_size > 0

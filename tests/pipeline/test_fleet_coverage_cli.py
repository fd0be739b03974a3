"""``fleetcare fleet coverage`` as a process, on the one-file store and on the serving store
(the fleet: :mod:`coverage_fleet`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from coverage_fleet import LABELS, LAST, REAR_PADS, build_coverage_store

from pipeline.features.inputs import AIR_TEMP, LV_VOLTAGE, SOH, component_inputs
from pipeline.store.serving import connect_serving

FLEETCARE = str(Path(sys.executable).with_name("fleetcare"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_coverage_store(tmp_path_factory.mktemp("coverage-cli") / "fleet.duckdb")


def _fleetcare(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLEETCARE, "fleet", "coverage", *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_fleet_coverage_command_prints_text_and_json(store: Path) -> None:
    text = _fleetcare("--db", store)
    assert text.returncode == 0, text.stderr
    lines = {line.split("\t")[0]: line.split("\t") for line in text.stdout.splitlines()}
    assert lines["ice"][2] == "brakes, lv_battery"
    assert lines["ice"][3].startswith("traction_battery (") and SOH in lines["ice"][3]
    assert lines["norear"][3] == f"brakes ({', '.join(REAR_PADS)})"
    assert AIR_TEMP in lines["noair"][4] and lines["noair"][3] == "-"
    assert "can score: brakes 9/11, lv_battery 8/11, traction_battery 8/11" in text.stdout
    out = _fleetcare("--db", store, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["as_of"] == LAST.isoformat() and doc["window_days"] == 90
    assert {m["component"]: m["required_signals"] for m in doc["models"]} == {
        c: list(component_inputs(c).required) for c in LABELS}
    nolv = next(v for v in doc["vehicles"] if v["vehicle_id"] == "nolv")
    assert nolv["can_score"] == ["brakes", "traction_battery"]
    assert [m["missing_required"] for m in nolv["models"] if not m["can_score"]] == [[LV_VOLTAGE]]


def test_fleet_coverage_reads_the_serving_store_through_the_snapshot(store: Path,
                                                                     tmp_path: Path) -> None:
    serving = tmp_path / "serving.duckdb"
    with connect_serving(serving, store) as con:
        con.execute("INSERT INTO model_registry SELECT * FROM landing.model_registry")
    through = _fleetcare("--db", serving, "--snapshot", store, "--json")
    assert through.returncode == 0, through.stderr
    direct = json.loads(_fleetcare("--db", store, "--json").stdout)
    assert json.loads(through.stdout) == direct
    alone = _fleetcare("--db", serving)
    assert alone.returncode == 0
    assert "holds no telemetry" in alone.stderr and "--snapshot" in alone.stderr
    missing = _fleetcare("--db", serving, "--snapshot", tmp_path / "nope.duckdb")
    assert missing.returncode == 1 and "no landing snapshot" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_the_help_states_the_scoring_window_scoring_uses() -> None:
    from pipeline.ml.coverage import WINDOW_DAYS

    out = _fleetcare("--help")
    assert out.returncode == 0
    assert f"in the {WINDOW_DAYS} days up to the day scored" in " ".join(out.stdout.split())


def test_as_of_moves_the_window_and_export_dir_needs_a_snapshot(store: Path,
                                                                 tmp_path: Path) -> None:
    early = _fleetcare("--db", store, "--as-of", "2025-02-20", "--json")
    assert early.returncode == 0, early.stderr
    doc = json.loads(early.stdout)
    assert doc["as_of"] == "2025-02-20"
    oldcrank = next(v for v in doc["vehicles"] if v["vehicle_id"] == "oldcrank")
    assert "lv_battery" in oldcrank["can_score"]  # its cranking readings are in that window
    lone = _fleetcare("--db", store, "--export-dir", tmp_path)
    assert lone.returncode == 2 and "--export-dir needs --snapshot" in lone.stderr
    bad = _fleetcare("--db", store, "--as-of", "yesterday")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr

"""Models score only the vehicles that send the signals they require; coverage says who lacks
what (the fleet: :mod:`coverage_fleet`)."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest
from coverage_fleet import LABELS, LAST, N_DAYS, REAR_PADS, TRACTION, build_coverage_store, fleet
from synth_fleet import START, day

from pipeline.features.daily import build_daily_features, model_features
from pipeline.features.inputs import (
    AIR_TEMP,
    CRANK_DIP,
    LV_VOLTAGE,
    alternatives,
    component_inputs,
)
from pipeline.leads.advice import advise
from pipeline.ml import registry
from pipeline.ml.coverage import fleet_coverage, scoring_window, signals_seen, vehicle_coverage
from pipeline.ml.partitions import partition_scores, promoted_models
from pipeline.ml.scoring import ScoringReport, SkippedVehicles, merge_reports, score_fleet
from pipeline.store.connection import connect


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_coverage_store(tmp_path_factory.mktemp("coverage") / "fleet.duckdb")


@pytest.fixture
def con(store: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with connect(store) as c:
        yield c


def _by_component(report: ScoringReport) -> dict[str, tuple[int, tuple[SkippedVehicles, ...]]]:
    return {c.component: (c.scored, c.skipped) for c in report.components}


def test_scoring_skips_and_reports_vehicles_without_required_signals(
    con: duckdb.DuckDBPyConnection,
) -> None:
    report = score_fleet(con, as_of=LAST)
    assert _by_component(report) == {
        "brakes": (9, (SkippedVehicles(REAR_PADS, ("norear",)),)),
        "lv_battery": (8, (SkippedVehicles((LV_VOLTAGE,), ("nolv", "oldcrank")),)),
        "traction_battery": (8, (SkippedVehicles(TRACTION, ("ice", "ice2")),)),
    }
    rows = set(con.execute("SELECT vehicle_id, component FROM scores WHERE as_of = ?",
                           [LAST]).fetchall())
    assert report.rows == len(rows) == 25
    assert not {("norear", "brakes"), ("nolv", "lv_battery"), ("oldcrank", "lv_battery"),
                ("ice", "traction_battery")} & rows
    assert {("norear", "lv_battery"), ("nolv", "brakes"), ("noair", "lv_battery"),
            ("nocrank", "lv_battery")} <= rows


def test_scoring_in_chunks_of_two_vehicles_skips_and_scores_what_one_chunk_does(
    con: duckdb.DuckDBPyConnection,
) -> None:
    whole = score_fleet(con, as_of=LAST)
    whole_rows = con.execute("SELECT vehicle_id, component, probability FROM scores"
                             " WHERE as_of = ? ORDER BY ALL", [LAST]).fetchall()
    chunked = score_fleet(con, as_of=LAST, chunk_vehicles=2)
    assert _by_component(chunked) == _by_component(whole)
    assert con.execute("SELECT vehicle_id, component, probability FROM scores"
                       " WHERE as_of = ? ORDER BY ALL", [LAST]).fetchall() == whole_rows


def test_signals_seen_of_a_vehicle_range_is_the_fleets_rows_in_that_range(
    con: duckdb.DuckDBPyConnection,
) -> None:
    since, until = scoring_window(LAST)
    signals = [LV_VOLTAGE, CRANK_DIP, *TRACTION]
    fleet_rows = signals_seen(con, since, until, signals)
    ids = sorted(fleet_rows["vehicle_id"].unique())
    first, last = ids[1], ids[-2]
    chunk = signals_seen(con, since, until, signals, (first, last))
    expected = fleet_rows.filter(pl.col("vehicle_id").is_between(pl.lit(first), pl.lit(last)))
    assert 0 < chunk.height < fleet_rows.height
    assert chunk.sort(pl.all()).equals(expected.sort(pl.all()))


def test_the_window_decides_a_signal_that_stopped_long_ago_counts_while_it_is_in_it(
    con: duckdb.DuckDBPyConnection,
) -> None:
    lv = {c.component: c for c in score_fleet(con, as_of=day(50)).components}["lv_battery"]
    assert lv.skipped == (SkippedVehicles((LV_VOLTAGE,), ("nolv",)),)
    assert [m.can_score for m in vehicle_coverage(con, "oldcrank", as_of=day(50)).models
            if m.component == "lv_battery"] == [True]


def test_advice_raises_no_score_lead_for_a_skipped_vehicle(con: duckdb.DuckDBPyConnection) -> None:
    score_fleet(con, as_of=LAST)
    advise(con, now=START + dt.timedelta(days=N_DAYS - 1, hours=20))
    leads = set(con.execute("SELECT vehicle_id, component FROM leads").fetchall())
    assert ("brk", "brakes") in leads  # the same wear, sensed on all four wheels
    assert ("norear", "brakes") not in leads
    # scored from its front pads with the rear ones imputed, it would have had a lead too
    names = model_features("brakes")
    latest = build_daily_features(con).filter(pl.col("vehicle_id") == "norear").tail(1)
    model = registry.load_artifact(con, "m-brakes")
    assert model.predict_proba(latest.select(pl.col(names).cast(pl.Float64)))[0, 1] >= float(
        model.threshold_)


def test_partitions_report_what_the_whole_fleet_reports(store: Path,
                                                        con: duckdb.DuckDBPyConnection) -> None:
    whole = score_fleet(con, as_of=LAST)
    models = promoted_models(con)
    con.close()
    parts = [partition_scores(store, vehicles, LAST, models)
             for vehicles in (["full", "ice", "nolv", "norear"],
                              ["brk", "full2", "ice2", "noair", "oldcrank", "nocrank"])]
    assert sum(frame.height for frame, _ in parts) == whole.rows
    assert merge_reports(r for _, r in parts) == whole


def test_coverage_lists_each_vehicles_models_and_missing_signals(
    con: duckdb.DuckDBPyConnection,
) -> None:
    cov = fleet_coverage(con)
    assert cov.as_of == LAST
    by_vehicle = {v.vehicle_id: v for v in cov.vehicles}
    assert sorted(by_vehicle) == sorted([c.vehicle_id for c in fleet()] + ["silent"])
    assert by_vehicle["full"].can_score == ("brakes", "lv_battery", "traction_battery")
    assert by_vehicle["ice"].can_score == ("brakes", "lv_battery")
    assert by_vehicle["ice"].model == "ICE-1"
    missing = {v: {m.component: m.missing_required for m in c.models if not m.can_score}
               for v, c in by_vehicle.items()}
    assert missing["ice"] == {"traction_battery": TRACTION}
    assert missing["norear"] == {"brakes": REAR_PADS}
    assert missing["oldcrank"] == missing["nolv"] == {"lv_battery": (LV_VOLTAGE,)}
    assert missing["silent"] == {c: component_inputs(c).required for c in LABELS}
    assert missing["noair"] == missing["full"] == missing["nocrank"] == {}
    imputed = {m.component: m.missing_optional for m in by_vehicle["noair"].models}
    assert AIR_TEMP in imputed["lv_battery"] and AIR_TEMP not in {
        s for m in by_vehicle["full"].models for s in m.missing_optional}


def test_a_crank_minimum_from_either_source_counts_and_without_one_it_is_imputed(
    store: Path, tmp_path: Path,
) -> None:
    copy = tmp_path / "fleet.duckdb"
    shutil.copyfile(store, copy)
    with connect(copy) as con:
        _check_crank_alternatives(con)


def _check_crank_alternatives(con: duckdb.DuckDBPyConnection) -> None:
    lv = {m.component: m for m in vehicle_coverage(con, "nocrank").models}["lv_battery"]
    assert lv.can_score and lv.missing_optional == (CRANK_DIP,)
    assert alternatives(CRANK_DIP) == ("BCM_LowVoltage.CrankMinVoltage", "Event.Crank.MinVoltage")
    # the agent's crank detector's measurement satisfies the input as the BCM's report does
    con.execute("INSERT INTO telemetry SELECT vehicle_id, ts, 'Event.Crank.MinVoltage', value,"
                " msg_id FROM telemetry WHERE vehicle_id = 'full'"
                " AND signal = 'BCM_LowVoltage.CrankMinVoltage'")
    con.execute("DELETE FROM telemetry WHERE vehicle_id = 'nocrank'")
    con.execute("INSERT INTO telemetry SELECT 'nocrank', ts, signal, value, msg_id FROM telemetry"
                " WHERE vehicle_id = 'full' AND signal <> 'BCM_LowVoltage.CrankMinVoltage'")
    lv = {m.component: m for m in vehicle_coverage(con, "nocrank").models}["lv_battery"]
    assert lv.can_score and lv.missing_optional == ()

"""Training, the model registry and scoring, end to end on a small synthetic fleet."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from pathlib import Path

import duckdb
import pytest
import skops.io as sio
from sklearn.preprocessing import FunctionTransformer
from synth_fleet import START, Car, build_store, day, evidence_fleet

from edge.progress import bar_from_log
from models import BoostedWarningClassifier, FaultWarningClassifier
from models.warnings import EVENT_KEYS
from pipeline.errors import NotEnoughDataError
from pipeline.features.labels import HORIZON_DAYS
from pipeline.leads.advice import advise
from pipeline.ml.promotion import promote
from pipeline.ml.scoring import score_fleet
from pipeline.ml.training import UntrustedArtifactError, load_model, train_and_register
from pipeline.store.connection import connect
from tests.master_data import import_master_data

N_DAYS = 80


def _fleet() -> list[Car]:
    return evidence_fleet()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    """A store whose three components were trained once (shared: training is the slow part)."""
    path = tmp_path_factory.mktemp("training") / "fleet.duckdb"
    con = build_store(path, _fleet(), N_DAYS)
    train_and_register(con, horizon_days=30, seed=0)
    return con


def test_one_promoted_model_per_component_with_held_out_metrics(
    trained: duckdb.DuckDBPyConnection,
) -> None:
    rows = trained.execute("SELECT component, metrics, artifact, features FROM model_registry"
                           " WHERE promoted ORDER BY component").fetchall()
    assert [r[0] for r in rows] == ["brakes", "lv_battery", "traction_battery"]
    for _, metrics, artifact, features in rows:
        m = json.loads(metrics)
        assert m["horizon_days"] == 30
        assert m["n_train_vehicles"] + m["n_test_vehicles"] == m["n_vehicles"]
        assert m["n_test_vehicles"] >= 1
        assert m["held_out"]["n"] > 0
        assert 0.0 <= m["threshold"] <= 1.0
        assert m["threshold"] == m["threshold_tuning"]["threshold"]
        assert list(m["events"]) == list(EVENT_KEYS)
        assert m["events"]["failures"] >= 5
        model = load_model(artifact)
        assert isinstance(model, FaultWarningClassifier)
        assert model.n_features_in_ == len(features)


def test_every_component_gets_the_boosted_classifier_with_its_monotone_directions(
    trained: duckdb.DuckDBPyConnection,
) -> None:
    rows = dict(trained.execute("SELECT component, artifact FROM model_registry"
                                " WHERE promoted").fetchall())
    models = {c: load_model(a) for c, a in rows.items()}
    assert all(isinstance(m, BoostedWarningClassifier) for m in models.values())
    assert models["lv_battery"].monotone == {"crank_dip_min": -1, "crank_dip_at_outlook": -1,
                                             "crank_margin_at_outlook": -1}
    assert models["brakes"].monotone == {"pad_wear_max": 1}


def test_held_out_metrics_include_calibration_lead_time_and_time_to_failure(
    trained: duckdb.DuckDBPyConnection,
) -> None:
    metrics = {c: json.loads(m) for c, m in trained.execute(
        "SELECT component, metrics FROM model_registry WHERE promoted").fetchall()}
    for m in metrics.values():
        assert 0.0 <= m["calibration"]["ece"] <= 1.0
        assert sum(b["n"] for b in m["calibration"]["bins"]) == m["held_out"]["n"]
        lead = m["lead_time"]
        assert lead["n_failures"] >= 1
        assert lead["n_failures"] == len(lead["per_vehicle"])
        if lead["median_lead_days"] is not None:
            assert 0 <= lead["median_lead_days"] <= N_DAYS
    future = metrics["brakes"]["held_out_future"]
    assert future is not None and future["n"] > 0 and future["n_train_rows"] > 0
    ttf = metrics["traction_battery"]["time_to_failure"]
    assert ttf["n"] >= 1 and ttf["mae"] is not None
    assert metrics["lv_battery"]["time_to_failure"] is None, "no life forecaster for 12 V"


def test_component_with_one_class_is_skipped(tmp_path: Path) -> None:
    cars = [Car(f"ok{i}") for i in range(3)] + [Car("brk", fails={"brakes": 50})]
    con = build_store(tmp_path / "f.duckdb", cars, 70)
    drawn = io.StringIO()  # the bar `fleetcare flows run train` draws on a terminal
    with bar_from_log("train", "training", unit="models", enabled=True, stream=drawn):
        reports = {r.component: r for r in train_and_register(con, horizon_days=20)}
    assert "training" in drawn.getvalue() and "3/3" in drawn.getvalue()
    assert reports["brakes"].model_id is not None
    assert reports["lv_battery"].model_id is None
    assert "one class" in reports["lv_battery"].metrics["skipped"]


def test_each_model_is_trained_and_registered_at_its_components_horizon(
        tmp_path: Path) -> None:
    """Without an override, brakes train at 60 days and the 12 V battery at 30: the registry
    metrics say so, and the scores (so the leads) of each model carry its horizon."""
    cars = [Car(f"ok{i}") for i in range(4)] + [
        Car(f"brk{i}", fails={"brakes": 85 + 5 * i}) for i in range(2)] + [
        Car(f"lv{i}", fails={"lv_battery": 85 + 5 * i}) for i in range(2)]
    con = build_store(tmp_path / "f.duckdb", cars, 120)
    reports = {r.component: r for r in train_and_register(con)}
    assert reports["brakes"].metrics["horizon_days"] == HORIZON_DAYS["brakes"] == 60
    assert reports["lv_battery"].metrics["horizon_days"] == HORIZON_DAYS["lv_battery"] == 30
    stored = dict(con.execute("SELECT component, metrics->>'$.horizon_days' FROM model_registry"
                              ).fetchall())
    assert stored == {"brakes": "60", "lv_battery": "30"}
    for component in ("brakes", "lv_battery"):
        model_id = reports[component].model_id
        assert model_id is not None
        promote(con, model_id, force=True)
    score_fleet(con, as_of=day(100))
    scored = dict(con.execute("SELECT DISTINCT component, horizon_days FROM scores").fetchall())
    assert scored == {"brakes": 60, "lv_battery": 30}


def test_a_first_model_with_too_few_held_out_failures_is_registered_not_promoted(
        tmp_path: Path) -> None:
    cars = [Car(f"ok{i}") for i in range(6)] + [
        Car(f"brk{i}", fails={"brakes": 45 + 5 * i}) for i in range(8)]
    con = build_store(tmp_path / "f.duckdb", cars, 80)
    report = {r.component: r for r in train_and_register(con, horizon_days=30)}["brakes"]
    assert report.model_id is not None and not report.promoted
    assert report.events is not None and report.events["failures"] == 2
    assert report.promotion is not None
    assert "registered, not promoted" in report.promotion["reason"]
    assert "needs at least 5" in report.promotion["reason"]
    assert promote(con, report.model_id)["promoted"] is False
    assert con.execute("SELECT count(*) FROM model_registry WHERE promoted").fetchone() == (0,)
    forced = promote(con, report.model_id, force=True)
    assert forced["promoted"] and forced["reason"] == "forced by an operator"


def test_empty_store_is_not_enough_data(tmp_path: Path) -> None:
    with pytest.raises(NotEnoughDataError, match="no labelled rows"):
        train_and_register(connect(tmp_path / "empty.duckdb"))


def test_untrusted_artifact_is_refused() -> None:
    evil = sio.dumps(FunctionTransformer(func=os.system))
    with pytest.raises(UntrustedArtifactError, match="untrusted"):
        load_model(evil)


def test_scoring_is_idempotent_and_point_in_time(trained: duckdb.DuckDBPyConnection) -> None:
    first = score_fleet(trained, as_of=day(60))
    assert first == score_fleet(trained, as_of=day(60))
    dupes = trained.execute("SELECT count(*) FROM (SELECT vehicle_id, component, as_of"
                            " FROM scores GROUP BY ALL HAVING count(*) > 1)").fetchone()
    assert dupes == (0,)
    per_component = dict(trained.execute(
        "SELECT component, count(*) FROM scores WHERE as_of = ? GROUP BY ALL", [day(60)]
    ).fetchall())
    evs = sum(car.ev for car in _fleet())
    assert per_component == {"brakes": len(_fleet()), "lv_battery": len(_fleet()),
                             "traction_battery": evs}
    assert score_fleet(trained).rows > 0


def test_near_failure_gets_a_lead_and_healthy_vehicles_none(
    trained: duckdb.DuckDBPyConnection,
) -> None:
    as_of = day(50)
    score_fleet(trained, as_of=as_of)
    import_master_data(trained, start=as_of)
    now = START + dt.timedelta(days=50, hours=20)
    advise(trained, now=now)
    leads = trained.execute("SELECT vehicle_id, component FROM leads").fetchall()
    assert ("brk0", "brakes") in leads
    assert ("hv0", "traction_battery") in leads
    assert not [v for v, _ in leads if v.startswith("ok")]

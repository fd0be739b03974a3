"""Labels come from repair orders and lead outcomes; the simulator's ground truth never teaches."""

from __future__ import annotations

import base64
import datetime as dt
import json
import pickle
import urllib.request
from pathlib import Path

import duckdb
import polars as pl
import pytest
from synth_fleet import START, Car, add_repair_order, build_store, day

from pipeline.crm.inbound import INBOUND_PATH, Inbox, inbound_server
from pipeline.crm.outbox import deliver_outbox
from pipeline.features.daily import attach_labels, build_daily_features, label_column
from pipeline.features.labels import HORIZON_DAYS, HorizonError, horizons, is_no_fault_found
from pipeline.leads.advice import advise
from pipeline.leads.lifecycle import apply_inbound
from pipeline.ml.registry import load_artifact
from pipeline.ml.training import train_and_register
from pipeline.sandbox.reference_crm import CrmReceiver
from tests.master_data import import_master_data

BRAKES = label_column("brakes")
LV = label_column("lv_battery")


def _labels(con: duckdb.DuckDBPyConnection, horizon: int = 10) -> pl.DataFrame:
    return attach_labels(build_daily_features(con), con, horizon)


def _label(labels: pl.DataFrame, vehicle: str, i: int, column: str) -> bool | None:
    row = labels.filter((pl.col("vehicle_id") == vehicle) & (pl.col("day") == day(i)))
    value: bool | None = row[column].item()
    return value


def _outcome(con: duckdb.DuckDBPyConnection, vehicle: str, component: str, i: int,
             outcome: str, reason: str | None) -> None:
    at = START + dt.timedelta(days=i, hours=15)
    con.execute("INSERT INTO lead_outcomes VALUES (?, ?, ?, ?, ?, 'warning', 0.8, 'm', ?)",
                [f"lead-{vehicle}-{i}", vehicle, component, outcome, at, reason])


def test_a_preventive_replacement_censors_the_horizon_before_it_and_renews_the_part(
    tmp_path: Path,
) -> None:
    con = build_store(tmp_path / "f.duckdb", [Car("ev")], 60)
    add_repair_order(con, "ev", "brakes", 30, kind="preventive")
    labels = _labels(con)
    assert _label(labels, "ev", 19, BRAKES) is False, "the old pads outlived the horizon"
    assert _label(labels, "ev", 20, BRAKES) is None, "replaced within the horizon: unknown"
    assert _label(labels, "ev", 30, BRAKES) is None
    assert _label(labels, "ev", 31, BRAKES) is False, "the new pads' own future"
    assert _label(labels, "ev", 20, LV) is False, "other components are untouched"


def test_a_failure_order_labels_the_horizon_before_it_but_not_its_own_day(
    tmp_path: Path,
) -> None:
    con = build_store(tmp_path / "f.duckdb", [Car("ev")], 60)
    add_repair_order(con, "ev", "lv_battery", 30, kind="roadside")
    add_repair_order(con, "ev", "brakes", 25, kind="inspection")
    labels = _labels(con)
    assert [_label(labels, "ev", i, LV) for i in (19, 20, 29, 30, 31)] == [
        False, True, True, None, False]
    assert _label(labels, "ev", 25, BRAKES) is False, "an inspection teaches nothing"


def test_lead_outcomes_confirmed_is_positive_and_no_fault_found_negative(
    tmp_path: Path,
) -> None:
    con = build_store(tmp_path / "f.duckdb", [Car("ev"), Car("ev2")], 60)
    _outcome(con, "ev", "brakes", 30, "done", "pads replaced, worn to 2 mm")
    _outcome(con, "ev", "lv_battery", 55, "dismissed", "No fault found.")
    _outcome(con, "ev2", "lv_battery", 55, "dismissed", "customer sold the car")
    labels = _labels(con)
    assert _label(labels, "ev", 30, BRAKES) is True, "the centre confirmed the worn part"
    assert _label(labels, "ev", 25, BRAKES) is None, "replaced within the horizon: unknown"
    assert _label(labels, "ev", 55, LV) is False, "past the data's horizon, yet checked fine"
    assert _label(labels, "ev2", 55, LV) is None, "another dismissal teaches nothing"


def test_each_component_is_labelled_at_its_own_horizon_by_default(tmp_path: Path) -> None:
    """Brakes promise 60 days, the 12 V battery 30: the same failure day labels a brake day
    60 days before it positive and a 12 V day only 30 days before it."""
    assert (HORIZON_DAYS["brakes"], HORIZON_DAYS["lv_battery"]) == (60, 30)
    con = build_store(tmp_path / "f.duckdb", [Car("ev")], 130)
    add_repair_order(con, "ev", "brakes", 100, kind="roadside")
    add_repair_order(con, "ev", "lv_battery", 100, kind="unscheduled")
    labels = attach_labels(build_daily_features(con), con)
    assert [_label(labels, "ev", i, BRAKES) for i in (39, 40, 69, 70, 99)] == [
        False, True, True, True, True]
    assert [_label(labels, "ev", i, LV) for i in (39, 40, 69, 70, 99)] == [
        False, False, False, True, True]
    assert _label(labels, "ev", 75, LV) is True and _label(labels, "ev", 110, LV) is None, (
        "the data's last 30 days are unknown for the 12 V battery")
    assert _label(labels, "ev", 69, BRAKES) is True and _label(labels, "ev", 101, BRAKES) is None


def test_a_horizon_override_replaces_all_or_the_named_components(tmp_path: Path) -> None:
    con = build_store(tmp_path / "f.duckdb", [Car("ev")], 130)
    add_repair_order(con, "ev", "brakes", 100, kind="roadside")
    feats = build_daily_features(con)
    everywhere = attach_labels(feats, con, 30)
    only_brakes = attach_labels(feats, con, {"brakes": 45})
    assert _label(everywhere, "ev", 40, BRAKES) is False and _label(everywhere, "ev", 70,
                                                                    BRAKES) is True
    assert [_label(only_brakes, "ev", i, BRAKES) for i in (54, 55)] == [False, True]
    assert horizons({"brakes": 45}) == {**HORIZON_DAYS, "brakes": 45}
    with pytest.raises(HorizonError, match="wheels"):
        horizons({"wheels": 10})
    with pytest.raises(HorizonError, match="at least one day"):
        horizons(0)


def test_no_fault_found_is_read_from_the_advisors_words() -> None:
    assert is_no_fault_found("No fault found")
    assert is_no_fault_found("checked: no-fault-found, battery OK")
    assert is_no_fault_found("NFF")
    assert not is_no_fault_found("customer declined")
    assert not is_no_fault_found("fault found, customer will come back")


def test_a_vehicle_without_the_part_gets_no_label_for_it(tmp_path: Path) -> None:
    con = build_store(tmp_path / "f.duckdb", [Car("ice", ev=False)], 40)
    labels = _labels(con)
    assert labels[label_column("traction_battery")].drop_nulls().len() == 0
    assert _label(labels, "ice", 5, BRAKES) is False


def _fleet() -> list[Car]:
    cars = [Car(f"ok{i}", ev=i % 2 == 0) for i in range(5)]
    cars += [Car(f"brk{i}", fails={"brakes": 40 + 8 * i}) for i in range(3)]
    cars += [Car(f"lv{i}", ev=i % 2 == 0, fails={"lv_battery": 38 + 9 * i}) for i in range(3)]
    cars += [Car(f"hv{i}", fails={"traction_battery": 40 + 9 * i}) for i in range(3)]
    return cars


def _trained(con: duckdb.DuckDBPyConnection
             ) -> dict[str, tuple[bytes, dict[str, object], list[float]]]:
    """Per component: the promoted artifact, its metrics and its predictions on every row."""
    reports = train_and_register(con, horizon_days=30, seed=3)
    feats = build_daily_features(con)
    out = {}
    for report in reports:
        assert report.model_id is not None, report.metrics
        features, metrics = con.execute(
            "SELECT features, metrics FROM model_registry WHERE model_id = ?",
            [report.model_id]).fetchall()[0]
        names = json.loads(features) if isinstance(features, str) else list(features)
        model = load_artifact(con, report.model_id)
        proba = model.predict_proba(feats.select(pl.col(names).cast(pl.Float64)))[:, 1]
        # skops names its arrays by object id and stamps its zip with the time, so the
        # fitted model itself is compared byte for byte, as pickled from the artifact
        out[report.component] = (pickle.dumps(model), json.loads(metrics), proba.tolist())
    return out


def test_deleting_ground_truth_changes_no_trained_model(tmp_path: Path) -> None:
    con = build_store(tmp_path / "a.duckdb", _fleet(), 80)
    assert con.execute("SELECT count(*) FROM ground_truth").fetchall() == [(14 * 3 - 3,)]
    with_truth = _trained(con)
    con.execute("DROP TABLE ground_truth")  # any read of it would now fail
    without = _trained(con)
    assert with_truth.keys() == without.keys() == {"traction_battery", "lv_battery", "brakes"}
    for component in with_truth:
        assert without[component][2] == with_truth[component][2], component
        assert without[component][1] == with_truth[component][1], component
        assert without[component][0] == with_truth[component][0], component


def test_lying_ground_truth_changes_no_trained_model(tmp_path: Path) -> None:
    """Truth that says every car fails tomorrow: training neither notices nor cares."""
    honest = build_store(tmp_path / "a.duckdb", _fleet(), 80)
    lying = build_store(tmp_path / "b.duckdb", _fleet(), 80)
    lying.execute("UPDATE ground_truth SET failure_ts = sim_start_ts + INTERVAL 1 DAY")
    a, b = _trained(honest), _trained(lying)
    assert {c: v[2] for c, v in a.items()} == {c: v[2] for c, v in b.items()}
    assert {c: v[1] for c, v in a.items()} == {c: v[1] for c, v in b.items()}


@pytest.mark.parametrize("module", ["pipeline/features/daily.py", "pipeline/features/labels.py",
                                    "pipeline/ml/training.py", "pipeline/ml/holdout.py",
                                    "pipeline/ml/promotion.py"])
def test_no_training_module_queries_ground_truth(module: str) -> None:
    """A second line of defence beside the behavioural tests: no SQL naming the table."""
    text = (Path(__file__).resolve().parents[2] / module).read_text(encoding="utf-8")
    assert "FROM ground_truth" not in text and "JOIN ground_truth" not in text


def test_an_advisors_no_fault_found_through_the_crm_becomes_a_negative(tmp_path: Path) -> None:
    """The real path: a delivered lead, the reference CRM's dismissal posted to fleetcare's
    signed status endpoint, the inbox applied, then the label of that day."""
    secret = "whsec_" + base64.b64encode(b"fleetcare-labels-test-key").decode()
    now = START + dt.timedelta(days=29, hours=18)
    con = build_store(tmp_path / "fleet.duckdb", [Car("ev-1", fails={"brakes": 35})], 30)
    import_master_data(con, start=day(29))
    con.execute("INSERT INTO model_registry (model_id, component, features, metrics, artifact,"
                " promoted) VALUES ('m', 'brakes', [], '{\"threshold\": 0.5}', ''::BLOB, true)")
    con.execute("INSERT INTO scores (vehicle_id, component, as_of, probability, horizon_days,"
                " model_id) VALUES ('ev-1', 'brakes', ?, 0.9, 30, 'm')", [day(29)])
    advise(con, now=now)
    lead_id = str(con.execute("SELECT lead_id FROM leads").fetchall()[0][0])
    assert _label(_labels(con, horizon=3), "ev-1", 29, BRAKES) is None, "horizon past the data"
    inbox = Inbox(tmp_path / "inbox.jsonl")
    with inbound_server(secret, inbox) as server, CrmReceiver(
            secret, status_url=server.base_url + INBOUND_PATH) as crm:
        assert deliver_outbox(con, url=crm.url, secret=secret, now=now).delivered == 1
        body = json.dumps({"state": "dismissed", "reason": "Checked: no fault found",
                           "at": f"{day(29).isoformat()}T16:00:00Z"}).encode()
        request = urllib.request.Request(f"{crm.url}/{lead_id}/status", data=body,
                                         method="POST")
        with urllib.request.urlopen(request) as answer:
            assert answer.status == 200
    assert apply_inbound(con, inbox, now=now).applied == 1
    assert _label(_labels(con, horizon=3), "ev-1", 29, BRAKES) is False
    assert _label(_labels(con, horizon=10), "ev-1", 29, BRAKES) is True, (
        "the pads failed 6 days later all the same: the recorded failure wins")

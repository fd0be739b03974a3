"""Advice for one vehicle (what an urgent lead runs) is the fleet's advice restricted to that
vehicle: the same leads with the same fields, states, holds, appointments and outbox rows,
on copies of one real store with several vehicles, scores over several days, fault codes,
a repair, a held customer and leads open from an earlier run."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
from synth_fleet import START, Car, add_dtc, add_repair_order, build_store, day
from synth_fleet import register_stand_in_models as register_models

from pipeline.leads.advice import AdviceReport, StoreFacts, advise
from pipeline.store.connection import connect
from tests.master_data import import_master_data

NOW = START + dt.timedelta(days=29, hours=18)
CARS = [Car("ev-a", fails={"brakes": 35}), Car("ev-b"), Car("ev-c"), Car("ev-d"),
        Car("ice-e", ev=False, region="south"), Car("ice-f", ev=False)]
VEHICLES = sorted(c.vehicle_id for c in CARS)


def _score(con: duckdb.DuckDBPyConnection, vehicle: str, comp: str, i: int, p: float,
           explanation: str | None = None) -> None:
    con.execute("INSERT OR REPLACE INTO scores (vehicle_id, component, as_of, probability,"
                " horizon_days, model_id, explanation) VALUES (?, ?, ?, ?, 30, ?, ?)",
                [vehicle, comp, day(i), p, f"m-{comp}", explanation])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store after a first fleet advice on day 28, with day 29's evidence added."""
    path = tmp_path_factory.mktemp("one-vehicle") / "fleet.duckdb"
    con = build_store(path, CARS, 30)
    import_master_data(con, start=day(27))
    register_models(con)
    factors = json.dumps({"top_factors": [{"feature": "pad_wear_min", "contribution": 0.4}]})
    for vehicle in VEHICLES:
        for comp in ("brakes", "lv_battery"):
            for i, p in ((26, 0.95), (27, 0.2), (28, 0.55)):
                _score(con, vehicle, comp, i, p)  # the latest counts, not the highest
    _score(con, "ev-a", "traction_battery", 28, 0.6, factors)
    _score(con, "ice-f", "brakes", 28, 0.1)  # its only brake lead would be the cleared code
    add_dtc(con, "ev-b", 27, "P0562")
    add_dtc(con, "ice-f", 20, "C1B00")
    add_repair_order(con, "ice-f", "brakes", 22)  # clears C1B00
    con.execute("UPDATE customers SET contact_consent = false WHERE customer_id ="
                " (SELECT customer_id FROM vehicles WHERE vehicle_id = 'ev-d')")
    assert advise(con, now=NOW - dt.timedelta(days=1)).new > 0
    # day 29: escalations, a drop below threshold, critical and other codes, a new score
    _score(con, "ev-a", "brakes", 29, 0.9, factors)
    _score(con, "ev-b", "lv_battery", 29, 0.1)  # its fault code keeps the lead
    _score(con, "ev-c", "lv_battery", 29, 0.1)  # nothing keeps it: no candidate
    _score(con, "ice-e", "brakes", 29, 0.7)
    _score(con, "ev-c", "traction_battery", 29, 0.85)
    add_dtc(con, "ev-a", 29, "P0AA6")
    add_dtc(con, "ev-c", 29, "C1B01")
    add_dtc(con, "ev-d", 29, "P0AA6")
    add_dtc(con, "ice-e", 29, "P0562")
    con.close()
    return path


def _copy(store: Path, tmp_path: Path, name: str) -> duckdb.DuckDBPyConnection:
    target = tmp_path / f"{name}.duckdb"
    shutil.copy(store, target)
    return connect(target)


def _outcome(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    """Every lead and its outbox rows, new lead ids replaced by (vehicle, component)."""
    ids = {lid: f"{v}/{c}" for lid, v, c in con.execute(
        "SELECT lead_id, vehicle_id, component FROM leads").fetchall()}

    def named(text: str) -> str:
        for lead_id, name in ids.items():
            text = text.replace(lead_id, name)
        return text

    leads = [(named(lid), *rest, json.loads(named(doc))) for lid, *rest, doc in con.execute(
        "SELECT lead_id, vehicle_id, component, state, hold_reason, severity, probability,"
        " horizon_days, created_at, updated_at, document FROM leads").fetchall()]
    outbox = [tuple(named(str(x)) for x in row) for row in con.execute(
        "SELECT event_id, lead_id, status, body, next_attempt_at FROM outbox").fetchall()]
    bays = [tuple(named(str(x)) for x in row) for row in con.execute(
        "SELECT * FROM appointment_bays").fetchall()]
    slots = con.execute("SELECT * FROM centre_capacity ORDER BY ALL").fetchall()
    return [*sorted(leads, key=str), *sorted(outbox), *sorted(bays), *slots]


@pytest.mark.parametrize("options", [
    {},
    {"min_severity": "critical", "daily_features": False},
    {"min_severity": "medium", "daily_features": False},
], ids=["scheduled", "urgent", "raw-evidence"])
def test_one_vehicle_at_a_time_is_the_fleet_advice(store: Path, tmp_path: Path,
                                                   options: dict[str, Any]) -> None:
    fleet_con = _copy(store, tmp_path, "fleet")
    fleet = advise(fleet_con, now=NOW, **options)
    one_con = _copy(store, tmp_path, "one")
    facts = StoreFacts.load(one_con)
    reports = [advise(one_con, now=NOW, vehicles=[v], facts=facts, **options)
               for v in VEHICLES]
    assert _outcome(one_con) == _outcome(fleet_con)
    summed = AdviceReport(*(sum(getattr(r, k) for r in reports)
                            for k in ("new", "escalated", "unchanged", "held", "released")))
    assert summed == fleet
    assert fleet.new + fleet.escalated > 0  # the comparison is about leads, not nothing
    if not options:
        assert fleet.escalated and fleet.held and fleet.unchanged


def test_several_vehicles_at_once_and_unknown_ones(store: Path, tmp_path: Path) -> None:
    fleet_con = _copy(store, tmp_path, "fleet")
    advise(fleet_con, now=NOW)
    some_con = _copy(store, tmp_path, "some")
    advise(some_con, now=NOW, vehicles=VEHICLES[:3])
    advise(some_con, now=NOW, vehicles=[*VEHICLES[3:], "never-registered"])
    assert _outcome(some_con) == _outcome(fleet_con)
    assert advise(some_con, now=NOW, vehicles=[]) == AdviceReport(0, 0, 0)

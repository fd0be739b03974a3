"""The declaration of which signals each feature reads holds for the feature code itself.

Scoring trusts :data:`FEATURE_SIGNALS` to decide whom a model can score, so a feature that
quietly reads an undeclared signal would be scored from nothing. Each signal is hidden from a
real store in turn (a TEMP view shadowing ``telemetry``, as the serving store's views do) and
the features rebuilt: only features declared to read that signal may change. An input of
alternatives (the cranking minimum, from the BCM or from the agent's crank detector) is hidden
signal by signal: the test fleet has a car of each kind, so hiding either changes its features.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from synth_fleet import Car, build_store

from edge.wire.contract import COMPONENTS
from pipeline.features.daily import build_daily_features, model_features
from pipeline.features.daily_sql import PAD_WEAR, SPEED
from pipeline.features.inputs import (
    AGENT_CRANK_DIP,
    BCM_CRANK_DIP,
    COMMON_OPTIONAL,
    CRANK_DIP,
    FEATURE_SIGNALS,
    LV_VOLTAGE,
    ODOMETER,
    OPTIONAL_SIGNALS,
    UnknownFeatureError,
    alternatives,
    component_inputs,
    model_inputs,
)

N_DAYS = 45
SIGNALS = sorted({s for inputs in FEATURE_SIGNALS.values() for i in inputs
                  for s in alternatives(i)})


def _add_speed(con: duckdb.DuckDBPyConnection) -> None:
    """A few decelerations on each day a vehicle reported (the synthetic fleet sends no speed)."""
    rng = np.random.default_rng(7)
    days = con.execute("SELECT DISTINCT vehicle_id, CAST(timezone('UTC', ts) AS DATE)"
                       " FROM telemetry ORDER BY ALL").fetchall()
    rows = [(v, dt.datetime.combine(d, dt.time(9, 0, s), tzinfo=dt.UTC), SPEED,
             float(rng.uniform(20, 120) if s % 3 == 0 else rng.uniform(0, 20)), "speed")
            for v, d in days for s in range(6)]
    con.executemany("INSERT INTO telemetry VALUES (?, ?, ?, ?, ?)", rows)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    cars = [Car("ev", fails={"brakes": 40, "traction_battery": 44}),
            Car("ev2", fails={"lv_battery": 42}),
            Car("ice", ev=False, fails={"lv_battery": 30}, crank_signal=AGENT_CRANK_DIP)]
    con = build_store(tmp_path_factory.mktemp("inputs") / "fleet.duckdb", cars, N_DAYS)
    _add_speed(con)
    return con


def _changed(before: pl.DataFrame, after: pl.DataFrame) -> set[str]:
    joined = before.join(after, on=["vehicle_id", "day"], how="full", suffix="__after",
                         coalesce=True)
    changed = set()
    for feature in FEATURE_SIGNALS:
        a, b = joined[feature].cast(pl.Float64), joined[f"{feature}__after"].cast(pl.Float64)
        differs = (a.is_null() != b.is_null()) | ((a - b).abs() > 1e-9).fill_null(False)
        if differs.any():
            changed.add(feature)
    return changed


def test_hiding_a_signal_changes_only_the_features_declared_to_read_it(
    store: duckdb.DuckDBPyConnection,
) -> None:
    full = build_daily_features(store)
    assert set(FEATURE_SIGNALS) <= set(full.columns)
    (db,), = store.execute("SELECT current_database()").fetchall()
    for signal in SIGNALS:
        quoted = signal.replace("'", "''")
        store.execute(f"CREATE OR REPLACE TEMP VIEW telemetry AS SELECT * FROM {db}.main.telemetry"
                      f" WHERE signal <> '{quoted}'")
        try:
            changed = _changed(full, build_daily_features(store))
        finally:
            store.execute("DROP VIEW telemetry")
        declared = {f for f, inputs in FEATURE_SIGNALS.items()
                    if any(signal in alternatives(i) for i in inputs)}
        assert changed <= declared, f"{signal} also changes {sorted(changed - declared)}"
        assert changed, f"hiding {signal} changed nothing: the test fleet lacks it"


def test_every_models_features_are_declared_and_split_into_required_and_optional() -> None:
    for component in COMPONENTS:
        inputs = component_inputs(component)
        assert set(inputs.optional) <= OPTIONAL_SIGNALS[component]
        assert not set(inputs.required) & OPTIONAL_SIGNALS[component]
        assert set(inputs.signals) == {s for f in model_features(component)
                                       for s in FEATURE_SIGNALS[f]}
        assert inputs.required, f"{component}'s model would score a vehicle from nothing"
    assert "Vehicle.Powertrain.TractionBattery.StateOfHealth" in component_inputs(
        "traction_battery").required
    assert model_inputs(["dtc_count__brakes"]).signals == ()


def test_the_12v_model_needs_the_voltage_and_takes_a_crank_minimum_from_either_source() -> None:
    lv = component_inputs("lv_battery")
    assert lv.required == (LV_VOLTAGE,)
    assert CRANK_DIP in lv.optional and ODOMETER in lv.optional
    assert alternatives(CRANK_DIP) == (BCM_CRANK_DIP, AGENT_CRANK_DIP)
    assert {BCM_CRANK_DIP, AGENT_CRANK_DIP} <= set(lv.signal_names)
    brakes = component_inputs("brakes")  # wear per kilometre needs the distance
    assert {*PAD_WEAR.values(), ODOMETER} == set(brakes.required)
    # a feature list of no known component: only what every component finds optional
    assert set(model_inputs(model_features("lv_battery")).optional) <= COMMON_OPTIONAL


def test_a_feature_without_a_declaration_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(UnknownFeatureError, match="tyre_pressure_min"):
        model_inputs(["soh", "tyre_pressure_min"])

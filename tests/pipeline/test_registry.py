"""The registry keeps every model with its metadata; promotion needs a win on the same hold-out."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from synth_fleet import Car, build_store, evidence_fleet

from pipeline.ml import promotion, registry
from pipeline.ml.training import estimator_for, train_and_register

N_DAYS = 80


def _fleet() -> list[Car]:
    return evidence_fleet(("brakes", "traction_battery"))


@pytest.fixture
def store(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = build_store(tmp_path / "fleet.duckdb", _fleet(), N_DAYS)
    train_and_register(con, horizon_days=30, seed=0)
    return con


def test_every_model_is_stored_with_its_metadata(store: duckdb.DuckDBPyConnection) -> None:
    entry = registry.promoted_model(store, "brakes")
    assert entry is not None and entry.promoted
    assert entry.estimator == "BoostedWarningClassifier"
    assert str(entry.data_from) == "2025-01-01" and entry.data_to is not None
    assert entry.train_vehicles and entry.holdout_vehicles
    assert not set(entry.train_vehicles) & set(entry.holdout_vehicles)
    assert entry.package_versions["scikit-learn"] == "1.9.1"
    assert entry.code_version
    assert entry.promotion == {"promoted": True, "reason": "first model of the component, "
                               "judged on 5 failures among its held-out vehicles"}
    assert entry.features[0] == "pad_wear_max"


def test_an_equally_good_retrain_is_kept_aside(store: duckdb.DuckDBPyConnection) -> None:
    before = registry.promoted_model(store, "brakes")
    reports = {r.component: r for r in train_and_register(store, horizon_days=30, seed=0)}
    assert not reports["brakes"].promoted
    assert "does not beat" in reports["brakes"].promotion["reason"]  # type: ignore[index]
    after = registry.promoted_model(store, "brakes")
    assert before is not None and after is not None
    assert after.model_id == before.model_id
    assert len(registry.list_models(store, "brakes")) == 2


def _plant_bad_incumbent(con: duckdb.DuckDBPyConnection, component: str) -> str:
    """Register a model trained on noise as the promoted one, with a recorded split."""
    current = registry.promoted_model(con, component)
    assert current is not None
    rng = np.random.default_rng(0)
    X = pl.DataFrame(rng.normal(size=(60, len(current.features))), schema=current.features)
    y = rng.integers(0, 2, 60)
    model = estimator_for(component, current.features, 0).fit(X, y)
    bad = registry.NewModel(f"{component}-bad", component, current.features, {},
                            (None, None), current.train_vehicles, current.holdout_vehicles,
                            {}, "test")
    registry.save_model(con, bad, model)
    registry.set_promoted(con, bad.model_id, {"promoted": True, "reason": "planted"})
    return bad.model_id


def test_a_better_model_replaces_a_worse_one(store: duckdb.DuckDBPyConnection) -> None:
    bad = _plant_bad_incumbent(store, "traction_battery")
    reports = {r.component: r for r in train_and_register(store, horizon_days=30, seed=0)}
    hv = reports["traction_battery"]
    assert hv.promoted, hv.promotion
    assert hv.promotion is not None and hv.promotion["against"] == bad
    assert hv.promotion["candidate"]["cost"] < hv.promotion["incumbent"]["cost"]
    promoted = registry.promoted_model(store, "traction_battery")
    assert promoted is not None and promoted.model_id == hv.model_id
    assert store.execute("SELECT count(*) FROM model_registry WHERE promoted"
                         " AND component = 'traction_battery'").fetchall() == [(1,)]


def test_manual_promotion_is_refused_unless_better_or_forced(
    store: duckdb.DuckDBPyConnection,
) -> None:
    reports = {r.component: r for r in train_and_register(store, horizon_days=30, seed=0)}
    aside = reports["brakes"].model_id
    assert aside is not None
    refused = promotion.promote(store, aside)
    assert refused["promoted"] is False
    assert not registry.get_model(store, aside).promoted
    forced = promotion.promote(store, aside, force=True)
    assert forced["promoted"] and "forced" in forced["reason"]
    entry = registry.get_model(store, aside)
    assert entry.promoted and entry.promotion is not None
    assert json.dumps(entry.promotion)


def test_unknown_model_says_where_to_look(store: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(registry.UnknownModelError, match="models list"):
        registry.get_model(store, "nope")

"""A boosted model (and a robust logistic one) goes through the registry and comes back whole."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import skops.io as sio

from models import BoostedWarningClassifier, FaultWarningClassifier
from pipeline.ml import registry
from pipeline.store import connection as store

FEATURES = ["pad_wear_max", "braking_energy_30d", "dtc_events_30d__brakes"]


def _table(seed: int = 0, n: int = 800) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    wear = rng.uniform(20, 100, n)
    events = rng.lognormal(2, 1.5, n)
    energy = rng.normal(300, 40, n)
    energy[rng.random(n) < 0.2] = np.nan
    y = (wear + 3 * np.log1p(events) + rng.normal(0, 6, n) > 100).astype(int)
    columns = [wear, energy, events]
    return pl.DataFrame(dict(zip(FEATURES, columns, strict=True))), y, rng.integers(0, 40, n)


@pytest.mark.parametrize("model", [
    BoostedWarningClassifier(monotone={"pad_wear_max": 1}),
    FaultWarningClassifier(robust=True),
], ids=["boosted", "robust-logistic"])
def test_registry_round_trip_predicts_and_explains_identically(
        db_path: Path, model: FaultWarningClassifier) -> None:
    X, y, groups = _table()
    model.fit(X, y, groups=groups)
    con = store.connect(db_path)
    store.migrate(con)
    new = registry.NewModel("m1", "brakes", FEATURES, {"horizon_days": 30},
                            (dt.date(2025, 1, 1), dt.date(2025, 6, 30)), ["v1"], ["v2"],
                            {"lightgbm": "4.7.0"}, "test")
    registry.save_model(con, new, model)
    loaded = registry.load_artifact(con, "m1")
    con.close()
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.explain(X, top=3) == model.explain(X, top=3)
    assert loaded.threshold_ == model.threshold_


def test_a_native_lightgbm_booster_is_not_a_trusted_artifact() -> None:
    """Only the booster's text travels in an artifact; LightGBM's own objects are refused."""
    X, y, groups = _table(1)
    model = BoostedWarningClassifier(n_estimators=20).fit(X, y, groups=groups)
    with pytest.raises(registry.UntrustedArtifactError, match=r"lightgbm\.basic\.Booster"):
        registry.load_model(sio.dumps(model.booster_))

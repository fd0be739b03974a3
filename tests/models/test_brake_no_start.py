"""Brake-pad remaining life per wheel, 12 V no-start risk, and why a model warns."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from models import BrakePadLifeForecaster, FaultWarningClassifier, NoStartRiskClassifier, pad_life
from models._no_start import MARGIN_FEATURE
from models.errors import InsufficientDataError


def test_pad_life_in_km_and_days() -> None:
    days = np.arange(100.0)
    km = 10_000 + 50.0 * days
    wear = 20 + 0.01 * (km - 10_000) + np.random.default_rng(0).normal(0, 0.3, days.size)
    life = pad_life(km, wear, days, wear_limit=100.0)
    assert life.wear_now == pytest.approx(70, abs=1)
    assert life.km_left == pytest.approx(3_000, rel=0.05)
    assert life.days_left == pytest.approx(60, rel=0.05)
    assert life.km_low < life.km_left < life.km_high


def test_a_pad_that_does_not_wear_has_no_finite_life() -> None:
    km = np.linspace(0, 1000, 20)
    life = BrakePadLifeForecaster().fit(km[:, None], np.full(20, 30.0)).remaining(1000, 10)
    assert math.isinf(life.km_left)


def test_pad_life_needs_readings() -> None:
    with pytest.raises(InsufficientDataError, match="three readings"):
        pad_life([1.0, 1.0], [2.0, 3.0], [0.0, 1.0])


def _cranking(seed: int, n: int = 400) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    dip = rng.uniform(9.5, 11.0, n)
    trend = rng.normal(-0.005, 0.01, n)
    fails = (dip + 30 * trend < 9.8).astype(int)
    frame = pl.DataFrame({"crank_dip_min": dip, "crank_dip_trend_14d": trend,
                          "rest_voltage": rng.normal(12.6, 0.1, n)})
    return frame, fails


def test_no_start_sees_the_projected_margin_and_explains_with_it() -> None:
    X, y = _cranking(0)
    model = NoStartRiskClassifier(horizon_days=30).fit(X, y)
    Xt, yt = _cranking(1)
    warned = model.predict(Xt).astype(bool)
    assert (warned & yt.astype(bool)).sum() / yt.sum() > 0.8
    assert model.design_names()[-1] == MARGIN_FEATURE
    reasons = model.explain(Xt[np.flatnonzero(yt)[:1]], top=2)[0]
    margin = next(r for r in reasons if r["feature"] == MARGIN_FEATURE)
    assert margin["contribution"] > 0, "a thin projected margin pushes towards a warning"


def test_explanations_sum_to_the_log_odds_and_name_the_driver() -> None:
    rng = np.random.default_rng(3)
    X = pl.DataFrame({"soh": rng.normal(90, 5, 500), "noise": rng.normal(0, 1, 500)})
    y = (X["soh"].to_numpy() < 84).astype(int)
    model = FaultWarningClassifier().fit(X, y)
    contrib, _ = model.contributions(X)
    logit = np.log(model.predict_proba(X)[:, 1] / model.predict_proba(X)[:, 0])
    np.testing.assert_allclose(contrib.sum(axis=1) + model.pipeline_[-1].intercept_[0], logit,
                               rtol=1e-6, atol=1e-6)
    worst = int(np.argmin(X["soh"].to_numpy()))
    first = model.explain(X[worst], top=2)[0]
    assert first[0]["feature"] == "soh"
    assert first[0]["value"] == pytest.approx(X["soh"][worst], abs=1e-3)
    missing = model.explain(pl.DataFrame({"soh": [None], "noise": [0.0]},
                                         schema={"soh": pl.Float64, "noise": pl.Float64}))
    assert {e["feature"]: e["value"] for e in missing[0]}["soh"] is None

"""Vectorised explanations equal the former per-row ones, dicts and JSON text alike."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import polars as pl
import pytest
from numpy.typing import NDArray

from models import BoostedWarningClassifier, FaultWarningClassifier
from models._explanations import as_dicts, as_json, pick_top, python_round4


def _former_logistic(contrib: NDArray[np.float64], raw: NDArray[np.float64],
                     names: list[str], top: int) -> list[list[dict[str, Any]]]:
    """FaultWarningClassifier.explain before vectorising (Python round, per row)."""
    order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :top]
    return [
        [{"feature": names[j], "contribution": round(float(contrib[i, j]), 4),
          "value": None if np.isnan(raw[i, j]) else round(float(raw[i, j]), 4)}
         for j in order[i]]
        for i in range(contrib.shape[0])
    ]


def _former_boosted(contrib: NDArray[np.float64], values: NDArray[np.float64],
                    names: list[str], top: int) -> list[list[dict[str, Any]]]:
    """models._boosted.top_contributions before vectorising (np.round)."""
    order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :max(top, 0)]
    picked = np.round(np.take_along_axis(contrib, order, axis=1), 4).tolist()
    raw = np.take_along_axis(values, order, axis=1)
    shown = np.where(np.isnan(raw), np.nan, np.round(raw, 4)).tolist()
    label = np.asarray(names, dtype=object)[order].tolist()
    return [
        [{"feature": f, "contribution": c, "value": None if math.isnan(v) else v}
         for f, c, v in zip(fs, cs, vs, strict=True)]
        for fs, cs, vs in zip(label, picked, shown, strict=True)
    ]


def _matrices(seed: int) -> tuple[NDArray[np.float64], NDArray[np.float64], list[str]]:
    """Contributions with ties, zeros, signed zeros and halves; values with NaNs and big ones."""
    rng = np.random.default_rng(seed)
    n, d = 3000, 9
    contrib = rng.normal(0, 1, (n, d)) * 10.0 ** rng.integers(-6, 6, (n, d))
    contrib[rng.random((n, d)) < 0.2] = 0.25  # ties on magnitude...
    contrib[rng.random((n, d)) < 0.1] = -0.25  # ...of either sign
    contrib[rng.random((n, d)) < 0.05] = -0.0
    contrib[rng.random((n, d)) < 0.05] = 0.00015  # halves at the 4th decimal
    values = rng.normal(50, 30, (n, d)) * 10.0 ** rng.integers(-5, 17, (n, d))
    values[rng.random((n, d)) < 0.15] = np.nan
    values[rng.random((n, d)) < 0.05] = 2.00005
    names = [f"f{j}" for j in range(d - 1)] + ['odd "name" \u00e9']
    return contrib, values, names


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("top", [0, 1, 3, 9, 12])
def test_vectorised_equals_former_per_row_output(seed: int, top: int) -> None:
    contrib, values, names = _matrices(seed)
    for python_rounding, former in ((True, _former_logistic), (False, _former_boosted)):
        picked = pick_top(contrib, values, top, python_rounding=python_rounding)
        expected = former(contrib, values, names, top)
        assert as_dicts(picked, names) == expected
        assert as_json(picked, names).to_list() == [json.dumps(w) for w in expected]


def test_python_round4_is_pythons_round() -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0, 1, 20000) * 10.0 ** rng.integers(-6, 20, 20000),
                        np.arange(-200, 200) / 1e4 + 0.00005, [0.0, -0.0, 1e300, -1e300]])
    got = python_round4(x)
    assert [math.copysign(1, v) for v in got] == [math.copysign(1, round(float(v), 4)) for v in x]
    assert got.tolist() == [round(float(v), 4) for v in x]


def _table(seed: int) -> tuple[pl.DataFrame, NDArray[np.int_]]:
    rng = np.random.default_rng(seed)
    n = 2000
    X = rng.normal(0, 1, (n, 6))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(0, 1, n) > 1.8).astype(int)
    X[rng.random((n, 6)) < 0.1] = np.nan
    return pl.DataFrame(X, schema=[f"s{j}" for j in range(6)]), y


@pytest.mark.parametrize("model", [FaultWarningClassifier(), FaultWarningClassifier(robust=True),
                                   BoostedWarningClassifier(n_estimators=30),
                                   BoostedWarningClassifier(n_estimators=30, attribution="path")])
def test_classifiers_explain_as_before(model: FaultWarningClassifier) -> None:
    X, y = _table(3)
    model.fit(X, y)
    contrib, values = model.contributions(X)
    former = (_former_boosted if isinstance(model, BoostedWarningClassifier)
              else _former_logistic)(contrib, values, model.design_names(), 3)
    assert model.explain(X, top=3) == former
    assert model.explain_json(X, top=3).to_list() == [json.dumps(w) for w in former]


def test_infinite_figures_are_written_as_json_dumps_writes_them() -> None:
    contrib, values, names = _matrices(4)
    contrib[::7, 2] = np.inf
    contrib[3::11, 5] = -np.inf
    values[::5, 2] = -np.inf
    values[1::13, 5] = np.inf
    for python_rounding, former in ((True, _former_logistic), (False, _former_boosted)):
        picked = pick_top(contrib, values, 3, python_rounding=python_rounding)
        expected = former(contrib, values, names, 3)
        assert as_json(picked, names).to_list() == [json.dumps(w) for w in expected]
        assert any("Infinity" in text for text in as_json(picked, names).to_list())


def test_picking_in_chunks_equals_picking_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    contrib, values, names = _matrices(6)
    whole = as_json(pick_top(contrib, values, 3), names).to_list()
    monkeypatch.setattr("models._explanations.PICK_CHUNK_ROWS", 7)
    assert as_json(pick_top(contrib, values, 3), names).to_list() == whole


@pytest.mark.parametrize("robust", [False, True])
def test_logistic_contributions_equal_the_fitted_pipelines_own_transforms(robust: bool) -> None:
    X, y = _table(8)
    X = X.with_columns(pl.lit(None, dtype=pl.Float64).alias("s5"))  # a column never reported
    model = FaultWarningClassifier(robust=robust).fit(X, y)
    contrib, values = model.contributions(X)
    steps = model.pipeline_
    design = X.to_numpy()
    if robust:
        design = steps[0].transform(design)
    expected = steps[-2].transform(steps[-3].transform(design)) * steps[-1].coef_[0]
    np.testing.assert_array_equal(contrib, expected)
    np.testing.assert_array_equal(values, X.to_numpy())

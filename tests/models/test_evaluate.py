"""Vehicle-wise splitting and the warning report."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import InsufficientDataError
from models.evaluate import classification_report, split_by_vehicle


def test_split_keeps_each_vehicle_on_one_side() -> None:
    ids = np.repeat([f"v{i}" for i in range(10)], 5)
    train, test = split_by_vehicle(ids, 0.3, seed=1)
    assert not (set(ids[train]) & set(ids[test]))
    assert (train | test).all()
    assert len(set(ids[test])) == 3


def test_split_is_reproducible_and_seed_dependent() -> None:
    ids = np.repeat([f"v{i}" for i in range(20)], 3)
    a = split_by_vehicle(ids, 0.25, seed=5)[1]
    b = split_by_vehicle(ids, 0.25, seed=5)[1]
    c = split_by_vehicle(ids, 0.25, seed=6)[1]
    assert (a == b).all()
    assert not (a == c).all()


def test_stratified_split_puts_failing_vehicles_on_both_sides() -> None:
    ids = np.repeat([f"v{i}" for i in range(8)], 4)
    y = np.isin(ids, ["v0", "v1", "v2", "v3"]) & (np.arange(ids.size) % 4 == 3)
    train, test = split_by_vehicle(ids, 0.5, seed=0, stratify=y)
    assert y[train].any()
    assert y[test].any()


def test_two_failing_vehicles_are_split_one_each_way() -> None:
    ids = np.repeat([f"v{i}" for i in range(10)], 2)
    y = np.isin(ids, ["v3", "v7"])
    for seed in range(5):
        train, test = split_by_vehicle(ids, 0.25, seed=seed, stratify=y)
        assert set(ids[test & y]) and set(ids[train & y])


def test_split_needs_two_vehicles() -> None:
    with pytest.raises(InsufficientDataError):
        split_by_vehicle(np.array(["a", "a"]), 0.5, seed=0)


def test_report_counts_and_cost() -> None:
    y = np.array([0, 0, 1, 1, 0])
    p = np.array([0.1, 0.6, 0.7, 0.2, 0.3])
    rep = classification_report(y, p, threshold=0.5, cost_fp=1.0, cost_fn=10.0)
    assert (rep["tp"], rep["fp"], rep["fn"], rep["tn"]) == (1, 1, 1, 2)
    assert rep["precision"] == 0.5
    assert rep["recall"] == 0.5
    assert rep["cost"] == 11.0
    assert rep["n"] == 5
    assert 0.0 <= rep["brier"] <= 1.0
    assert rep["roc_auc"] is not None


def test_report_with_one_class_has_no_auc() -> None:
    rep = classification_report(np.zeros(3), np.array([0.1, 0.2, 0.9]), 0.5, 1.0, 10.0)
    assert rep["roc_auc"] is None
    assert rep["recall"] is None
    assert rep["fp"] == 1

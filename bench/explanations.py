"""Predict + top-3 explanations (as scoring writes them, JSON column included) against a bare
``predict_proba`` on the same rows, for both fault-warning classifiers (issue 20 item 2), and
for the boosted one both attributions: TreeSHAP (LightGBM's ``pred_contrib``, the default)
and path attribution (``attribution="path"``), with how far their top-3 agree; and the
boosted one fitted with ``interactions=3`` or ``2`` (each root-to-leaf path reads at most
three or two columns), ``interactions=1`` (each tree one column) and ``max_depth=3`` with
eight leaves (``boosted_depth3``, the shape ``estimator_for`` deploys), whose TreeSHAP values
come from lookup tables
(:mod:`models._shape_tables`, the same values as ``pred_contrib``), with the held-out ROC AUC
of each fit on the scored rows (what the constraint costs in ranking on this table).

Prints JSON. CPU seconds (process time) are the figures, medians of calls that alternate
between the bare and the explained one; the ratio is bare predict_proba time over predict +
explain time, so 1.0 means explanations are free and the target is >= 0.3.
Agreement of path attribution with TreeSHAP on the same rows: ``top1`` the share of rows whose
largest-magnitude column is the same, ``top3_overlap`` the mean share of TreeSHAP's top 3
that path attribution also puts in its top 3, ``top3_sign`` the share of TreeSHAP's top-3
columns whose path contribution has the same sign; ``warned`` the same on the rows the model
warns about. ``--fleet-vehicles`` also trains the deployed estimator (``estimator_for``) per
component on a simulated fleet landed as ``bench/quality.py`` lands it, and reports the
agreement on its held-out vehicles' rows.

    .venv/bin/python bench/explanations.py [--features 40 --train 100000 --score 100000,1000000]
        [--fleet-vehicles 150 --fleet-days 365]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

# Run as a script, this folder comes first on sys.path and bench/models.py would shadow the
# models package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from models import BoostedWarningClassifier, FaultWarningClassifier  # noqa: E402


def _table(rows: int, features: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Gaussian columns, a few driving a rare failure; 5 % of values missing."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 1.0, (rows, features))
    logit = X[:, :5] @ np.array([1.2, -0.8, 0.6, 0.5, 0.4]) - 4.0
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    X[rng.random((rows, features)) < 0.05] = np.nan
    return pl.DataFrame(X, schema=[f"signal_{j:02d}" for j in range(features)]), y


def _cpu(fn: Callable[[], Any], repeats: int) -> float:
    """Median process (CPU) seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def _former(model: FaultWarningClassifier, X: pl.DataFrame) -> list[str]:
    """What scoring did before: the dicts of ``explain``, one ``json.dumps`` each."""
    return [json.dumps(w) for w in model.explain(X, top=3)]


def _interleaved(bare_fn: Callable[[], Any], full_fn: Callable[[], Any], repeats: int,
                 full_repeats: int) -> tuple[float, float]:
    """Median CPU seconds of both, their calls alternating so that a change of the machine's
    load during the measurement weighs on both alike (the bare one first)."""
    bare: list[float] = []
    full: list[float] = []
    for i in range(max(repeats, full_repeats)):
        if i < repeats:
            bare.append(_cpu(bare_fn, 1))
        if i < full_repeats:
            full.append(_cpu(full_fn, 1))
    return statistics.median(bare), statistics.median(full)


def _measure(model: FaultWarningClassifier, X: pl.DataFrame, repeats: int, slow_repeats: int,
             former: bool) -> dict[str, Any]:
    bare, full = _interleaved(
        lambda: model.predict_proba(X),
        lambda: (model.predict_proba(X), model.explain_json(X, top=3)), repeats, slow_repeats)
    contrib = _cpu(lambda: model.contributions(X), slow_repeats)
    out: dict[str, Any] = {
        "rows": X.height, "explain_repeats": slow_repeats, "predict_proba_s": round(bare, 3),
        "predict_explain_json_s": round(full, 3), "contributions_s": round(contrib, 3),
        "ratio": round(bare / full, 3), "load_average_1min": round(os.getloadavg()[0], 2)}
    if former:
        old = _cpu(lambda: (model.predict_proba(X), _former(model, X)), 1)
        out["former_predict_explain_json_s"] = round(old, 3)
        out["former_ratio"] = round(bare / old, 3)
    return out


def _top3(contrib: np.ndarray) -> np.ndarray:
    """Column numbers of each row's three largest magnitudes, largest first."""
    return np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :3]


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """How far ``other``'s top 3 agrees with ``reference``'s, row by row (see the docstring)."""
    ref, oth = _top3(reference), _top3(other)
    overlap = (ref[:, :, None] == oth[:, None, :]).any(axis=2)
    same_sign = (np.sign(np.take_along_axis(reference, ref, axis=1))
                 == np.sign(np.take_along_axis(other, ref, axis=1)))
    return {"rows": int(ref.shape[0]), "top1": round(float(np.mean(ref[:, 0] == oth[:, 0])), 3),
            "top3_overlap": round(float(overlap.mean()), 3),
            "top3_sign": round(float(same_sign.mean()), 3)}


def _compare(model: BoostedWarningClassifier, X: Any) -> dict[str, Any]:
    """TreeSHAP against path attribution on the same rows: agreement, all rows and warned."""
    shap, _ = model.set_params(attribution="treeshap").contributions(X)
    path, _ = model.set_params(attribution="path").contributions(X)
    model.set_params(attribution="treeshap")
    warned = model.predict(X) == model.classes_[1]
    out: dict[str, Any] = {"all": agreement(shap, path)}
    out["warned"] = agreement(shap[warned], path[warned]) if warned.any() else None
    return out


def _path_measure(model: BoostedWarningClassifier, X: pl.DataFrame, repeats: int,
                  shap_repeats: int | None, former: bool) -> dict[str, Any]:
    """Both attributions' ``_measure`` on the same rows (TreeSHAP only when asked)."""
    out: dict[str, Any] = {}
    if shap_repeats is not None:
        out["treeshap"] = _measure(model.set_params(attribution="treeshap"), X, repeats,
                                   shap_repeats, former)
    out["path"] = _measure(model.set_params(attribution="path"), X, repeats, repeats, False)
    model.set_params(attribution="treeshap")
    if shap_repeats is not None:
        out["agreement"] = _compare(model, X)
    return out


def _quality_module() -> Any:
    """``bench/quality.py`` (its fleet and landing, not copied here), imported as
    ``bench.quality`` from the repository root so that its landing pool's spawned workers
    can import it too (a module loaded from a file path they could not)."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.append(root)
    return importlib.import_module("bench.quality")


def fleet_agreement(vehicles: int, days: int, seed: int) -> dict[str, Any]:
    """The deployed estimator of each component on a simulated fleet: agreement of path
    attribution with TreeSHAP on the held-out vehicles' rows."""
    from edge.wire.contract import COMPONENTS
    from models.evaluate import split_by_vehicle
    from pipeline.features.daily import (
        attach_labels,
        build_daily_features,
        label_column,
        model_features,
    )
    from pipeline.ml.training import estimator_for
    from pipeline.store.connection import connect

    quality = _quality_module()
    out: dict[str, Any] = {"vehicles": vehicles, "days": days, "seed": seed, "components": {}}
    with tempfile.TemporaryDirectory(prefix="fleetcare-explain-") as tmp:
        path = Path(tmp) / "fleet.duckdb"
        specs = quality._fleet(vehicles, seed, days, 0.8)
        quality.build_store(path, specs, days, seed, 2, 0.5)
        con = connect(path)
        labelled = attach_labels(build_daily_features(con), con)
        con.close()
    for component in COMPONENTS:
        rows = labelled.filter(pl.col(label_column(component)).is_not_null())
        y = rows[label_column(component)].to_numpy().astype(bool)
        ids = rows["vehicle_id"].to_numpy()
        if y.sum() < 2:
            out["components"][component] = None
            continue
        train, test = split_by_vehicle(ids, 0.5, seed, stratify=y)
        names = model_features(component)
        X = rows.select(pl.col(names).cast(pl.Float64))
        model = estimator_for(component, names, seed).fit(
            X.filter(pl.Series(train)), y[train], groups=ids[train])
        held = X.filter(pl.Series(test))
        result = _compare(model, held)
        result["features"] = len(names)
        result["trees"] = model.booster_.num_trees()
        out["components"][component] = result
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=int, default=40)
    parser.add_argument("--train", type=int, default=100_000)
    parser.add_argument("--score", default="100000,1000000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--boosted-max-rows", type=int, default=100_000,
                        help="largest scoring size for TreeSHAP (~0.5 ms a row)")
    parser.add_argument("--path-max-rows", type=int, default=1_000_000,
                        help="largest scoring size for the boosted model's path attribution")
    parser.add_argument("--boosted-explain-repeats", type=int, default=1)
    parser.add_argument("--fleet-vehicles", type=int, default=0,
                        help="also compare the attributions on a simulated fleet (0: not)")
    parser.add_argument("--fleet-days", type=int, default=365)
    parser.add_argument("--only", choices=["synthetic", "fleet"], default=None)
    parser.add_argument("--models", nargs="+",
                        default=["logistic", "boosted", "boosted_triples", "boosted_pairwise",
                                 "boosted_additive", "boosted_depth3"],
                        help="which fits of the synthetic table to measure")
    args = parser.parse_args()
    report: dict[str, Any] = {"features": args.features, "train_rows": args.train,
                              "repeats": args.repeats, "cpus": os.cpu_count(),
                              "load_average_start": [round(v, 2) for v in os.getloadavg()],
                              "results": {}}
    if args.only != "fleet":
        _synthetic(args, report)
    if args.fleet_vehicles and args.only != "synthetic":
        report["fleet"] = fleet_agreement(args.fleet_vehicles, args.fleet_days, seed=0)
    report["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(report, indent=2))


def _synthetic(args: argparse.Namespace, report: dict[str, Any]) -> None:
    X, y = _table(args.train, args.features, seed=0)
    models: dict[str, FaultWarningClassifier] = {
        "logistic": FaultWarningClassifier(), "boosted": BoostedWarningClassifier(),
        "boosted_triples": BoostedWarningClassifier(interactions=3),
        "boosted_pairwise": BoostedWarningClassifier(interactions=2),
        "boosted_additive": BoostedWarningClassifier(interactions=1),
        "boosted_depth3": BoostedWarningClassifier(max_depth=3, num_leaves=8)}
    models = {k: v for k, v in models.items() if k in args.models}
    for name, model in models.items():
        start = time.process_time()
        model.fit(X, y)
        report["results"][name] = {"fit_cpu_s": round(time.process_time() - start, 2),
                                   "scoring": []}
    for size in (int(s) for s in args.score.split(",")):
        Xs, ys = _table(size, args.features, seed=size)
        for name, model in models.items():
            if isinstance(model, BoostedWarningClassifier) and model.shape_tables() is not None:
                result = _measure(model, Xs, args.repeats, args.repeats, former=False)
                result["tables"] = _table_sizes(model)
            elif isinstance(model, BoostedWarningClassifier):
                if size > max(args.boosted_max_rows, args.path_max_rows):
                    continue
                shap = args.boosted_explain_repeats if size <= args.boosted_max_rows else None
                result = _path_measure(model, Xs, args.repeats, shap, former=size <= 100_000)
            else:
                result = _measure(model, Xs, args.repeats, args.repeats,
                                  former=size <= 100_000)
            result["roc_auc"] = round(float(roc_auc_score(ys, model.predict_proba(Xs)[:, 1])),
                                      4)
            report["results"][name]["scoring"].append(result)


def _table_sizes(model: BoostedWarningClassifier) -> dict[str, int]:
    """How many tables of one, two and three columns the model's TreeSHAP reads, and their
    cells (a cell per column of its set)."""
    tables = model.shape_tables()
    assert tables is not None
    sizes = [len(g.columns) for g in tables.groups]
    return {"sets_of_1": sizes.count(1), "sets_of_2": sizes.count(2),
            "sets_of_3": sizes.count(3),
            "cells": sum(len(g.columns) * g.shares[0].size for g in tables.groups)}


if __name__ == "__main__":
    main()

"""Predict + top-3 explanations (as scoring writes them, JSON column included) against a bare
``predict_proba`` on the same rows, for both fault-warning classifiers (issue 20 item 2).

Prints JSON. CPU seconds (process time) are the figures; the ratio is bare predict_proba
time over predict + explain time, so 1.0 means explanations are free and the target is >= 0.3.

    .venv/bin/python bench/explanations.py [--features 40 --train 100000 --score 100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

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


def _measure(model: FaultWarningClassifier, X: pl.DataFrame, repeats: int, slow_repeats: int,
             former: bool) -> dict[str, Any]:
    bare = _cpu(lambda: model.predict_proba(X), repeats)
    full = _cpu(lambda: (model.predict_proba(X), model.explain_json(X, top=3)), slow_repeats)
    contrib = _cpu(lambda: model.contributions(X), slow_repeats)
    out: dict[str, Any] = {
        "rows": X.height, "explain_repeats": slow_repeats, "predict_proba_s": round(bare, 3),
        "predict_explain_json_s": round(full, 3), "contributions_s": round(contrib, 3),
        "ratio": round(bare / full, 3)}
    if former:
        old = _cpu(lambda: (model.predict_proba(X), _former(model, X)), 1)
        out["former_predict_explain_json_s"] = round(old, 3)
        out["former_ratio"] = round(bare / old, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=int, default=40)
    parser.add_argument("--train", type=int, default=100_000)
    parser.add_argument("--score", default="100000,1000000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--boosted-max-rows", type=int, default=100_000,
                        help="largest scoring size for the boosted model (TreeSHAP: ~0.5 ms a row)")
    parser.add_argument("--boosted-explain-repeats", type=int, default=1)
    args = parser.parse_args()
    X, y = _table(args.train, args.features, seed=0)
    models: dict[str, FaultWarningClassifier] = {
        "logistic": FaultWarningClassifier(), "boosted": BoostedWarningClassifier()}
    report: dict[str, Any] = {"features": args.features, "train_rows": args.train,
                              "repeats": args.repeats, "results": {}}
    for name, model in models.items():
        start = time.process_time()
        model.fit(X, y)
        report["results"][name] = {"fit_cpu_s": round(time.process_time() - start, 2),
                                   "scoring": []}
    for size in (int(s) for s in args.score.split(",")):
        Xs, _ = _table(size, args.features, seed=size)
        for name, model in models.items():
            boosted = isinstance(model, BoostedWarningClassifier)
            if boosted and size > args.boosted_max_rows:
                continue
            slow = args.boosted_explain_repeats if boosted else args.repeats
            report["results"][name]["scoring"].append(
                _measure(model, Xs, args.repeats, slow, former=size <= 100_000))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Benchmark: which choice buys what on a heavy-tailed, imbalanced failure table with gaps.

Prints one JSON object. The table is our own synthetic stand-in for a truck fleet's failure
data (the public one that issue 17 cites is not shipped): one row per truck, counters and
histogram bins that grow with operating hours and so span orders of magnitude, a few
percent of rare spikes, many missing cells (some columns mostly missing), and about 1.5 %
failures driven by a hidden wear level, partly through an interaction (wear hurts more under
stress). A false alarm costs 10, a missed failure 500.

Every candidate is cross-validated on the *same* 5 stratified folds in one run, and fitted
on one core (LightGBM ``n_jobs=1``, BLAS and OpenMP held to one thread):

- ``all_negative``: never warn;
- ``plain_gbm``: scikit-learn ``HistGradientBoostingClassifier``, defaults,
  ``class_weight="balanced"``, warns at 0.5;
- ``logistic``: ``FaultWarningClassifier`` on the raw inputs;
- ``logistic_robust``: the same with the signed-``log1p`` transform (``robust=True``);
- ``boosted_uncalibrated``: ``BoostedWarningClassifier``'s class-weighted trees with their own
  probabilities (threshold tuned on those, out of fold): the same fits as ``boosted``;
- ``boosted``: ``BoostedWarningClassifier``, Platt-calibrated (ours, the default of
  ``fleetcare models evaluate``).

``choices`` sets neighbours side by side: what the transform, boosting, calibration and the
cost-tuned threshold each bought, in cost and in Brier score / calibration error.

    .venv/bin/python bench/evaluate_tabular.py [--rows 30000] [--seed 0] [--failure-modes 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit
from threadpoolctl import threadpool_limits

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# ``models`` package: drop that folder before importing ours.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from models import (  # noqa: E402
    BoostedWarningClassifier,
    FaultWarningClassifier,
    cost_optimal_threshold,
)
from models.crossval import (  # noqa: E402
    Candidate,
    FoldedCost,
    Scorer,
    all_negative_candidate,
    fold_splits,
    folded_cost,
    plain_gbm_candidate,
    warning_candidate,
)

COST_FP, COST_FN = 10.0, 500.0
COUNTERS, HISTOGRAMS, BINS = 40, 6, 10


def _counters(rng: np.random.Generator, usage: NDArray[np.float64],
              hidden: dict[str, NDArray[np.float64]]) -> list[NDArray[np.float64]]:
    """Counters ~ hours x lognormal noise x 10^k; the first 20 carry wear (6 of them stress
    too), the next 6 heat."""
    n = usage.size
    out: list[NDArray[np.float64]] = []
    for j in range(COUNTERS):
        beta = 0.6 if j < 10 else (0.25 if j < 20 else 0.0)
        gamma = 0.5 if 10 <= j < 16 else 0.0
        delta = 0.7 if 20 <= j < 26 else 0.0
        noise = rng.normal(0.0, rng.uniform(0.8, 2.0), n)
        shift = beta * hidden["wear"] + gamma * hidden["stress"] + delta * hidden["heat"]
        c = usage ** rng.uniform(0.7, 1.3) * np.exp(shift + noise)
        c *= 10 ** rng.uniform(0, 5)
        spike = rng.random(n) < 0.02
        c[spike] *= rng.pareto(1.0, int(spike.sum())) + 1.0
        out.append(np.round(c))
    return out


def _histograms(rng: np.random.Generator, usage: NDArray[np.float64],
                hidden: dict[str, NDArray[np.float64]]) -> list[NDArray[np.float64]]:
    """Histograms of 10 bins whose totals follow hours; wear shifts the first two, stress the
    next two, heat the last two (temperature bands)."""
    n = usage.size
    out: list[NDArray[np.float64]] = []
    bins = np.arange(BINS)
    for h in range(HISTOGRAMS):
        total = usage * 10 ** rng.uniform(3, 5) * np.exp(rng.normal(0, 0.3, n))
        centre = rng.uniform(2, 7) + [0.5 * hidden["wear"], 0.4 * hidden["stress"],
                                      0.6 * hidden["heat"]][h // 2]
        weight = np.exp(-0.5 * ((bins[None, :] - centre[:, None]) / 1.6) ** 2) + 1e-3
        weight *= rng.gamma(5.0, 0.2, (n, BINS))
        weight /= weight.sum(axis=1, keepdims=True)
        out.extend(np.round(total[:, None] * weight).T)
    return out


def failure_table(rows: int, seed: int, modes: int = 2
                  ) -> tuple[NDArray[np.float64], NDArray[np.int_]]:
    """The synthetic truck table: (X with NaN for missing cells, 0/1 failures).

    Failure mode 1 is worn parts, likelier under stress (an interaction). With ``modes=2`` a
    truck also fails when it runs hot beyond a point (a hinge in a hidden heat level that
    shows in a few counters and two temperature histograms): either mode fails the truck, as
    on a real vehicle with more than one way to break. With ``modes=1`` every failure is worn
    parts, and the log of each counter is linear in the wear: the easiest case for a logistic
    model on log inputs.
    """
    rng = np.random.default_rng(seed)
    usage = rng.lognormal(0.0, 1.0, rows)
    hidden = {name: rng.normal(size=rows) for name in ("wear", "stress", "heat")}
    wear, stress = hidden["wear"], hidden["stress"]
    worn = (-6.0 if modes == 1 else -6.4) + 1.6 * wear + 0.9 * np.maximum(wear, 0) * np.maximum(
        stress, 0) + 0.3 * np.log(usage)
    hot = -7.0 + 3.0 * np.maximum(hidden["heat"] - 1.0, 0.0)
    y = (rng.random(rows) < expit(worn)).astype(int)
    if modes == 2:
        y |= (rng.random(rows) < expit(hot)).astype(int)
    X = np.column_stack(_counters(rng, usage, hidden)
                        + _histograms(rng, usage, hidden)).astype(float)
    rates = rng.choice([0.0, 0.01, 0.05, 0.2, 0.5, 0.8], size=X.shape[1],
                       p=[0.2, 0.3, 0.2, 0.15, 0.1, 0.05])
    X[rng.random(X.shape) < rates[None, :]] = np.nan
    return X, y


def _boosted_pair(seed: int) -> tuple[Candidate, Candidate]:
    """``boosted`` and ``boosted_uncalibrated`` from one fit per fold (run in that order)."""
    fitted: list[BoostedWarningClassifier] = []

    def calibrated(X: NDArray[np.float64], y: NDArray[Any], groups: NDArray[Any] | None
                   ) -> tuple[Scorer, float]:
        model = BoostedWarningClassifier(cost_fp=COST_FP, cost_fn=COST_FN, random_state=seed)
        model.fit(X, y, groups=groups)
        fitted.append(model)
        return (lambda rows: model.predict_proba(rows)[:, 1]), float(model.threshold_)

    def uncalibrated(X: NDArray[np.float64], y: NDArray[Any], groups: NDArray[Any] | None
                     ) -> tuple[Scorer, float]:
        model = fitted.pop(0)
        cut = cost_optimal_threshold(y, expit(model.oof_raw_), COST_FP, COST_FN)
        return (lambda rows: expit(model.booster_.predict(rows, raw_score=True))), cut

    return calibrated, uncalibrated


def _summary(folded: FoldedCost, cpu_s: float) -> dict[str, Any]:
    keys = ("cost", "tp", "fp", "tn", "fn", "precision", "recall", "roc_auc", "brier")
    finite = [t for t in folded.fold_thresholds if np.isfinite(t)]
    return {**{k: folded.report[k] for k in keys}, "calibration_ece": folded.calibration_ece,
            "fold_costs": folded.fold_costs,
            "fold_thresholds": finite or None,
            "threshold_spread": folded.threshold_spread if finite else None,
            "cpu_seconds": round(cpu_s, 1)}


def _choice(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {"cost_before": before["cost"], "cost_after": after["cost"],
            "cost_ratio": round(after["cost"] / before["cost"], 3),
            "brier_before": before["brier"], "brier_after": after["brier"],
            "ece_before": before["calibration_ece"], "ece_after": after["calibration_ece"]}


def run(rows: int, seed: int, modes: int = 2) -> dict[str, Any]:
    """Every candidate on the same folds of one table; the JSON this script prints."""
    X, y = failure_table(rows, seed, modes)
    splits = fold_splits(y, None, folds=5, seed=seed)
    boosted, uncalibrated = _boosted_pair(seed)
    candidates: list[tuple[str, Candidate]] = [
        ("all_negative", all_negative_candidate()),
        ("plain_gbm", plain_gbm_candidate(seed)),
        ("logistic", warning_candidate(_logistic(seed, robust=False))),
        ("logistic_robust", warning_candidate(_logistic(seed, robust=True))),
        ("boosted", boosted),
        ("boosted_uncalibrated", uncalibrated),
    ]
    out: dict[str, dict[str, Any]] = {}
    for name, candidate in candidates:
        start = time.process_time()
        folded = folded_cost(candidate, X, y, splits, cost_fp=COST_FP, cost_fn=COST_FN)
        out[name] = _summary(folded, time.process_time() - start)
    return {
        "table": {"rows": rows, "columns": int(X.shape[1]), "positives": int(y.sum()),
                  "positive_rate": round(float(y.mean()), 4),
                  "missing_cells": round(float(np.isnan(X).mean()), 4), "seed": seed,
                  "failure_modes": modes},
        "cost_fp": COST_FP, "cost_fn": COST_FN, "folds": len(splits),
        "candidates": out,
        "choices": {
            "robust_transform": _choice(out["logistic"], out["logistic_robust"]),
            "boosting": _choice(out["logistic_robust"], out["boosted"]),
            "calibration": _choice(out["boosted_uncalibrated"], out["boosted"]),
            "against_plain_gbm": _choice(out["plain_gbm"], out["boosted"]),
            "against_all_negative": _choice(out["all_negative"], out["boosted"]),
        },
    }


def _logistic(seed: int, *, robust: bool) -> Callable[[], FaultWarningClassifier]:
    return lambda: FaultWarningClassifier(cost_fp=COST_FP, cost_fn=COST_FN, random_state=seed,
                                          robust=robust)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--failure-modes", type=int, choices=(1, 2), default=2,
                        help="2: worn parts or running hot; 1: worn parts only")
    args = parser.parse_args()
    start = time.perf_counter()
    with threadpool_limits(limits=1):  # one core: BLAS and OpenMP alike
        result = run(args.rows, args.seed, args.failure_modes)
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Battery life on the NASA cells: error and 80 % coverage over cut points, and regeneration.

Leave one cell out: each cell is forecast by a :class:`models.BatteryLifeForecaster` trained
on the other cells, at every ``--every``-th cut point from the first cut a forecast is made
at (``min_points`` rows) until the cell crosses the threshold. A forecast at one cut would
say little: the interval may be right at one cut and wrong at the next ten.

The baseline, measured in the same run on the same cuts: a straight line through the last
``--last`` points, extended to the threshold, with an 80 % interval from the t-interval of
its slope. Regeneration sensitivity: at every jump up in a cell's capacity (a rise of more
than three robust standard deviations of its cycle-to-cycle changes), how far the forecast
crossing moves between the cut before the jump and the cut that includes it; medians over
jumps, ours and the baseline's.

Two NASA cells to score is little to judge a coverage by, so the same figures are also taken
on synthetic cells (a quadratic fade of random rate from a random start, noise, and a
regeneration after each rest, every 15 to 40 cycles): for 3, 8 and 20 training cells, each
model forecasts ``--synthetic-cells`` new cells at every ``--every``-th cut, over
``--seeds`` seeds.

    .venv/bin/python bench/battery_life.py [--data ../shared/data/battery_nasa]
        [--threshold 1.4] [--value capacity] [--every 5] [--last 20] [--seeds 5]
        [--synthetic-cells 8]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]  # bench/models.py

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from scipy import stats  # noqa: E402

from models import BatteryLifeForecaster, crossing_index  # noqa: E402

History = tuple[np.ndarray, np.ndarray]
Forecast = tuple[float, float, float]
"""Predicted crossing and its 80 % interval (low, high), on the history's axis."""
CELLS = ("B0005", "B0006", "B0007")
COVERAGE = 0.8


def _read(path: Path, value: str) -> History:
    frame = pl.read_csv(path).sort("discharge")
    return frame["discharge"].cast(pl.Float64).to_numpy(), frame[value].to_numpy()


def _line_forecast(history: History, threshold: float, last: int) -> Forecast:
    """The baseline: a line through the last points (all, if fewer), extended to the threshold.

    Its interval is where the lines at either end of the slope's t-interval cross.
    """
    t, y = history[0][-last:], history[1][-last:]
    cap = 5.0 * (history[0][-1] - history[0][0] + 1.0)
    now = float(t[-1])
    fit = stats.linregress(t, y)
    level = fit.intercept + fit.slope * now
    spread = stats.t.ppf(0.5 + COVERAGE / 2, t.size - 2) * fit.stderr

    def crossing(slope: float) -> float:
        return now + (min(max((level - threshold) / -slope, 0.0), cap) if slope < 0 else cap)

    return crossing(fit.slope), crossing(fit.slope - spread), crossing(fit.slope + spread)


def _ours(model: BatteryLifeForecaster) -> Callable[[History], Forecast]:
    def forecast(history: History) -> Forecast:
        f = model.forecast(history)
        return f.crossing, f.low, f.high
    return forecast


def _jumps(y: np.ndarray) -> list[int]:
    """Rows whose value rose by more than three robust standard deviations of the changes."""
    step = np.diff(y)
    scale = 1.4826 * float(np.median(np.abs(step - np.median(step))))
    return [int(i) + 1 for i in np.flatnonzero(step > 3 * scale)]


def _cell(history: History, model: BatteryLifeForecaster, threshold: float, every: int,
          last: int) -> dict[str, Any]:
    t, y = history
    methods = {"ours": _ours(model),
               "baseline": lambda h: _line_forecast(h, threshold, last)}
    first, end = model.min_points, crossing_index(y, threshold)
    jumps = [j for j in _jumps(y) if j >= first and (end is None or j < end)]
    shifts = {name: [abs(fc((t[: j + 1], y[: j + 1]))[0] - fc((t[:j], y[:j]))[0])
                     for j in jumps] for name, fc in methods.items()}
    out: dict[str, Any] = {"jumps": jumps, "shifts": shifts}
    if end is None:
        return {**out, "crossing": None, "censored": True}
    cuts = range(first, end + 1, every)
    forecasts = {name: [fc((t[:c], y[:c])) for c in cuts] for name, fc in methods.items()}
    return {**out, "crossing": float(t[end]), "cuts": len(cuts), "forecasts": forecasts,
            **{name: _figures([(float(t[end]), f)]) for name, f in forecasts.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=_HERE.parent.parent / "shared" / "data"
                        / "battery_nasa", help="folder of <cell>_cycles.csv files")
    parser.add_argument("--threshold", type=float, default=1.4)
    parser.add_argument("--value", default="capacity", help="capacity or soh column")
    parser.add_argument("--every", type=int, default=5, help="cycles between cut points")
    parser.add_argument("--last", type=int, default=20, help="points in the baseline's line")
    parser.add_argument("--seeds", type=int, default=5,
                        help="synthetic runs per training size (0: NASA cells only)")
    parser.add_argument("--synthetic-cells", type=int, default=8,
                        help="synthetic cells forecast per run")
    args = parser.parse_args()
    files = [args.data / f"{c}_cycles.csv" for c in CELLS]
    if missing := [str(p) for p in files if not p.exists()]:
        print(f"NASA cell files not found: {', '.join(missing)} (give their folder: --data)",
              file=sys.stderr)
        return 2
    started = time.perf_counter()
    histories = {c: _read(p, args.value) for c, p in zip(CELLS, files, strict=True)}
    cells = {}
    for cell, history in histories.items():
        model = BatteryLifeForecaster(threshold=args.threshold).fit_histories(
            [h for c, h in histories.items() if c != cell])
        cells[cell] = _cell(history, model, args.threshold, args.every, args.last)
    report = _report(cells, args, time.perf_counter() - started)
    started = time.perf_counter()
    report["synthetic"] = {str(n): _synthetic_run(n, args) for n in (3, 8, 20)
                           if args.seeds > 0}
    report["synthetic_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))
    return 0


def _synthetic_cell(rng: np.random.Generator, n: int = 260) -> History:
    """A cell like the NASA ones: quadratic fade, noise, a regeneration after every rest."""
    t = np.arange(1.0, n + 1)
    y = (rng.uniform(1.85, 2.05) - rng.uniform(0.0015, 0.0035) * t
         - rng.uniform(0.0, 4e-6) * t**2 + rng.normal(0.0, 0.004, n))
    for rest in np.cumsum(rng.integers(15, 40, size=n // 15)):
        if rest < n:
            y[rest:] += rng.uniform(0.02, 0.1) * np.exp(-np.arange(n - rest) / 3.0)
    return t, y


def _synthetic_run(n_train: int, args: argparse.Namespace) -> dict[str, Any]:
    """Coverage and error over cut points of new synthetic cells, pooled over seeds."""
    per_cell: list[tuple[float, list[Forecast]]] = []
    baseline: list[tuple[float, list[Forecast]]] = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(1000 * n_train + seed)
        model = BatteryLifeForecaster(threshold=1.4).fit_histories(
            [_synthetic_cell(rng) for _ in range(n_train)])
        forecast = _ours(model)
        for _ in range(args.synthetic_cells):
            t, y = _synthetic_cell(rng)
            end = crossing_index(y, 1.4)
            if end is None or end <= model.min_points:
                continue
            cuts = range(model.min_points, end + 1, args.every)
            per_cell.append((float(t[end]), [forecast((t[:c], y[:c])) for c in cuts]))
            baseline.append((float(t[end]), [_line_forecast((t[:c], y[:c]), 1.4, args.last)
                                             for c in cuts]))
    return {"cells": len(per_cell), "cuts": sum(len(f) for _, f in per_cell),
            "ours": _figures(per_cell), "baseline": _figures(baseline)}


def _report(cells: dict[str, dict[str, Any]], args: argparse.Namespace,
            seconds: float) -> dict[str, Any]:
    """Per cell and pooled over every cut of every crossing cell (each cut counts once)."""
    crossing = {c: r for c, r in cells.items() if r["crossing"] is not None}
    pooled = {name: _figures([(r["crossing"], r["forecasts"][name]) for r in crossing.values()])
              for name in ("ours", "baseline")}
    shifts = {name: [s for r in cells.values() for s in r["shifts"][name]]
              for name in ("ours", "baseline")}
    median = {name: float(np.median(s)) if s else None for name, s in shifts.items()}
    return {
        "threshold": args.threshold, "value": args.value, "every": args.every,
        "baseline_last": args.last, "coverage_target": COVERAGE,
        "cells": {c: {k: v for k, v in r.items() if k not in ("forecasts", "shifts")}
                  for c, r in cells.items()},
        "pooled": {"cuts": sum(r["cuts"] for r in crossing.values()), **pooled},
        "regeneration": {"jumps": len(shifts["ours"]), "median_shift": median,
                         "max_shift": {name: max(s, default=None) for name, s in shifts.items()},
                         "ratio": (median["ours"] / median["baseline"]
                                   if median["ours"] is not None and median["baseline"]
                                   else None)},
        "seconds": round(seconds, 1),
    }


def _figures(per_cell: list[tuple[float, list[Forecast]]]) -> dict[str, float]:
    """Mean absolute error, bias, coverage and mean width over every (truth, forecast)."""
    errors = [f[0] - truth for truth, fs in per_cell for f in fs]
    hits = [f[1] <= truth <= f[2] for truth, fs in per_cell for f in fs]
    widths = [f[2] - f[1] for _, fs in per_cell for f in fs]
    return {"mae": float(np.mean(np.abs(errors))), "bias": float(np.mean(errors)),
            "coverage": float(np.mean(hits)), "mean_width": float(np.mean(widths))}


if __name__ == "__main__":
    sys.exit(main())

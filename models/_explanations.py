"""Top-k explanations picked, rounded and written as JSON on whole matrices.

Scoring explains every scored row; building one Python dict per row and ``json.dumps`` of it
cost 20-50 ``predict_proba`` calls. Here the picking is ``top`` argmax passes over the
contribution matrix (ties go to the lower column, as a stable sort of the magnitudes did),
and the JSON text is assembled by polars string expressions, byte-identical to ``json.dumps``
of the dicts :func:`as_dicts` gives.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

__all__ = ["TopContributions", "as_dicts", "as_json", "pick_top", "python_round4"]


@dataclass(frozen=True)
class TopContributions:
    """Per row, the ``k`` picked columns, largest magnitude first.

    ``index`` holds column numbers, ``contribution`` and ``value`` the rounded figures
    (``value`` NaN where the vehicle did not report); all three are ``(n_rows, k)``.
    """

    index: NDArray[np.intp]
    contribution: NDArray[np.float64]
    value: NDArray[np.float64]


def python_round4(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """``round(v, 4)`` of Python for every element, on the whole array.

    ``np.round`` scales, rounds and divides; that equals Python's correctly rounded result
    except where the scaled value lies within its own rounding error of a half, or is too large
    to hold its fraction. Only those few elements are rounded one by one.
    """
    x = np.asarray(x, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = x * 1e4
        out = np.round(scaled) / 1e4
        frac = np.abs(scaled - np.trunc(scaled))
        unsure = ~(np.abs(frac - 0.5) > 1e-6 + 1e-12 * np.abs(scaled)) | ~(np.abs(scaled) < 2.0**52)
    unsure &= ~np.isnan(x)
    if unsure.any():
        out[unsure] = [round(float(v), 4) for v in x[unsure]]
    return out


def _numpy_round4(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(np.round(x, 4), dtype=float)


def pick_top(contrib: NDArray[np.float64], values: NDArray[np.float64], top: int,
             python_rounding: bool = False) -> TopContributions:
    """The ``top`` columns of each row by ``|contribution|``, ties to the lower column.

    Args:
        contrib: ``(n_rows, n_columns)`` contributions.
        values: the inputs they came from, same shape, NaN where missing.
        top: columns per row (at most ``n_columns`` are returned).
        python_rounding: round as Python's ``round`` (the logistic model's former per-row
            output) instead of ``np.round`` (the boosted one's).
    """
    contrib = np.asarray(contrib, dtype=float)
    values = np.asarray(values, dtype=float)
    k = min(max(top, 0), contrib.shape[1])
    mag = np.abs(contrib)
    mag[np.isnan(mag)] = -1.0  # NaN sorted after every number in the former stable argsort
    index = np.empty((contrib.shape[0], k), dtype=np.intp)
    rows = np.arange(contrib.shape[0])
    for j in range(k):
        index[:, j] = np.argmax(mag, axis=1)
        mag[rows, index[:, j]] = -np.inf
    rnd = python_round4 if python_rounding else _numpy_round4
    picked = rnd(np.take_along_axis(contrib, index, axis=1))
    shown = rnd(np.take_along_axis(values, index, axis=1))
    return TopContributions(index, picked, shown)


def as_dicts(top: TopContributions, names: list[str]) -> list[list[dict[str, Any]]]:
    """``explain``'s public form: per row a list of ``{"feature", "contribution", "value"}``."""
    label = np.asarray(names, dtype=object)[top.index].tolist()
    return [
        [{"feature": f, "contribution": c, "value": None if math.isnan(v) else v}
         for f, c, v in zip(fs, cs, vs, strict=True)]
        for fs, cs, vs in zip(label, top.contribution.tolist(), top.value.tolist(),
                              strict=True)
    ]


def _number(values: NDArray[np.float64]) -> pl.Expr:
    """JSON text of each float as ``json.dumps`` writes it (NaN as ``null``)."""
    s = pl.Series(values, dtype=pl.Float64, nan_to_null=True)
    return (pl.when(s.is_null()).then(pl.lit("null"))
            .when(s == float("inf")).then(pl.lit("Infinity"))
            .when(s == float("-inf")).then(pl.lit("-Infinity"))
            .otherwise(pl.lit(s).cast(pl.String)))


def as_json(top: TopContributions, names: list[str]) -> pl.Series:
    """Each row's ``json.dumps(as_dicts(...)[row])``, built by polars on whole columns."""
    n, k = top.index.shape
    if k == 0:
        return pl.Series("explanation", ["[]"] * n, dtype=pl.String)
    quoted = pl.Series([json.dumps(name) for name in names], dtype=pl.String)
    parts: list[pl.Expr | str] = ["["]
    for j in range(k):
        parts += [pl.lit(", ") if j else pl.lit(""), pl.lit('{"feature": '),
                  pl.lit(quoted.gather(top.index[:, j])), pl.lit(', "contribution": '),
                  _number(top.contribution[:, j]), pl.lit(', "value": '),
                  _number(top.value[:, j]), pl.lit("}")]
    parts.append(pl.lit("]"))
    exprs = [pl.lit(p) if isinstance(p, str) else p for p in parts]
    frame = pl.DataFrame({"_row": np.arange(n)})
    return frame.select(pl.concat_str(exprs).alias("explanation"))["explanation"]

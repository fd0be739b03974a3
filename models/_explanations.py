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


PICK_CHUNK_ROWS = 16_384
"""Rows whose magnitudes are picked at a time: a 5 MB buffer reused for every chunk. A fresh
``abs`` of a whole 1M x 40 matrix cost more in first-touch page faults than the picking."""


def pick_top(contrib: NDArray[np.float64], values: NDArray[np.float64], top: int,
             python_rounding: bool = False) -> TopContributions:
    """The ``top`` columns of each row by ``|contribution|``, ties to the lower column.

    ``top`` argmax passes, each marking its pick as taken, beat ``argpartition`` (which would
    also need its ties mended) for the three columns scoring asks for.

    Args:
        contrib: ``(n_rows, n_columns)`` contributions.
        values: the inputs they came from, same shape, NaN where missing.
        top: columns per row (at most ``n_columns`` are returned).
        python_rounding: round as Python's ``round`` (the logistic model's former per-row
            output) instead of ``np.round`` (the boosted one's).
    """
    contrib = np.asarray(contrib, dtype=float)
    values = np.asarray(values, dtype=float)
    n, d = contrib.shape
    k = min(max(top, 0), d)
    index = np.empty((n, k), dtype=np.intp)
    if k and n:
        buffer = np.empty((min(n, PICK_CHUNK_ROWS), d))
        for start in range(0, n, PICK_CHUNK_ROWS):
            stop = min(n, start + PICK_CHUNK_ROWS)
            mag = np.abs(contrib[start:stop], out=buffer[:stop - start])
            missing = np.isnan(mag)
            if missing.any():
                mag[missing] = -1.0  # NaN sorted after every number in the former argsort
            rows = np.arange(stop - start)
            for j in range(k):
                picked = np.argmax(mag, axis=1)
                index[start:stop, j] = picked
                mag[rows, picked] = -np.inf
    rnd = python_round4 if python_rounding else _numpy_round4
    chosen = rnd(np.take_along_axis(contrib, index, axis=1))
    shown = rnd(np.take_along_axis(values, index, axis=1))
    return TopContributions(index, chosen, shown)


def as_dicts(top: TopContributions, names: list[str]) -> list[list[dict[str, Any]]]:
    """``explain``'s public form: per row a list of ``{"feature", "contribution", "value"}``."""
    label = np.asarray(names, dtype=object)[top.index].tolist()
    return [
        [{"feature": f, "contribution": c, "value": None if math.isnan(v) else v}
         for f, c, v in zip(fs, cs, vs, strict=True)]
        for fs, cs, vs in zip(label, top.contribution.tolist(), top.value.tolist(),
                              strict=True)
    ]


def _number(values: NDArray[np.float64]) -> pl.Series | pl.Expr:
    """JSON text of each float as ``json.dumps`` writes it (NaN as ``null``).

    Polars' float-to-string cast writes the shortest round-tripping digits, as ``repr`` does;
    only infinities need spelling out, and the when/then chain for them is built only when
    there is one.
    """
    s = pl.Series(values, dtype=pl.Float64, nan_to_null=True)
    if np.isinf(values).any():
        return (pl.when(s.is_null()).then(pl.lit("null"))
                .when(s == float("inf")).then(pl.lit("Infinity"))
                .when(s == float("-inf")).then(pl.lit("-Infinity"))
                .otherwise(pl.lit(s).cast(pl.String)))
    text = s.cast(pl.String)
    return text.fill_null("null") if text.null_count() else text


def as_json(top: TopContributions, names: list[str]) -> pl.Series:
    """Each row's ``json.dumps(as_dicts(...)[row])``, built by polars on whole columns.

    The literal text around each feature name is folded into a per-column lookup table
    (``'[{"feature": "name", "contribution": '`` for the first pick, ``'}, {"feature": ...'``
    for the others), so one gather gives three pieces and the concatenation has 13 parts.
    """
    n, k = top.index.shape
    if k == 0:
        return pl.Series("explanation", ["[]"] * n, dtype=pl.String)
    quoted = [json.dumps(name) for name in names]
    heads = [pl.Series([f'{lead}{{"feature": {q}, "contribution": ' for q in quoted],
                       dtype=pl.String) for lead in ("[", "}, ")]
    columns: dict[str, pl.Series] = {}
    parts: list[pl.Expr] = []
    for j in range(k):
        columns[f"head{j}"] = heads[min(j, 1)].gather(top.index[:, j])
        parts += [pl.col(f"head{j}")]
        for name, figures, lead in ((f"contribution{j}", top.contribution[:, j], None),
                                    (f"value{j}", top.value[:, j], ', "value": ')):
            if lead is not None:
                parts.append(pl.lit(lead))
            text = _number(figures)
            if isinstance(text, pl.Series):
                columns[name] = text
                parts.append(pl.col(name))
            else:
                parts.append(text)
    parts.append(pl.lit("}]"))
    return pl.DataFrame(columns).select(pl.concat_str(parts).alias("explanation"))["explanation"]

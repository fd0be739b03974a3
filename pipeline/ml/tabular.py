"""Reading a data engineer's own CSV files for the model commands, with clear refusals.

Empty cells and ``na``/``NA``/``NaN`` are missing values. Columns that are not numeric are
not guessed at: they are left out and named in the result, so nothing disappears unseen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl

from pipeline.errors import TerminalPipelineError

NULLS: Final = ["", "na", "NA", "n/a", "N/A", "NaN", "nan", "null", "NULL"]
_TRUE: Final = {"1", "true", "yes", "y", "t", "fail", "failed"}
_FALSE: Final = {"0", "false", "no", "n", "f", "ok"}


class BadTableError(TerminalPipelineError):
    """A CSV file cannot be used as given; the message says what to change."""


@dataclass(frozen=True, slots=True)
class LabelledTable:
    """Numeric features and a binary label read from a CSV file.

    Attributes:
        X: feature matrix (NaN where a cell was missing).
        y: 0/1 labels (1: the component failed).
        features: names of the columns in ``X``.
        ignored_columns: non-numeric columns left out, with an example value.
        unlabelled_rows: rows left out because their label cell was empty.
        groups: the group column's values per row (None without a group column).
    """

    X: np.ndarray
    y: np.ndarray
    features: list[str]
    ignored_columns: dict[str, str]
    unlabelled_rows: int
    groups: np.ndarray | None = None


def _read(path: Path) -> pl.DataFrame:
    try:
        return pl.read_csv(path, null_values=NULLS, infer_schema_length=None)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise BadTableError(f"cannot read {path} as CSV: {exc}") from exc


def _labels(column: pl.Series) -> pl.Series:
    """0/1 labels from numbers (0 and 1) or words (true/false, yes/no, ...)."""
    if column.dtype == pl.Boolean:
        return column.cast(pl.Int8)
    if column.dtype.is_numeric():
        values = set(column.unique().to_list())
        if not values <= {0, 1}:
            raise BadTableError(f"label column {column.name!r} must hold 0 and 1, "
                                f"found {sorted(values)[:6]}")
        return column.cast(pl.Int8)
    words = column.cast(pl.String).str.strip_chars().str.to_lowercase()
    unknown = set(words.unique().to_list()) - _TRUE - _FALSE
    if unknown:
        raise BadTableError(f"label column {column.name!r} must say 0/1 or true/false, "
                            f"found {sorted(unknown)[:6]}")
    return words.is_in(list(_TRUE)).cast(pl.Int8)


def read_labelled_csv(path: Path, label: str, group: str | None = None) -> LabelledTable:
    """The numeric columns of ``path`` as features and ``label`` as the 0/1 target.

    ``group`` names a column (e.g. the vehicle id) that is kept apart from the features and
    returned as each row's group; rows with an empty group cell count as one group each.

    Raises:
        BadTableError: the file is unreadable, has no such label column, its labels are not
            binary, or no numeric feature column is left.
    """
    frame = _read(path)
    for name in (label, group):
        if name is not None and name not in frame.columns:
            raise BadTableError(f"{path} has no column {name!r}; its columns are "
                                f"{frame.columns}")
    has_label = frame.filter(pl.col(label).is_not_null())
    y = _labels(has_label[label]).to_numpy()
    features, ignored = [], {}
    for name in has_label.columns:
        column = has_label[name]
        if name in (label, group):
            continue
        if column.dtype.is_numeric() or column.dtype == pl.Boolean or column.null_count() == len(
                column):
            features.append(name)
        else:
            ignored[name] = str(column.drop_nulls()[0])
    if not features:
        raise BadTableError(f"{path} has no numeric column besides {label!r}")
    X = has_label.select(pl.col(features).cast(pl.Float64)).to_numpy()
    groups = None
    if group is not None:
        col = has_label[group].cast(pl.String)
        groups = col.fill_null(pl.Series([f"\0row{i}" for i in range(col.len())])).to_numpy()
    return LabelledTable(X, y, features, ignored, frame.height - has_label.height, groups)


def read_history_csv(path: Path, axis: str, value: str) -> tuple[np.ndarray, np.ndarray]:
    """A capacity (or SoH) history: the ``axis`` and ``value`` columns, sorted by the axis.

    Rows missing either cell are skipped (a history can have gaps).

    Raises:
        BadTableError: a column is missing or not numeric, or the axis repeats a value.
    """
    frame = _read(path)
    for name in (axis, value):
        if name not in frame.columns:
            raise BadTableError(f"{path} has no column {name!r}; its columns are "
                                f"{frame.columns} (choose them with --axis/--value)")
        if not frame[name].dtype.is_numeric():
            raise BadTableError(f"column {name!r} of {path} is not numeric")
    rows = frame.select(pl.col(axis).cast(pl.Float64), pl.col(value).cast(pl.Float64))
    rows = rows.drop_nulls().sort(axis)
    if rows[axis].is_duplicated().any():
        raise BadTableError(f"{path}: the axis column {axis!r} repeats values; "
                            "one row per cycle, day or km")
    return rows[axis].to_numpy(), rows[value].to_numpy()

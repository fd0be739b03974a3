"""Daily features materialised in the store (table ``daily_features``), one day range at a time.

Features are point-in-time (see :mod:`pipeline.features.daily`), so a day's row never changes once
its data has landed; materialising them lets notebooks, reports and the CRM's evidence read
them without rebuilding. The table is long (``vehicle_id, day, feature, value``) so that a new
feature in :mod:`pipeline.features.daily` needs no migration. Writing a range first deletes that
range, in the same transaction, so a repeated or retried run leaves exactly one row per
(vehicle, day, feature).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

import duckdb
import polars as pl

from pipeline.features.daily import LOOKBACK_DAYS, build_daily_features
from pipeline.store.connection import transaction

KEYS: Final = ("vehicle_id", "day")
LONG_SCHEMA: Final = {"vehicle_id": pl.String, "day": pl.Date, "feature": pl.String,
                      "value": pl.Float64}


@dataclass(frozen=True, slots=True)
class DayRange:
    """Whole UTC days ``start`` to ``end``, both included."""

    start: dt.date
    end: dt.date

    def days(self) -> list[dt.date]:
        """Every day of the range, in order."""
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]


def latest_telemetry_day(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The UTC day of the newest telemetry row (None: no telemetry)."""
    rows = con.execute("SELECT CAST(timezone('UTC', max(ts)) AS DATE) FROM telemetry").fetchall()
    return rows[0][0] if rows and rows[0][0] is not None else None


def recent_days(con: duckdb.DuckDBPyConnection, days: int) -> DayRange | None:
    """The last ``days`` days up to the newest telemetry (simulated fleets live in the past)."""
    last = latest_telemetry_day(con)
    if last is None:
        return None
    return DayRange(last - dt.timedelta(days=max(days, 1) - 1), last)


def compute_daily_features(con: duckdb.DuckDBPyConnection, days: DayRange) -> pl.DataFrame:
    """Long feature rows for ``days`` (reads :data:`LOOKBACK_DAYS` before it, so each row
    equals the full build's); null values are left out."""
    since = dt.datetime.combine(days.start - dt.timedelta(days=LOOKBACK_DAYS), dt.time.min,
                                tzinfo=dt.UTC)
    until = dt.datetime.combine(days.end, dt.time.max, tzinfo=dt.UTC)
    wide = build_daily_features(con, since=since, until=until)
    wide = wide.filter(pl.col("day").is_between(days.start, days.end))
    if wide.is_empty():
        return pl.DataFrame(schema=LONG_SCHEMA)
    values = [c for c in wide.columns if c not in KEYS]
    return (wide.with_columns(pl.col(values).cast(pl.Float64))
            .unpivot(values, index=list(KEYS), variable_name="feature", value_name="value")
            .drop_nulls("value").cast(LONG_SCHEMA)  # type: ignore[arg-type]
            .sort("vehicle_id", "day", "feature"))


def write_daily_features(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame,
                         days: DayRange) -> int:
    """Replace every ``daily_features`` row of ``days`` with ``rows``; returns rows written."""
    with transaction(con):
        con.execute("DELETE FROM daily_features WHERE day BETWEEN ? AND ?", [days.start, days.end])
        if rows.height:
            con.register("_daily_features", rows)
            con.execute("INSERT INTO daily_features (vehicle_id, day, feature, value)"
                        " SELECT vehicle_id, day, feature, value FROM _daily_features")
            con.unregister("_daily_features")
    return rows.height


def materialise_daily_features(con: duckdb.DuckDBPyConnection, days: DayRange) -> int:
    """Compute and write ``days``' features on one connection; returns rows written."""
    return write_daily_features(con, compute_daily_features(con, days), days)

"""Daily features materialised in the store (table ``daily_features``), one day range at a time.

Features are point-in-time (see :mod:`pipeline.features.daily`), so a day's row never changes once
its data has landed; materialising them lets notebooks, reports and the CRM's evidence read
them without rebuilding. The table is long (``vehicle_id, day, feature, value``) so that a new
feature in :mod:`pipeline.features.daily` needs no migration. Writing a range first deletes
that range (of each chunk's vehicles), in the same transaction, so a repeated or retried run
leaves exactly one row per (vehicle, day, feature); the table has no key index (at a million
vehicles a day is tens of millions of rows, and the index cost three times the insert), this
one writer keeps it unique.

Each day written by :func:`materialise_daily_features` is recorded in ``daily_feature_inputs``
with the digest of what its features read (:mod:`pipeline.features.freshness`): scoring reads
a day's rows instead of rebuilding them only while the store still gives that digest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import duckdb
import polars as pl

from pipeline.features.daily import (
    CHUNK_VEHICLES,
    LOOKBACK_DAYS,
    build_daily_features,
    vehicle_ranges,
)
from pipeline.features.freshness import input_digests
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


def compute_daily_features(con: duckdb.DuckDBPyConnection, days: DayRange,
                           vehicles: tuple[str, str] | None = None) -> pl.DataFrame:
    """Long feature rows for ``days`` (reads :data:`LOOKBACK_DAYS` before it, so each row
    equals the full build's), of every vehicle or of the inclusive id range ``vehicles``;
    null values are left out."""
    since, until = _read_span(days)
    wide = build_daily_features(con, since=since, until=until, vehicles=vehicles)
    return _long(wide.filter(pl.col("day").is_between(days.start, days.end)))


def write_daily_features(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame,
                         days: DayRange, inputs: Mapping[dt.date, str] | None = None) -> int:
    """Replace every ``daily_features`` row of ``days`` with ``rows``; returns rows written.

    ``inputs`` (a digest per day, :func:`pipeline.features.freshness.input_digests` taken
    before ``rows`` were computed) marks those days fresh for scoring; without it the range's
    days are left unmarked, so scoring builds them from telemetry rather than trust rows it
    cannot date (a partitioned run's writer did not see what its partitions read)."""
    with transaction(con):
        _clear(con, days)
        _unmark(con, days)
        _insert(con, rows)
        _record_inputs(con, days, inputs or {})
    return rows.height


def materialise_daily_features(con: duckdb.DuckDBPyConnection, days: DayRange,
                               chunk_vehicles: int = CHUNK_VEHICLES) -> int:
    """Compute and write ``days``' features on one connection, one chunk of vehicles at a
    time; returns rows written.

    Each chunk replaces its vehicles' rows in a transaction of its own, so memory follows the
    chunk, not the fleet: in one transaction for the whole range DuckDB held every inserted
    row in transaction-local storage until the commit (about 95 bytes a row, 4.5 GB for a
    day of a million vehicles). A vehicle's rows are whole at every moment, the old ones or
    the new. The days' freshness marks go first and come back last, with the digest of their
    inputs taken before anything was computed: while a run is under way, or after one
    failed, the days are unmarked and scoring builds them from telemetry, and anything that
    lands during the run makes them stale rather than wrongly fresh.
    """
    inputs = input_digests(con, days.days())
    since, until = _read_span(days)
    _unmark(con, days)
    ranges = vehicle_ranges(con, chunk_vehicles, since=since, until=until)
    written = 0
    for (first, last), ids in zip(ranges, _replaced_ids(ranges), strict=True):
        rows = compute_daily_features(con, days, vehicles=(first, last))
        with transaction(con):
            _clear(con, days, ids)
            _insert(con, rows)
        written += rows.height
    with transaction(con):
        if not ranges:
            _clear(con, days)
        _record_inputs(con, days, inputs)
    return written


def _replaced_ids(ranges: list[tuple[str, str]]) -> list[tuple[str | None, str | None]]:
    """Per chunk, the ids whose old rows it replaces: from its first id (the first chunk: from
    the lowest) up to the next chunk's first, excluded (the last chunk: to the highest), so
    the chunks' spans cover every id and the rows of a vehicle no longer in the telemetry
    go too."""
    starts: list[str | None] = [None, *(first for first, _ in ranges[1:])]
    ends: list[str | None] = [*(first for first, _ in ranges[1:]), None]
    return list(zip(starts, ends, strict=True))


def _read_span(days: DayRange) -> tuple[dt.datetime, dt.datetime]:
    """The telemetry instants ``days``' features read: their lookback, then the days."""
    since = dt.datetime.combine(days.start - dt.timedelta(days=LOOKBACK_DAYS), dt.time.min,
                                tzinfo=dt.UTC)
    return since, dt.datetime.combine(days.end, dt.time.max, tzinfo=dt.UTC)


def _long(wide: pl.DataFrame) -> pl.DataFrame:
    """Wide feature rows as long ``vehicle_id, day, feature, value`` rows, nulls left out."""
    if wide.is_empty():
        return pl.DataFrame(schema=LONG_SCHEMA)
    values = [c for c in wide.columns if c not in KEYS]
    return (wide.with_columns(pl.col(values).cast(pl.Float64))
            .unpivot(values, index=list(KEYS), variable_name="feature", value_name="value")
            .drop_nulls("value").cast(LONG_SCHEMA)  # type: ignore[arg-type]
            .sort("vehicle_id", "day", "feature"))


def _clear(con: duckdb.DuckDBPyConnection, days: DayRange,
           ids: tuple[str | None, str | None] = (None, None)) -> None:
    """Delete ``days``' rows of the vehicles from ``ids[0]`` (included) to ``ids[1]``
    (excluded), an open end reaching every id."""
    low, high = ids
    con.execute("DELETE FROM daily_features WHERE day BETWEEN $start AND $end"
                " AND ($low IS NULL OR vehicle_id >= $low)"
                " AND ($high IS NULL OR vehicle_id < $high)",
                {"start": days.start, "end": days.end, "low": low, "high": high})


def _unmark(con: duckdb.DuckDBPyConnection, days: DayRange) -> None:
    con.execute("DELETE FROM daily_feature_inputs WHERE day BETWEEN ? AND ?",
                [days.start, days.end])


def _insert(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame) -> None:
    """Append ``rows`` day by day, so a day's rows sit together and a read of one day skips
    the others by their zonemaps (scoring reads each vehicle's latest day)."""
    if not rows.height:
        return
    con.register("_daily_features", rows)
    try:
        con.execute("INSERT INTO daily_features (vehicle_id, day, feature, value)"
                    " SELECT vehicle_id, day, feature, value FROM _daily_features"
                    " ORDER BY day, vehicle_id, feature")
    finally:
        con.unregister("_daily_features")


def _record_inputs(con: duckdb.DuckDBPyConnection, days: DayRange,
                   inputs: Mapping[dt.date, str]) -> None:
    marks = [(d, inputs[d]) for d in days.days() if d in inputs]
    if marks:
        con.executemany("INSERT INTO daily_feature_inputs (day, inputs) VALUES (?, ?)", marks)

"""Backfill: daily features and scores for a range of past days, idempotently.

Both steps replace what they write (features by day range, scores by day and component), so
a backfill run twice, or retried after a failure half-way, leaves one row per key.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pipeline.features.materialised import DayRange, materialise_daily_features
from pipeline.ml import scoring


@dataclass(frozen=True, slots=True)
class BackfillReport:
    """What one :func:`backfill` wrote."""

    start: str
    end: str
    feature_rows: int
    days_scored: int
    score_rows: int


def backfill(con: duckdb.DuckDBPyConnection, days: DayRange) -> BackfillReport:
    """Materialise features for ``days`` and score every day of it with the promoted models."""
    if days.end < days.start:
        raise ValueError(f"backfill range ends ({days.end}) before it starts ({days.start})")
    feature_rows = materialise_daily_features(con, days)
    score_rows = sum(scoring.score_fleet(con, as_of=day).rows for day in days.days())
    return BackfillReport(days.start.isoformat(), days.end.isoformat(), feature_rows,
                          len(days.days()), score_rows)

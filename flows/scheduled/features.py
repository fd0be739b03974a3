"""Daily features into the serving store, and backfills of features and scores.

``features`` (daily) materialises the last ``days`` days, or ``start``..``end``; with
``buckets`` > 1 the work is split per vehicle bucket on the flow's task runner
(:mod:`flows.scheduled.partitioned`). ``backfill`` (on demand) does features and scores for a past
range. Both replace what they write, so a repeated or retried run never duplicates a row.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from prefect import flow, task

from flows.scheduled.common import RETRIES, STORE_TAG, SnapshotParam, serving_store
from flows.scheduled.partitioned import features_by_partition
from pipeline.features.materialised import DayRange, materialise_daily_features, recent_days
from pipeline.ml.backfill import backfill


def day_range(start: str | None, end: str | None) -> DayRange:
    """``start``..``end`` (ISO dates) as a range; a clear error when it is malformed."""
    if not start or not end:
        raise ValueError("give both start and end (YYYY-MM-DD), or neither")
    try:
        days = DayRange(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
    except ValueError as exc:
        raise ValueError(f"start and end must be dates like 2025-03-01: {exc}") from exc
    if days.end < days.start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    return days


@task(tags=[STORE_TAG], **RETRIES)
def pick_days(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None,
              days: int) -> DayRange | None:
    """The last ``days`` days up to the newest landed telemetry (None: nothing landed)."""
    with serving_store(serving_path, snapshot_path, export_dir) as con:
        return recent_days(con, days)


@task(tags=[STORE_TAG], **RETRIES)
def materialise(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None,
                days: DayRange) -> int:
    """Replace ``days`` in ``daily_features`` (one process, one connection)."""
    with serving_store(serving_path, snapshot_path, export_dir) as con:
        return materialise_daily_features(con, days)


@flow(name="features")
def features_flow(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None = None,
                  days: int = 7, start: str | None = None, end: str | None = None,
                  buckets: int = 1) -> dict[str, Any]:
    """Materialise daily features (see the module docstring)."""
    span = (day_range(start, end) if start or end
            else pick_days(serving_path, snapshot_path, export_dir, days))
    if span is None:
        return {"rows": 0, "start": None, "end": None}
    rows = (features_by_partition(serving_path, snapshot_path, export_dir, span, buckets)
            if buckets > 1 else materialise(serving_path, snapshot_path, export_dir, span))
    return {"rows": rows, "start": span.start.isoformat(), "end": span.end.isoformat()}


@task(tags=[STORE_TAG], **RETRIES)
def backfill_range(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None,
                   days: DayRange) -> dict[str, Any]:
    """Features and scores for every day of ``days``."""
    with serving_store(serving_path, snapshot_path, export_dir) as con:
        return dataclasses.asdict(backfill(con, days))


@flow(name="backfill")
def backfill_flow(start: str, end: str, serving_path: str, snapshot_path: SnapshotParam,
                  export_dir: str | None = None) -> dict[str, Any]:
    """Features and scores for ``start``..``end`` (ISO dates), idempotently."""
    result: dict[str, Any] = backfill_range(serving_path, snapshot_path, export_dir,
                                            day_range(start, end))
    return result

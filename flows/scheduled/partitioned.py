"""Per-vehicle work on a task runner: hash-bucket partitions, then one writer.

The plan task (a writer, since opening the serving store syncs it) lists the fleet's vehicles
in buckets; one partition task per bucket computes features or scores from the landing
snapshot alone, read-only, in its own in-memory DuckDB (:mod:`pipeline.ml.partitions`); one
writer task puts every result into the serving store in one transaction. The partition tasks
touch no shared file, so any task runner may run them anywhere that sees the snapshot: the
default thread pool, or Dask (:func:`on_dask`, a local cluster or an existing one's address).

Feature partitions are cached on their inputs, including the snapshot's identity (mtime and
size), and their results persisted, so a retried flow run reuses finished partitions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, TypeVar

import polars as pl
from prefect import Flow, task, unmapped
from prefect.cache_policies import INPUTS

from flows.scheduled.common import RETRIES, STORE_TAG, SnapshotParam, serving_store
from pipeline.features.materialised import DayRange, latest_telemetry_day, write_daily_features
from pipeline.ml import partitions as partitioned
from pipeline.ml import scoring

R = TypeVar("R")


def on_dask(flow: Flow[Any, R], address: str | None = None, n_workers: int = 2,
            processes: bool = False) -> Flow[Any, R]:
    """``flow`` with a Dask task runner: an existing cluster at ``address``
    (``tcp://scheduler:8786``), else a local cluster of ``n_workers`` workers."""
    from prefect_dask import DaskTaskRunner

    runner = (DaskTaskRunner(address=address) if address else DaskTaskRunner(
        cluster_kwargs={"n_workers": n_workers, "processes": processes}))
    return flow.with_options(task_runner=runner)  # type: ignore[arg-type]


@task(tags=[STORE_TAG], **RETRIES)
def plan_partitions(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None,
                    buckets: int) -> list[list[str]]:
    """The fleet's vehicles in ``buckets`` hash buckets (empty buckets left out)."""
    with serving_store(serving_path, snapshot_path, export_dir) as con:
        vehicles = partitioned.fleet_vehicles(con)
    return [p for p in partitioned.partition_vehicles(vehicles, buckets) if p]


@task(**RETRIES, cache_policy=INPUTS, persist_result=True,
      cache_expiration=dt.timedelta(hours=6))
def feature_partition(snapshot_path: SnapshotParam, snapshot_version: str, vehicles: list[str],
                      days: DayRange, export_dir: str | None) -> pl.DataFrame:
    """Long feature rows of one bucket, read-only from the snapshot."""
    return partitioned.partition_features(snapshot_path, vehicles, days, export_dir)


@task(tags=[STORE_TAG], **RETRIES)
def write_feature_partitions(serving_path: str, snapshot_path: SnapshotParam,
                             export_dir: str | None, parts: list[pl.DataFrame],
                             days: DayRange) -> int:
    """Replace ``days`` in ``daily_features`` with every partition's rows (one transaction)."""
    rows = pl.concat(parts) if parts else pl.DataFrame(schema=partitioned.LONG_SCHEMA)
    with serving_store(serving_path, snapshot_path, export_dir) as con:
        return write_daily_features(con, rows, days)


def features_by_partition(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None,
                          days: DayRange, buckets: int) -> int:
    """Features for ``days`` computed per bucket on the flow's task runner, written once."""
    parts = plan_partitions(serving_path, snapshot_path, export_dir, buckets)
    version = partitioned.snapshot_version(snapshot_path)
    futures = feature_partition.map(unmapped(snapshot_path), version, parts, unmapped(days),
                                    unmapped(export_dir))
    return write_feature_partitions(serving_path, snapshot_path, export_dir,
                                    futures.result(), days)


@task(tags=[STORE_TAG], **RETRIES)
def plan_scoring(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None,
                 as_of: dt.date | None) -> tuple[dt.date | None, list[partitioned.PromotedModel]]:
    """The day to score (default: the newest telemetry day) and the promoted models."""
    with serving_store(serving_path, snapshot_path, export_dir) as con:
        return as_of or latest_telemetry_day(con), partitioned.promoted_models(con)


@task(**RETRIES)
def score_partition(snapshot_path: SnapshotParam, vehicles: list[str], as_of: dt.date,
                    models: list[partitioned.PromotedModel],
                    export_dir: str | None) -> tuple[pl.DataFrame, scoring.ScoringReport]:
    """Scores of one bucket and its scoring report, read-only from the snapshot."""
    return partitioned.partition_scores(snapshot_path, vehicles, as_of, models, export_dir)


@task(tags=[STORE_TAG], **RETRIES)
def write_score_partitions(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None,
                           as_of: dt.date, components: list[str],
                           parts: list[pl.DataFrame]) -> int:
    """Replace ``as_of``'s scores of ``components`` with every partition's rows."""
    rows = pl.concat(parts) if parts else pl.DataFrame(schema=partitioned.SCORE_SCHEMA)
    with serving_store(serving_path, snapshot_path, export_dir) as con:
        return partitioned.write_scores(con, as_of, components, rows)


def scores_by_partition(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None,
                        buckets: int, as_of: dt.date | None = None) -> dict[str, Any]:
    """Score the fleet per bucket on the flow's task runner; one writer stores the scores.

    Returns the buckets' scoring reports added up (rows written, and per component the
    vehicles scored and skipped), as a dict like the one-writer ``score`` task's."""
    day, models = plan_scoring(serving_path, snapshot_path, export_dir, as_of)
    if day is None or not models:
        return dataclasses.asdict(scoring.ScoringReport(day, 0, ()))
    parts = plan_partitions(serving_path, snapshot_path, export_dir, buckets)
    futures = score_partition.map(unmapped(snapshot_path), parts, unmapped(day), unmapped(models),
                                  unmapped(export_dir))
    results = futures.result()
    written = write_score_partitions(serving_path, snapshot_path, export_dir, day,
                                     [m.component for m in models], [f for f, _ in results])
    report = scoring.merge_reports(r for _, r in results)
    return {**dataclasses.asdict(report), "rows": written}

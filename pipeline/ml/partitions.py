"""Per-vehicle work split into hash buckets, so a task runner (Dask) can spread it out.

Every feature and score of a vehicle depends on that vehicle's rows only, so the fleet splits
cleanly by vehicle. A vehicle's bucket is a stable hash of its id (CRC-32, the same on every
machine and Python run), so a vehicle always lands in the same partition.

A partition never touches the serving store: it opens its own in-memory DuckDB database,
``ATTACH``es the landing snapshot read-only, sees only its vehicles through the same views the
serving store uses (:func:`pipeline.store.serving.define_landing_views`), runs the unchanged
pipeline functions there and returns a polars frame. One writer then puts every partition's frame
into the serving store (:func:`pipeline.features.materialised.write_daily_features`,
:func:`write_scores`).
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from pipeline.features.materialised import LONG_SCHEMA, DayRange, compute_daily_features
from pipeline.ml import scoring
from pipeline.store import connection as store
from pipeline.store.connection import transaction
from pipeline.store.serving import Snapshots, attach_landing, define_landing_views, snapshot_paths

SCORE_SCHEMA = {"vehicle_id": pl.String, "component": pl.String, "as_of": pl.Date,
                "probability": pl.Float64, "horizon_days": pl.Int32, "model_id": pl.String,
                "explanation": pl.String}


__all__ = ["LONG_SCHEMA", "SCORE_SCHEMA", "PromotedModel", "bucket_of", "fleet_vehicles",
           "open_partition", "partition_features", "partition_scores", "partition_vehicles",
           "promoted_models", "snapshot_version", "write_scores"]


@dataclass(frozen=True, slots=True)
class PromotedModel:
    """What a partition needs of a promoted model to score with it."""

    model_id: str
    component: str
    features: tuple[str, ...]
    metrics: str
    artifact: bytes
    required_signals: tuple[str, ...] | None = None
    optional_signals: tuple[str, ...] | None = None


def bucket_of(vehicle_id: str, buckets: int) -> int:
    """The partition of ``vehicle_id`` among ``buckets`` (stable across processes)."""
    return zlib.crc32(vehicle_id.encode("utf-8")) % buckets


def partition_vehicles(vehicle_ids: Collection[str], buckets: int) -> list[list[str]]:
    """``vehicle_ids`` split into ``buckets`` sorted lists (some may be empty)."""
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, got {buckets}")
    parts: list[list[str]] = [[] for _ in range(buckets)]
    for vehicle_id in sorted(set(vehicle_ids)):
        parts[bucket_of(vehicle_id, buckets)].append(vehicle_id)
    return parts


def snapshot_version(snapshot_path: Snapshots) -> str:
    """Identity of the snapshot files' content (mtime and size of each, in order): a new
    snapshot of any ingest worker, a new key."""
    stats = [Path(p).stat() for p in snapshot_paths(snapshot_path)]
    return "+".join(f"{stat.st_mtime_ns}-{stat.st_size}" for stat in stats)


def fleet_vehicles(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every vehicle with telemetry."""
    return [r[0] for r in con.execute(
        "SELECT DISTINCT vehicle_id FROM telemetry ORDER BY 1").fetchall()]


def promoted_models(con: duckdb.DuckDBPyConnection) -> list[PromotedModel]:
    """The promoted model of each component, as partitions receive them."""
    rows = con.execute("SELECT model_id, component, features, CAST(metrics AS VARCHAR), artifact,"
                       " required_signals, optional_signals"
                       " FROM model_registry WHERE promoted ORDER BY component").fetchall()
    return [PromotedModel(m, c, tuple(f), metrics, bytes(a), _tuple(r), _tuple(o))
            for m, c, f, metrics, a, r, o in rows]


def _tuple(values: list[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


@contextmanager
def open_partition(snapshot_path: Snapshots, vehicles: Sequence[str],
                   export_dir: str | Path | None = None
                   ) -> Iterator[duckdb.DuckDBPyConnection]:
    """A private in-memory store that sees only ``vehicles``' landed rows (read-only), from one
    snapshot or the union of several (one per ingest worker)."""
    con = duckdb.connect(":memory:", config=store.resource_config())
    try:
        store.migrate(con)
        attach_landing(con, snapshot_path)
        define_landing_views(con, export_dir, vehicles=vehicles)
        yield con
    finally:
        con.close()


def partition_features(snapshot_path: Snapshots, vehicles: Sequence[str], days: DayRange,
                       export_dir: str | Path | None = None) -> pl.DataFrame:
    """Long daily-feature rows of ``vehicles`` for ``days``."""
    with open_partition(snapshot_path, vehicles, export_dir) as con:
        return compute_daily_features(con, days)


def partition_scores(snapshot_path: Snapshots, vehicles: Sequence[str], as_of: dt.date,
                     models: Sequence[PromotedModel],
                     export_dir: str | Path | None = None
                     ) -> tuple[pl.DataFrame, scoring.ScoringReport]:
    """Scores of ``vehicles`` as of ``as_of`` with ``models`` (what score_fleet would write),
    and the partition's scoring report (:func:`pipeline.ml.scoring.merge_reports` adds them)."""
    with open_partition(snapshot_path, vehicles, export_dir) as con:
        for m in models:
            con.execute("INSERT INTO model_registry (model_id, component, features, metrics,"
                        " artifact, promoted, required_signals, optional_signals)"
                        " VALUES (?, ?, ?, ?, ?, true, ?, ?)",
                        [m.model_id, m.component, list(m.features), m.metrics, m.artifact,
                         m.required_signals, m.optional_signals])
        report = scoring.score_fleet(con, as_of=as_of)
        return con.sql(
            "SELECT vehicle_id, component, as_of, probability, horizon_days, model_id,"
            " CAST(explanation AS VARCHAR) AS explanation FROM scores").pl().cast(
                SCORE_SCHEMA), report


def write_scores(con: duckdb.DuckDBPyConnection, as_of: dt.date, components: Sequence[str],
                 scores: pl.DataFrame) -> int:
    """Replace the ``scores`` of ``as_of`` for ``components`` with ``scores``, in one
    transaction (a retried run writes the same rows again, never twice)."""
    with transaction(con):
        con.execute("DELETE FROM scores WHERE as_of = ? AND list_contains(?, component)",
                    [as_of, list(components)])
        if scores.height:
            con.register("_partition_scores", scores)
            con.execute(
                "INSERT INTO scores (vehicle_id, component, as_of, probability, horizon_days,"
                " model_id, explanation) SELECT vehicle_id, component, as_of, probability,"
                " horizon_days, model_id, explanation::JSON FROM _partition_scores")
            con.unregister("_partition_scores")
    return scores.height

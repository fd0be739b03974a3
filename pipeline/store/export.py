"""Readers that never block ingest: cold telemetry in Parquet, and snapshots of the store.

DuckDB lets one process open a file read-write, and then no other process can open it at
all. So the ingest process, the store's one writer, also publishes what readers need:

* **Cold telemetry moves to Parquet**, partitioned by day and vehicle
  (``<dir>/telemetry/date=YYYY-MM-DD/vehicle_id=V/part-<export>-N.parquet``), which keeps
  the DuckDB file small. :func:`attach_exports` defines the view ``telemetry_all`` over the
  table and the Parquet files, so a query sees every row wherever it lives.
* **Snapshots**: the writer copies the store into a new file (``COPY FROM DATABASE``) and
  renames it over the previous snapshot; notebooks, features and the CLI open the snapshot
  read-only, and can take their time.

An export is crash-safe and moves each row exactly once: the files are written to a
staging folder, the rows are deleted and the export recorded in ``telemetry_exports`` in
the same transaction as the ``COPY``, and only then are the files renamed into place. A
staging folder left by a crash is finished (recorded export) or discarded (not recorded)
by the next export.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import duckdb

from pipeline.errors import StoreError

log = logging.getLogger(__name__)

STAGING: Final = "_staging"
HIVE_TYPES: Final = "{'date': DATE, 'vehicle_id': VARCHAR}"


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What one :func:`export_cold` call moved (``export_id`` None: nothing was old enough)."""

    export_id: str | None
    cutoff: datetime
    rows: int
    files: int


def telemetry_glob(directory: str | Path) -> str:
    """The glob that matches every exported telemetry file under ``directory``."""
    return str(Path(directory).resolve() / "telemetry" / "*" / "*" / "*.parquet")


def export_cold(con: duckdb.DuckDBPyConnection, directory: str | Path, older_than_days: float,
                now: datetime | None = None) -> ExportReport:
    """Move telemetry older than ``older_than_days`` (whole UTC days) into Parquet.

    Raises:
        StoreError: the export failed; nothing was deleted from the store.
    """
    root = Path(directory).resolve()
    recover(con, root)
    moment = now or datetime.now(UTC)
    cutoff = (moment - timedelta(days=older_than_days)).replace(
        hour=0, minute=0, second=0, microsecond=0)
    export_id = f"{moment:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    staging = root / STAGING / export_id
    try:
        rows = _copy_and_delete(con, staging, export_id, cutoff)
    except duckdb.Error as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise StoreError(f"exporting telemetry before {cutoff:%Y-%m-%d} failed: {exc}") from exc
    if rows == 0:
        return ExportReport(None, cutoff, 0, 0)
    files = _publish(staging, root / "telemetry")
    log.info("exported %d telemetry rows before %s to %d files", rows, cutoff, files)
    return ExportReport(export_id, cutoff, rows, files)


def _copy_and_delete(con: duckdb.DuckDBPyConnection, staging: Path, export_id: str,
                     cutoff: datetime) -> int:
    con.begin()
    try:
        row = con.execute("SELECT count(*) FROM telemetry WHERE ts < $cutoff",
                          {"cutoff": cutoff}).fetchone()
        rows = int(row[0]) if row else 0
        if rows:
            staging.parent.mkdir(parents=True, exist_ok=True)
            con.execute(
                "COPY (SELECT vehicle_id, ts, signal, value, msg_id, "
                "CAST(timezone('UTC', ts) AS DATE) AS date FROM telemetry WHERE ts < $cutoff) "
                f"TO '{_quoted(staging)}' (FORMAT parquet, PARTITION_BY (date, vehicle_id), "
                f"FILENAME_PATTERN 'part-{export_id}-{{i}}')", {"cutoff": cutoff})
            con.execute("DELETE FROM telemetry WHERE ts < $cutoff", {"cutoff": cutoff})
            con.execute("INSERT INTO telemetry_exports (export_id, cutoff, n_rows) "
                        "VALUES ($id, $cutoff, $rows)",
                        {"id": export_id, "cutoff": cutoff, "rows": rows})
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return rows


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def _publish(staging: Path, target: Path) -> int:
    """Rename every staged file into ``target`` (same partition folders); drop ``staging``."""
    moved = 0
    for source in sorted(staging.rglob("*.parquet")):
        destination = target / source.relative_to(staging)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, destination)
        moved += 1
    shutil.rmtree(staging, ignore_errors=True)
    return moved


def recover(con: duckdb.DuckDBPyConnection, directory: str | Path) -> None:
    """Finish exports a crash interrupted after their commit; discard uncommitted ones."""
    root = Path(directory).resolve()
    staged = root / STAGING
    if not staged.is_dir():
        return
    for folder in sorted(p for p in staged.iterdir() if p.is_dir()):
        row = con.execute("SELECT count(*) FROM telemetry_exports WHERE export_id = $id",
                          {"id": folder.name}).fetchone()
        if row and row[0]:
            log.warning("finishing export %s interrupted after its commit", folder.name)
            _publish(folder, root / "telemetry")
        else:
            log.warning("discarding export %s interrupted before its commit", folder.name)
            shutil.rmtree(folder, ignore_errors=True)


def attach_exports(con: duckdb.DuckDBPyConnection, directory: str | Path) -> None:
    """Define the temporary view ``telemetry_all``: the ``telemetry`` table (when ``con``
    has one) plus every exported Parquet file, with the same columns.

    Works on a read-only connection and on an in-memory one (exports only).
    """
    parts = []
    has_table = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = "
                            "'telemetry'").fetchone()
    if has_table and has_table[0]:
        parts.append("SELECT vehicle_id, ts, signal, value, msg_id FROM telemetry")
    if any(Path(directory).resolve().glob("telemetry/*/*/*.parquet")):
        parts.append("SELECT vehicle_id, ts, signal, value, msg_id FROM read_parquet("
                     f"'{_quoted(Path(telemetry_glob(directory)))}', hive_partitioning = true, "
                     f"hive_types = {HIVE_TYPES})")
    if not parts:
        parts.append("SELECT NULL::VARCHAR AS vehicle_id, NULL::TIMESTAMPTZ AS ts, "
                     "NULL::VARCHAR AS signal, NULL::DOUBLE AS value, NULL::VARCHAR AS msg_id "
                     "WHERE false")
    con.execute("CREATE OR REPLACE TEMP VIEW telemetry_all AS " + " UNION ALL ".join(parts))


def write_snapshot(con: duckdb.DuckDBPyConnection, snapshot: str | Path) -> Path:
    """Copy the whole store into a new file and rename it to ``snapshot`` atomically.

    DuckDB does the copy (``COPY FROM DATABASE``) inside one read transaction, so the
    snapshot is consistent. The writer's file is never opened from Python: closing any
    descriptor of a file drops the process's POSIX locks on it, and with them DuckDB's
    write lock. Call it from the writer's thread between batches.

    Raises:
        StoreError: the copy failed (the previous snapshot, if any, stays in place).
    """
    target = Path(snapshot).resolve()
    partial = target.with_name(target.name + ".partial")
    row = con.execute("SELECT current_database()").fetchone()
    source = str(row[0]) if row else "memory"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        con.execute(f"ATTACH '{_quoted(partial)}' AS fleetcare_snapshot")
        try:
            con.execute(f'COPY FROM DATABASE "{source}" TO fleetcare_snapshot')
        finally:
            con.execute("DETACH fleetcare_snapshot")
        os.replace(partial, target)
    except (duckdb.Error, OSError) as exc:
        raise StoreError(f"cannot write the snapshot {target}: {exc}") from exc
    return target


@dataclass(frozen=True, slots=True)
class ExportPolicy:
    """Periodic maintenance for :class:`pipeline.ingest.service.Ingestor`: export, then snapshot.

    Args:
        directory: where Parquet exports go (None: no export).
        cold_after_days: telemetry older than this many whole days moves to Parquet.
        snapshot: where the read-only snapshot of the store goes (None: no snapshot).
    """

    directory: Path | None = None
    cold_after_days: float = 7.0
    snapshot: Path | None = None

    def __call__(self, con: duckdb.DuckDBPyConnection) -> None:
        if self.directory is not None:
            export_cold(con, self.directory, self.cold_after_days)
        if self.snapshot is not None:
            write_snapshot(con, self.snapshot)

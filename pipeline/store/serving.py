"""The serving store: the flows' own DuckDB file, reading the landing store through a snapshot.

DuckDB lets one process open a file read-write, and then no other process can open it at all.
``fleetcare ingest`` holds the landing store (telemetry, fault codes, ground truth, vehicles,
agent health, dead letters) for as long as it runs, so scheduled flows never open it. They
open the **serving store** instead, a second DuckDB file that they alone write (models,
scores, daily features, leads, outbox, campaigns, health checks), and read what ingest landed
through the latest read-only snapshot ingest publishes (``fleetcare ingest --snapshot``):

* the snapshot is ``ATTACH``ed ``READ_ONLY AS landing``;
* TEMP views named like the landing tables (:data:`LANDING_TABLES`) shadow the serving file's
  own empty tables of those names, so every pipeline function works unchanged on the
  connection; ``telemetry`` also covers the exported Parquet files when ``export_dir`` is given;
* the fleet register (``vehicles``: model, region) is upserted from the snapshot, keeping the
  serving store's customer and centre assignments and every vehicle ``fleetcare fleet import``
  registered (``imported_at``) as imported, and leads and outbox rows that ingest's
  urgent path created in the landing store are copied once (by ``lead_id`` / ``event_id``),
  so scheduled advice deduplicates against them and scheduled delivery retries them.

TEMP views belong to one connection: a ``con.cursor()`` sees the serving file's own (empty)
landing tables, not the views. Use the connection itself.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Final

import duckdb

from pipeline.errors import StoreError, TransientPipelineError
from pipeline.store import connection as store
from pipeline.store.export import HIVE_TYPES, telemetry_glob

LANDING: Final = "landing"
"""The schema name the snapshot is attached under."""
LANDING_TABLES: Final = ("telemetry", "dtc_events", "ground_truth", "edge_health",
                         "ingested_messages", "dead_letters", "vehicle_info")
"""Landing tables read through TEMP views (the serving file's tables of these names stay empty)."""
PARTITION_TABLE: Final = "_partition_vehicles"
_VEHICLE_TABLES: Final = ("telemetry", "dtc_events", "ground_truth", "edge_health",
                          "vehicle_info")
_NEWER_TABLES: Final = frozenset({"vehicle_info"})
"""Landing tables a snapshot from an ingest that predates them lacks: until ingest runs the
version that adds them, the serving file's own (empty) table stands in."""
_TELEMETRY_COLUMNS: Final = "vehicle_id, ts, signal, value, msg_id"


class ServingStoreBusyError(TransientPipelineError):
    """Another process holds the serving store's write lock; a later attempt may get it."""


def connect_serving(serving_path: str | Path, snapshot_path: str | Path,
                    export_dir: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """Open the serving store read-write, with the landing snapshot behind its views.

    Raises:
        ServingStoreBusyError: another process has the serving file open (transient).
        StoreError: the snapshot is missing or unreadable, or the serving file is unusable.
    """
    con = _open_writable(Path(serving_path))
    try:
        store.migrate(con)
        attach_landing(con, snapshot_path)
        define_landing_views(con, export_dir)
        sync_from_landing(con)
    except BaseException:
        con.close()
        raise
    return con


def _open_writable(path: Path) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise ServingStoreBusyError(
                f"the serving store {path} is open in another process (another flow run, or a "
                f"notebook); retry later or give its tasks a concurrency limit of 1: {exc}"
            ) from exc
        raise StoreError(f"cannot open the serving store {path}: {exc}") from exc
    except duckdb.Error as exc:
        raise StoreError(f"cannot open the serving store {path}: {exc}") from exc


def attach_landing(con: duckdb.DuckDBPyConnection, snapshot_path: str | Path) -> None:
    """``ATTACH`` the snapshot read-only as :data:`LANDING`.

    Raises:
        StoreError: there is no snapshot yet, or DuckDB cannot read it.
    """
    snapshot = Path(snapshot_path).resolve()
    if not snapshot.is_file():
        raise StoreError(
            f"no landing snapshot at {snapshot}: run ingest with --snapshot {snapshot} "
            f"(or, with ingest stopped, `fleetcare export --db LANDING --snapshot {snapshot}`)")
    try:
        con.execute(f"ATTACH '{_quoted(snapshot)}' AS {LANDING} (READ_ONLY)")
    except duckdb.Error as exc:
        raise StoreError(f"cannot attach the landing snapshot {snapshot}: {exc}") from exc


def define_landing_views(con: duckdb.DuckDBPyConnection, export_dir: str | Path | None = None,
                         vehicles: Collection[str] | None = None) -> None:
    """TEMP views over the attached landing tables (optionally only ``vehicles``' rows).

    Exported Parquet files join ``telemetry`` only for exports the snapshot records: rows of a
    later export are still in the snapshot's table, so each row is read exactly once.
    """
    if vehicles is not None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {PARTITION_TABLE} (vehicle_id VARCHAR)")
        con.executemany(f"INSERT INTO {PARTITION_TABLE} VALUES (?)", [[v] for v in vehicles])
    present = {str(r[0]) for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = $db",
        {"db": LANDING}).fetchall()}
    for table in LANDING_TABLES:
        if table in _NEWER_TABLES and table not in present:
            continue
        source = (_telemetry_sql(export_dir) if table == "telemetry"
                  else f"SELECT * FROM {LANDING}.{table}")
        if vehicles is not None and table in _VEHICLE_TABLES:
            source = (f"SELECT * FROM ({source}) WHERE vehicle_id IN "
                      f"(SELECT vehicle_id FROM {PARTITION_TABLE})")
        con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS {source}")


def _telemetry_sql(export_dir: str | Path | None) -> str:
    table = f"SELECT {_TELEMETRY_COLUMNS} FROM {LANDING}.telemetry"
    if export_dir is None or not any(Path(export_dir).resolve().glob("telemetry/*/*/*.parquet")):
        return table
    files = (f"read_parquet('{_quoted(Path(telemetry_glob(export_dir)))}', "
             f"hive_partitioning = true, hive_types = {HIVE_TYPES}, filename = true)")
    return (f"{table} UNION ALL SELECT {_TELEMETRY_COLUMNS} FROM {files} "
            "WHERE regexp_extract(filename, 'part-(.+)-[0-9]+\\.parquet$', 1) IN "
            f"(SELECT export_id FROM {LANDING}.telemetry_exports)")


def sync_from_landing(con: duckdb.DuckDBPyConnection) -> None:
    """Upsert the fleet register and copy urgent leads and their outbox rows, in one transaction.

    Customer and centre assignments made in the serving store are kept, and so is an imported
    vehicle's model and region (the DMS export is the register); a lead or outbox row
    already in the serving store is never overwritten (its state moves on here, not there).
    """
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"INSERT INTO vehicles (vehicle_id, model, region) SELECT vehicle_id, model, region"
            f" FROM {LANDING}.vehicles ON CONFLICT (vehicle_id) DO UPDATE"
            " SET model = excluded.model, region = excluded.region"
            " WHERE vehicles.imported_at IS NULL")
        con.execute(f"INSERT INTO leads BY NAME SELECT * FROM {LANDING}.leads"
                    " WHERE lead_id NOT IN (SELECT lead_id FROM leads)")
        con.execute(f"INSERT INTO outbox BY NAME SELECT * FROM {LANDING}.outbox"
                    " WHERE event_id NOT IN (SELECT event_id FROM outbox)")
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        raise StoreError(f"cannot sync the serving store from the landing snapshot: {exc}"
                         ) from exc


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")

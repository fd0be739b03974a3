"""The serving store: the flows' own DuckDB file, reading the landing store through a snapshot.

DuckDB lets one process open a file read-write, and then no other process can open it at all.
``fleetcare ingest`` holds the landing store (telemetry, fault codes, ground truth, vehicles,
agent health, dead letters) for as long as it runs, so scheduled flows never open it. They
open the **serving store** instead, a second DuckDB file that they alone write (models,
scores, daily features, leads, outbox, campaigns, health checks), and read what ingest landed
through the latest read-only snapshot ingest publishes (``fleetcare ingest --snapshot``):

* the snapshot is ``ATTACH``ed ``READ_ONLY AS landing``; with several ingest workers (a shared
  subscription, each worker landing into its own store and publishing its own snapshot), every
  snapshot is attached, the first as ``landing``, the next as ``landing_1``, ``landing_2``, ...
  and the views read their union (see :func:`define_landing_views` for exactly-once);
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

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Final, TypeAlias

import duckdb

from pipeline.errors import StoreError, TransientPipelineError
from pipeline.store import connection as store
from pipeline.store.export import HIVE_TYPES, telemetry_glob

LANDING: Final = "landing"
"""The schema name the (first) snapshot is attached under; the next ones get ``landing_1``..."""
Snapshots: TypeAlias = str | Path | Sequence[str | Path]
"""One landing snapshot, or several (one per ingest worker), in the order they are read."""
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
_WITHOUT_MSG_ID: Final = frozenset({"dead_letters"})
"""Landing tables whose rows carry no ``msg_id``: each store's rows are its own (a message
dead-lettered by two workers is two dead letters, as two copies are in one store)."""


class ServingStoreBusyError(TransientPipelineError):
    """Another process holds the serving store's write lock; a later attempt may get it."""


def connect_serving(serving_path: str | Path, snapshot_path: Snapshots,
                    export_dir: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """Open the serving store read-write, with the landing snapshot(s) behind its views.

    ``snapshot_path`` is one snapshot or a sequence of them (one per ingest worker).

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
        return duckdb.connect(str(path), config=store.resource_config())
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise ServingStoreBusyError(
                f"the serving store {path} is open in another process (another flow run, or a "
                f"notebook); retry later or give its tasks a concurrency limit of 1: {exc}"
            ) from exc
        raise StoreError(f"cannot open the serving store {path}: {exc}") from exc
    except duckdb.Error as exc:
        raise StoreError(f"cannot open the serving store {path}: {exc}") from exc


def snapshot_paths(snapshots: Snapshots) -> list[Path]:
    """The snapshots as absolute paths, in order.

    Raises:
        StoreError: none is given, or one is given twice (its rows would be read twice over
            under two names, and exactly-once across stores could not hold).
    """
    given = [snapshots] if isinstance(snapshots, str | Path) else list(snapshots)
    paths = [Path(p).resolve() for p in given]
    if not paths:
        raise StoreError("no landing snapshot given")
    seen: set[Path] = set()
    for path in paths:
        if path in seen:
            raise StoreError(f"the landing snapshot {path} is given twice")
        seen.add(path)
    return paths


def landing_schema(index: int) -> str:
    """The name the ``index``-th snapshot is attached under: ``landing``, ``landing_1``, ..."""
    return LANDING if index == 0 else f"{LANDING}_{index}"


def attach_landing(con: duckdb.DuckDBPyConnection, snapshot_path: Snapshots) -> list[str]:
    """``ATTACH`` the snapshot(s) read-only as :data:`LANDING`, ``landing_1``, ...

    Returns the schema names, in the order of ``snapshot_path``.

    Raises:
        StoreError: a snapshot does not exist yet or is given twice, or DuckDB cannot read it.
    """
    schemas = []
    for index, snapshot in enumerate(snapshot_paths(snapshot_path)):
        if not snapshot.is_file():
            raise StoreError(
                f"no landing snapshot at {snapshot}: run ingest with --snapshot {snapshot} "
                f"(or, with ingest stopped, `fleetcare export --db LANDING --snapshot "
                f"{snapshot}`)")
        schema = landing_schema(index)
        try:
            con.execute(f"ATTACH '{_quoted(snapshot)}' AS {schema} (READ_ONLY)")
        except duckdb.Error as exc:
            raise StoreError(f"cannot attach the landing snapshot {snapshot}: {exc}") from exc
        schemas.append(schema)
    return schemas


def landing_schemas(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The attached landing snapshots' schema names, in their order (``landing`` first)."""
    attached = {str(r[0]) for r in con.execute(
        "SELECT database_name FROM duckdb_databases()").fetchall()}
    schemas: list[str] = []
    while landing_schema(len(schemas)) in attached:
        schemas.append(landing_schema(len(schemas)))
    return schemas


def define_landing_views(con: duckdb.DuckDBPyConnection, export_dir: str | Path | None = None,
                         vehicles: Collection[str] | None = None) -> None:
    """TEMP views over the attached landing tables (optionally only ``vehicles``' rows).

    Exported Parquet files join ``telemetry`` only for exports the snapshot records: rows of a
    later export are still in the snapshot's table, so each row is read exactly once.

    With several snapshots attached (:func:`attach_landing`), each view is the ``UNION ALL`` of
    the stores in their order, and a store's rows whose ``msg_id`` an earlier store has in its
    ``ingested_messages`` are left out: a message an edge agent sent again (no receipt in
    time) may have been landed by both workers, since the shared subscription deals each copy
    to whichever worker is next, and it must count once. Ingest keeps every landed id in
    ``ingested_messages``, also for telemetry exported to Parquet, so the check holds there too.
    """
    if vehicles is not None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {PARTITION_TABLE} (vehicle_id VARCHAR)")
        con.executemany(f"INSERT INTO {PARTITION_TABLE} VALUES (?)", [[v] for v in vehicles])
    schemas = landing_schemas(con)
    present = {(str(r[0]), str(r[1])) for r in con.execute(
        "SELECT database_name, table_name FROM duckdb_tables() WHERE database_name LIKE $db",
        {"db": LANDING + "%"}).fetchall()}
    for table in LANDING_TABLES:
        parts = []
        for index, schema in enumerate(schemas):
            if table in _NEWER_TABLES and (schema, table) not in present:
                continue
            part = (_telemetry_sql(export_dir, schema) if table == "telemetry"
                    else f"SELECT * FROM {schema}.{table}")
            if index and table not in _WITHOUT_MSG_ID:
                earlier = " UNION ALL ".join(f"SELECT msg_id FROM {s}.ingested_messages"
                                             for s in schemas[:index])
                part = f"SELECT * FROM ({part}) WHERE msg_id NOT IN ({earlier})"
            parts.append(part)
        if not parts:
            continue
        source = parts[0] if len(parts) == 1 else " UNION ALL ".join(f"({p})" for p in parts)
        if vehicles is not None and table in _VEHICLE_TABLES:
            source = (f"SELECT * FROM ({source}) WHERE vehicle_id IN "
                      f"(SELECT vehicle_id FROM {PARTITION_TABLE})")
        con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS {source}")


def _telemetry_sql(export_dir: str | Path | None, schema: str = LANDING) -> str:
    table = f"SELECT {_TELEMETRY_COLUMNS} FROM {schema}.telemetry"
    if export_dir is None or not any(Path(export_dir).resolve().glob("telemetry/*/*/*.parquet")):
        return table
    files = (f"read_parquet('{_quoted(Path(telemetry_glob(export_dir)))}', "
             f"hive_partitioning = true, hive_types = {HIVE_TYPES}, filename = true)")
    return (f"{table} UNION ALL SELECT {_TELEMETRY_COLUMNS} FROM {files} "
            "WHERE regexp_extract(filename, 'part-(.+)-[0-9]+\\.parquet$', 1) IN "
            f"(SELECT export_id FROM {schema}.telemetry_exports)")


def sync_from_landing(con: duckdb.DuckDBPyConnection) -> None:
    """Upsert the fleet register and copy urgent leads and their outbox rows, in one transaction.

    Customer and centre assignments made in the serving store are kept, and so is an imported
    vehicle's model and region (the DMS export is the register); a lead or outbox row
    already in the serving store is never overwritten (its state moves on here, not there).
    With several snapshots, each is synced in turn (a vehicle both registers hold takes the
    last one's model and region; the workers normally import the same register file).
    """
    con.execute("BEGIN TRANSACTION")
    try:
        for schema in landing_schemas(con):
            con.execute(
                f"INSERT INTO vehicles (vehicle_id, model, region) SELECT vehicle_id, model,"
                f" region FROM {schema}.vehicles ON CONFLICT (vehicle_id) DO UPDATE"
                " SET model = excluded.model, region = excluded.region"
                " WHERE vehicles.imported_at IS NULL")
            con.execute(f"INSERT INTO leads BY NAME SELECT * FROM {schema}.leads"
                        " WHERE lead_id NOT IN (SELECT lead_id FROM leads)")
            con.execute(f"INSERT INTO outbox BY NAME SELECT * FROM {schema}.outbox"
                        " WHERE event_id NOT IN (SELECT event_id FROM outbox)")
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        raise StoreError(f"cannot sync the serving store from the landing snapshot: {exc}"
                         ) from exc


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")

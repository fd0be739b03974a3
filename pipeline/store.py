"""The DuckDB store: its schema as numbered migrations, and how to open it.

DuckDB allows one writer process. The ingest process (or, in tests and the demo, the one
process that runs every step in turn) opens the file read-write; everyone else opens it
read-only with :func:`connect_readonly`.

Every table and column is documented in the README ("The store"). A migration is never
edited once released: add a new one at the end of ``MIGRATIONS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import duckdb

from pipeline.errors import StoreError

MIGRATIONS: Final[tuple[tuple[int, str, str], ...]] = (
    (1, "telemetry, fault codes, ground truth, dead letters", """
        CREATE TABLE ingested_messages (
            msg_id      VARCHAR PRIMARY KEY,
            vehicle_id  VARCHAR NOT NULL,
            kind        VARCHAR NOT NULL,
            topic       VARCHAR NOT NULL,
            n_rows      INTEGER NOT NULL,
            landed_at   TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE telemetry (
            vehicle_id  VARCHAR NOT NULL,
            ts          TIMESTAMPTZ NOT NULL,
            signal      VARCHAR NOT NULL,
            value       DOUBLE NOT NULL,
            msg_id      VARCHAR NOT NULL
        );
        CREATE TABLE dtc_events (
            vehicle_id  VARCHAR NOT NULL,
            ts          TIMESTAMPTZ NOT NULL,
            code        VARCHAR NOT NULL,
            status      VARCHAR NOT NULL,
            ecu         VARCHAR NOT NULL,
            source      VARCHAR NOT NULL,
            cleared     BOOLEAN NOT NULL,
            msg_id      VARCHAR NOT NULL
        );
        CREATE TABLE ground_truth (
            vehicle_id     VARCHAR NOT NULL,
            component      VARCHAR NOT NULL,
            failure_ts     TIMESTAMPTZ,
            health_at_end  DOUBLE NOT NULL,
            sim_start_ts   TIMESTAMPTZ NOT NULL,
            sim_end_ts     TIMESTAMPTZ NOT NULL,
            msg_id         VARCHAR NOT NULL,
            PRIMARY KEY (vehicle_id, component)
        );
        CREATE TABLE vehicles (
            vehicle_id   VARCHAR PRIMARY KEY,
            model        VARCHAR NOT NULL,
            region       VARCHAR NOT NULL,
            customer_id  VARCHAR,
            centre_id    VARCHAR
        );
        CREATE SEQUENCE dead_letter_id;
        CREATE TABLE dead_letters (
            id           BIGINT PRIMARY KEY DEFAULT nextval('dead_letter_id'),
            received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
            topic        VARCHAR NOT NULL,
            reason       VARCHAR NOT NULL,
            payload      BLOB NOT NULL,
            replayed_at  TIMESTAMPTZ
        );
    """),
    (2, "customers, service centres, catalogue, models, scores, leads and outbox", """
        CREATE TABLE customers (
            customer_id  VARCHAR PRIMARY KEY,
            name         VARCHAR NOT NULL,
            email        VARCHAR,
            phone        VARCHAR
        );
        CREATE TABLE service_centres (
            centre_id  VARCHAR PRIMARY KEY,
            name       VARCHAR NOT NULL,
            region     VARCHAR NOT NULL,
            bays       INTEGER NOT NULL
        );
        CREATE TABLE centre_capacity (
            centre_id   VARCHAR NOT NULL,
            day         DATE NOT NULL,
            free_slots  INTEGER NOT NULL,
            PRIMARY KEY (centre_id, day)
        );
        CREATE TABLE service_catalogue (
            component      VARCHAR PRIMARY KEY,
            work           VARCHAR NOT NULL,
            parts_eur      DOUBLE NOT NULL,
            labour_hours   DOUBLE NOT NULL,
            labour_rate_eur DOUBLE NOT NULL
        );
        CREATE TABLE model_registry (
            model_id    VARCHAR PRIMARY KEY,
            component   VARCHAR NOT NULL,
            created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
            features    VARCHAR[] NOT NULL,
            metrics     JSON NOT NULL,
            artifact    BLOB NOT NULL,
            promoted    BOOLEAN NOT NULL DEFAULT false
        );
        CREATE TABLE scores (
            vehicle_id    VARCHAR NOT NULL,
            component     VARCHAR NOT NULL,
            as_of         DATE NOT NULL,
            probability   DOUBLE NOT NULL,
            horizon_days  INTEGER NOT NULL,
            model_id      VARCHAR NOT NULL,
            PRIMARY KEY (vehicle_id, component, as_of)
        );
        CREATE TABLE leads (
            lead_id       VARCHAR PRIMARY KEY,
            vehicle_id    VARCHAR NOT NULL,
            component     VARCHAR NOT NULL,
            state         VARCHAR NOT NULL,
            severity      VARCHAR NOT NULL,
            probability   DOUBLE NOT NULL,
            horizon_days  INTEGER NOT NULL,
            created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
            document      JSON NOT NULL
        );
        CREATE TABLE outbox (
            event_id         VARCHAR PRIMARY KEY,
            lead_id          VARCHAR NOT NULL,
            body             JSON NOT NULL,
            status           VARCHAR NOT NULL DEFAULT 'pending',
            attempts         INTEGER NOT NULL DEFAULT 0,
            next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
            delivered_at     TIMESTAMPTZ,
            last_error       VARCHAR
        );
    """),
)
"""(version, summary, DDL) in the order they apply."""


def connect(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open the store read-write and bring its schema up to date.

    Raises:
        StoreError: the file cannot be opened (for example another process holds the write lock).
    """
    try:
        con = duckdb.connect(str(path))
    except duckdb.Error as exc:
        raise StoreError(f"cannot open DuckDB file {path} for writing: {exc}") from exc
    migrate(con)
    return con


def connect_readonly(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open the store read-only (never blocks or disturbs the writer's schema)."""
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise StoreError(f"cannot open DuckDB file {path} read-only: {exc}") from exc


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply every migration the database has not seen yet; return the versions applied."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, summary VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, summary, ddl in MIGRATIONS:
        if version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(ddl)
            con.execute("INSERT INTO schema_migrations (version, summary) VALUES (?, ?)",
                        [version, summary])
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise StoreError(f"migration {version} ({summary}) failed: {exc}") from exc
        applied.append(version)
    return applied


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The highest migration applied to this database (0 for an empty file)."""
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0

"""The DuckDB store: its schema as numbered migrations, and how to open it.

DuckDB allows one writer process. The ingest process (or, in tests and the demo, the one
process that runs every step in turn) opens the file read-write; everyone else opens it
read-only with :func:`connect_readonly`.

Every table and column is documented in docs/reference/store.md. Migrations are SQL files in
``pipeline/store/migrations/``; one is never edited once released: add a new, higher-numbered file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import duckdb

from pipeline.config import DuckDBConfig, load_store_resources
from pipeline.errors import StoreError

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")
"""One file per migration: ``NNN_summary.sql``, first line ``-- summary``; applied in order."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change."""

    version: int
    summary: str
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file, in version order.

    Raises:
        StoreError: two files share a version, or a file name does not start with a number.
    """
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        number = path.name.split("_", 1)[0]
        if not number.isdigit():
            raise StoreError(f"migration {path.name} must start with its version, e.g. 003_")
        sql = path.read_text(encoding="utf-8")
        summary = sql.splitlines()[0].removeprefix("--").strip() if sql else path.stem
        if int(number) in migrations:
            raise StoreError(f"two migrations have version {int(number)}: {path.name}")
        migrations[int(number)] = Migration(int(number), summary, sql)
    return [migrations[v] for v in sorted(migrations)]


def connect(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open the store read-write and bring its schema up to date.

    The connection takes the process's :func:`resource_config` (memory limit, threads).

    Raises:
        StoreError: the file cannot be opened (for example another process holds the write lock).
        TerminalPipelineError: the resource settings in the environment are invalid.
    """
    try:
        con = duckdb.connect(str(path), config=resource_config())
    except duckdb.Error as exc:
        raise StoreError(f"cannot open DuckDB file {path} for writing: {exc}") from exc
    migrate(con)
    return con


def connect_waiting(path: str | Path, wait_s: float, *, poll_s: float = 0.25
                    ) -> duckdb.DuckDBPyConnection:
    """:func:`connect`, waiting up to ``wait_s`` seconds for another process's write lock.

    For commands that write a store someone else may hold for a while (a flow run holds the
    serving store only while it runs): they wait, then give up with one line naming the cause.

    Raises:
        StoreError: the file is still held after ``wait_s`` seconds, or cannot be opened.
    """
    deadline = time.monotonic() + max(0.0, wait_s)
    while True:
        try:
            return connect(path)
        except StoreError as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"{path} is held by another process (a running `fleetcare ingest`, a flow "
                    f"run or a notebook) and was not released within {wait_s:g} s: import into "
                    "the store no process holds open (the serving store while no flow runs), "
                    "or wait longer with --wait") from None
        time.sleep(poll_s)


@dataclass
class NewStoreGuard:
    """What :func:`no_new_store_on_failure` yields: call :meth:`refuse` when the command
    refuses its input without raising."""

    refused: bool = False

    def refuse(self) -> None:
        """Mark the block as failed: a store file it created is removed on the way out."""
        self.refused = True


@contextmanager
def no_new_store_on_failure(path: str | Path) -> Iterator[NewStoreGuard]:
    """Remove the store file (and its WAL) again when the block fails and the file is new.

    An import that refuses its input opens the store first (its checks compare rows with
    what is stored); when the path named no store before, a refusal must not leave an empty
    file behind that the next command would take for a store. Failure is an exception, or
    :meth:`NewStoreGuard.refuse`; an existing store is never touched.
    """
    target = Path(path)
    existed = target.exists()
    guard = NewStoreGuard()
    try:
        yield guard
    except BaseException:
        guard.refuse()
        raise
    finally:
        if guard.refused and not existed:
            for leftover in (target, target.with_name(target.name + ".wal")):
                leftover.unlink(missing_ok=True)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN ... COMMIT; on any exception ROLLBACK and re-raise, so no half-written state and
    no transaction left open on the connection."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def connect_readonly(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open the store read-only (never blocks or disturbs the writer's schema)."""
    try:
        return duckdb.connect(str(path), read_only=True, config=resource_config())
    except duckdb.Error as exc:
        raise StoreError(f"cannot open DuckDB file {path} read-only: {exc}") from exc


def resource_config() -> DuckDBConfig:
    """DuckDB's ``config`` for every store connection of this process: the memory limit and
    threads of :class:`pipeline.config.StoreResources` (``FLEETCARE_PIPELINE__DB_MEMORY_LIMIT``,
    ``FLEETCARE_PIPELINE__DB_THREADS``), read when the store is opened.

    One process opens a file with one configuration: DuckDB refuses a second connection to
    an open file with different settings, and the environment gives every connection the same.

    Raises:
        TerminalPipelineError: a value is invalid (one line naming the variable).
    """
    return load_store_resources().duckdb_config()


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply every migration the database has not seen yet; return the versions applied."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, summary VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for migration in load_migrations():
        if migration.version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(migration.sql)
            con.execute("INSERT INTO schema_migrations (version, summary) VALUES (?, ?)",
                        [migration.version, migration.summary])
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise StoreError(
                f"migration {migration.version} ({migration.summary}) failed: {exc}") from exc
        applied.append(migration.version)
    return applied


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The highest migration applied to this database (0 for an empty file)."""
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0

"""Applying checked master-data files to a store: idempotent upserts keyed on the files' ids.

Every file of one import lands in one transaction, or none does. Each table's rows are staged,
compared with what the table holds (column by column, ``IS DISTINCT FROM``), and only new or
changed rows are written, so a re-import of the same export changes nothing and says so:
rows inserted, updated and unchanged per table. A dry run computes the same counts and rolls
back. Forgotten customers (:mod:`pipeline.fleet.forgotten`) are skipped and counted.

A vehicle's ``imported_at`` marks it as registered by an import: ingest's ground-truth
records and the serving store's snapshot sync then leave its model and region alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import duckdb

from pipeline.errors import TerminalPipelineError
from pipeline.fleet.files import CUSTOMERS, VEHICLES, FileSpec
from pipeline.fleet.forgotten import customer_hash, forgotten_hashes
from pipeline.fleet.validation import ParsedFile, Problem, StoreKeys, read_files
from pipeline.fleet.vin_policy import DEFAULT_POLICY, VinPolicy

_STAGED: Final = "_fleet_staged"
_CHANGED: Final = "_fleet_changed"


class FleetImportError(TerminalPipelineError):
    """The files hold problems; nothing was applied. ``problems`` lists every one."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        files = len({p.path for p in problems})
        super().__init__(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in "
                         f"{files} file{'s' if files != 1 else ''}; nothing was applied")


@dataclass(frozen=True, slots=True)
class TableCounts:
    """What one import did (or, dry, would do) to one table."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_forgotten: int = 0
    """Rows of customers ``fleetcare forget`` erased (customers), or links to them withheld
    (vehicles)."""


@dataclass(frozen=True, slots=True)
class ImportReport:
    """The JSON summary of ``fleetcare fleet import``."""

    dry_run: bool
    tables: dict[str, TableCounts] = field(default_factory=dict)
    extra_columns: dict[str, list[str]] = field(default_factory=dict)
    """Columns a file has beyond the documented ones (ignored), by file."""


def store_keys(con: duckdb.DuckDBPyConnection) -> StoreKeys:
    """The ids and VINs already in the store that files may refer to."""
    centres = {r[0] for r in con.execute("SELECT centre_id FROM service_centres").fetchall()}
    customers = {r[0] for r in con.execute("SELECT customer_id FROM customers").fetchall()}
    vins = dict(con.execute("SELECT vin, vehicle_id FROM vehicles WHERE vin IS NOT NULL"
                            ).fetchall())
    return StoreKeys(frozenset(centres), frozenset(customers), vins)


def import_fleet(con: duckdb.DuckDBPyConnection, paths: Mapping[str, Path | str], *,
                 dry_run: bool = False, policy: VinPolicy = DEFAULT_POLICY,
                 references: bool = True, now: dt.datetime | None = None,
                 on_file: Callable[[int], None] | None = None) -> ImportReport:
    """Check every file, then upsert them all in one transaction (rolled back when dry).

    Args:
        con: the store that makes leads (the serving store, or the one file).
        paths: file by kind (``vehicles``, ``customers``, ``centres``, ``capacity``,
            ``catalogue``); only the kinds given are imported.
        dry_run: count what would change, change nothing.
        policy: which regions' VINs must carry the check digit.
        references: check that vehicles' centres and customers and capacity's centres exist
            (in the files or the store); ingest's register import passes False.
        now: the import time recorded on vehicles (default: now, UTC).
        on_file: called with the number of files applied so far after each one (a
            progress bar); the files are checked before the first is applied.

    Raises:
        FleetImportError: a file is unreadable or holds a bad value, a repeated key or a
            dangling reference; it lists every problem and nothing is applied.
    """
    parsed, problems = read_files(paths, store_keys(con), policy, references=references)
    if problems:
        raise FleetImportError(problems)
    forgotten = forgotten_hashes(con)
    tables: dict[str, TableCounts] = {}
    con.execute("BEGIN TRANSACTION")
    try:
        for done, file in enumerate(parsed, start=1):
            tables[file.spec.table] = _apply(con, file, forgotten,
                                             now or dt.datetime.now(dt.UTC))
            if on_file is not None:
                on_file(done)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("ROLLBACK" if dry_run else "COMMIT")
    extra = {f.path: list(f.extra_columns) for f in parsed if f.extra_columns}
    return ImportReport(dry_run, tables, extra)


def _apply(con: duckdb.DuckDBPyConnection, file: ParsedFile, forgotten: frozenset[str],
           now: dt.datetime) -> TableCounts:
    rows, skipped = _without_forgotten(file, forgotten)
    spec = file.spec
    _stage(con, spec, rows)
    key = " AND ".join(f"t.{k} = s.{k}" for k in spec.key)
    differs = " OR ".join(f"s.{c} IS DISTINCT FROM t.{c}" for c in spec.names
                          if c not in spec.key)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_CHANGED} AS SELECT s.*, t.{spec.key[0]} IS"
                f" NULL AS is_new FROM {_STAGED} s LEFT JOIN {spec.table} t ON {key}"
                f" WHERE t.{spec.key[0]} IS NULL OR {differs}")
    counted = con.execute(f"SELECT count(*) FILTER (is_new), count(*) FILTER (NOT is_new)"
                          f" FROM {_CHANGED}").fetchall()[0]
    inserted, updated = int(counted[0]), int(counted[1])
    columns = list(spec.names)
    values = ", ".join(columns)
    updates = [f"{c} = excluded.{c}" for c in columns if c not in spec.key]
    if spec is VEHICLES:
        columns_sql, select_sql = f"{values}, imported_at", f"{values}, $now"
        updates.append("imported_at = excluded.imported_at")
    else:
        columns_sql, select_sql = values, values
    con.execute(f"INSERT INTO {spec.table} ({columns_sql}) SELECT {select_sql} FROM {_CHANGED}"
                f" ON CONFLICT ({', '.join(spec.key)}) DO UPDATE SET {', '.join(updates)}",
                {"now": now} if spec is VEHICLES else None)
    con.execute(f"DROP TABLE {_CHANGED}")
    con.execute(f"DROP TABLE {_STAGED}")
    return TableCounts(inserted, updated, len(rows) - inserted - updated, skipped)


def _without_forgotten(file: ParsedFile, forgotten: frozenset[str]
                       ) -> tuple[list[dict[str, Any]], int]:
    """The rows to apply: forgotten customers dropped, links to them withheld."""
    if not forgotten or file.spec not in (CUSTOMERS, VEHICLES):
        return list(file.rows), 0

    def gone(customer_id: str | None) -> bool:
        return customer_id is not None and customer_hash(customer_id) in forgotten

    if file.spec is CUSTOMERS:
        kept = [r for r in file.rows if not gone(r["customer_id"])]
        return kept, len(file.rows) - len(kept)
    rows = [{**r, "customer_id": None} if gone(r["customer_id"]) else r for r in file.rows]
    return rows, sum(1 for r in file.rows if gone(r["customer_id"]))


def _stage(con: duckdb.DuckDBPyConnection, spec: FileSpec, rows: list[dict[str, Any]]) -> None:
    """The rows as a TEMP table typed like the target table's columns."""
    import pyarrow as pa

    types = dict(con.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_name = ? AND table_schema = 'main' AND table_catalog = current_database()",
        [spec.table]).fetchall())
    arrow = pa.table({c: pa.array([r[c] for r in rows]) for c in spec.names})
    casts = ", ".join(f"CAST({c} AS {types[c]}) AS {c}" for c in spec.names)
    con.register("_fleet_rows", arrow)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_STAGED} AS SELECT {casts} FROM _fleet_rows")
    finally:
        con.unregister("_fleet_rows")

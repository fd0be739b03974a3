"""Schema migrations: applied once, in order, recorded; a broken set is refused clearly."""

import re
from pathlib import Path

import pytest

from pipeline.errors import StoreError
from pipeline.store import connection as store


def test_fresh_store_gets_every_migration_once(db_path: Path) -> None:
    versions = [m.version for m in store.load_migrations()]
    assert versions == sorted(versions) and versions[0] == 1
    with store.connect(db_path) as con:
        assert store.schema_version(con) == versions[-1]
        assert store.migrate(con) == []  # nothing left to apply
    with store.connect(db_path) as con:
        rows = con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == versions


def test_readonly_connection_cannot_write(db_path: Path) -> None:
    store.connect(db_path).close()
    with store.connect_readonly(db_path) as con, pytest.raises(Exception, match="read-only"):
        con.execute("DELETE FROM telemetry")


def test_duplicate_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("-- a\nCREATE TABLE a (x INT);\n")
    (tmp_path / "001_b.sql").write_text("-- b\nCREATE TABLE b (x INT);\n")
    with pytest.raises(StoreError, match="two migrations have version 1"):
        store.load_migrations(tmp_path)


def test_unnumbered_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "telemetry.sql").write_text("-- t\n")
    with pytest.raises(StoreError, match="must start with its version"):
        store.load_migrations(tmp_path)


INGEST_TABLES = ("schema_migrations", "ingested_messages", "telemetry", "dtc_events",
                 "ground_truth", "vehicles", "dead_letters", "edge_health", "telemetry_exports")
STORE_PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "store.md"


def documented_columns(page: Path) -> dict[str, set[str]]:
    """Table -> columns named in the page's ``| table | column | meaning |`` rows.

    A row whose first cell is empty continues the table above it, so a wide table can be
    documented a few columns per row.
    """
    documented: dict[str, set[str]] = {}
    table = ""
    for line in page.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) != 3 or (set(cells[0]) <= {"-"} and cells[0]):
            continue
        if cells[0].startswith("`"):
            table = cells[0].strip("`").split("`")[0]
        documented.setdefault(table, set()).update(re.findall(r"`([a-z][a-z0-9_]*)`", cells[1]))
    return documented


def test_every_table_and_column_is_documented_on_the_store_page(db_path: Path) -> None:
    documented = documented_columns(STORE_PAGE)
    with store.connect(db_path) as con:
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
            "AND NOT internal").fetchall()}
        columns = con.execute("SELECT table_name, column_name FROM duckdb_columns() "
                              "WHERE schema_name = 'main'").fetchall()
    missing = [f"{t}.{c}" for t, c in columns
               if t in tables and c not in documented.get(t, set())]
    assert missing == []
    assert set(INGEST_TABLES) <= tables


def test_the_store_page_parser_sees_a_missing_column(tmp_path: Path) -> None:
    page = tmp_path / "store.md"
    page.write_text("| table | column | meaning |\n|---|---|---|\n"
                    "| `leads` | `lead_id`, `state` | one lead |\n| | `document` | its JSON |\n"
                    "| `outbox` | `event_id` | the webhook id |\n", encoding="utf-8")
    documented = documented_columns(page)
    assert documented["leads"] == {"lead_id", "state", "document"}
    assert "body" not in documented["outbox"]

"""Schema migrations: applied once, in order, recorded; a broken set is refused clearly."""

from pathlib import Path

import pytest

from pipeline import store
from pipeline.errors import StoreError


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

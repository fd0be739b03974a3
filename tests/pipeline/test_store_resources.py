"""The store's memory limit and threads come from the deployment's environment.

DuckDB's defaults (80 % of RAM, a thread per core) are what a process gets unless
``FLEETCARE_PIPELINE__DB_MEMORY_LIMIT`` / ``FLEETCARE_PIPELINE__DB_THREADS`` say otherwise;
every way the backend opens a store takes them, and a bad value stops a command with one line.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import pytest
from processes import cli, cli_env

from pipeline.errors import TerminalPipelineError
from pipeline.ml.partitions import open_partition
from pipeline.store import connect, connect_serving
from pipeline.store.connection import connect_readonly

MIB = 1024 * 1024


def _settings(con: duckdb.DuckDBPyConnection) -> tuple[str, int]:
    row = con.execute(
        "SELECT current_setting('memory_limit'), current_setting('threads')").fetchall()[0]
    return str(row[0]), int(row[1])


def test_every_store_connection_takes_the_limit_and_threads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    landing, serving = tmp_path / "fleet.duckdb", tmp_path / "serving.duckdb"
    connect(landing).close()
    with duckdb.connect(str(landing)) as con:
        default_limit, _ = _settings(con)
    monkeypatch.setenv("FLEETCARE_PIPELINE__DB_MEMORY_LIMIT", "300MiB")
    monkeypatch.setenv("FLEETCARE_PIPELINE__DB_THREADS", "1")
    with connect(landing) as con:
        assert _settings(con) == ("300.0 MiB", 1)
    with connect_readonly(landing) as con:
        assert _settings(con) == ("300.0 MiB", 1)
    with connect_serving(serving, landing) as con:
        assert _settings(con) == ("300.0 MiB", 1)
    with open_partition(landing, ["V1"]) as con:  # a partition task's private store
        assert _settings(con) == ("300.0 MiB", 1)
    assert default_limit != "300.0 MiB"  # the setting, not DuckDB's default, made it 300


def test_an_unset_limit_keeps_duckdbs_default(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEETCARE_PIPELINE__DB_MEMORY_LIMIT", raising=False)
    monkeypatch.delenv("FLEETCARE_PIPELINE__DB_THREADS", raising=False)
    with duckdb.connect(":memory:") as bare:
        expected = _settings(bare)
    with connect(tmp_path / "fleet.duckdb") as con:
        assert _settings(con) == expected


@pytest.mark.parametrize("variable, value", [("DB_MEMORY_LIMIT", "lots"),
                                             ("DB_MEMORY_LIMIT", "80%"),
                                             ("DB_THREADS", "0")])
def test_a_bad_value_is_refused_before_a_store_is_opened(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(f"FLEETCARE_PIPELINE__{variable}", value)
    with pytest.raises(TerminalPipelineError, match=f"FLEETCARE_PIPELINE__{variable}"):
        connect(tmp_path / "fleet.duckdb")
    assert not (tmp_path / "fleet.duckdb").exists()


def test_the_command_line_runs_with_the_limit_and_refuses_a_bad_one(tmp_path: Path) -> None:
    db = tmp_path / "fleet.duckdb"
    connect(db).close()
    ok = subprocess.run(cli("models", "list", "--db", str(db)), capture_output=True, text=True,
                        timeout=120, check=False,
                        env=cli_env(db_memory_limit="256MB", db_threads="1"))
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(cli("models", "list", "--db", str(db)), capture_output=True,
                         text=True, timeout=120, check=False,
                         env=cli_env(db_memory_limit="a lot"))
    assert bad.returncode != 0
    assert "Traceback" not in bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "FLEETCARE_PIPELINE__DB_MEMORY_LIMIT" in lines[0]
    assert "1GB" in lines[0]  # what a valid value looks like

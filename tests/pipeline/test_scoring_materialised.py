"""Scoring reads materialised features while they are fresh, and builds when they are not.

One trained store is built per module and copied for each test (real DuckDB files); what is
compared is what ``score_fleet`` writes, byte for byte, against a store that never held
materialised rows.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest
from synth_fleet import START, add_dtc, add_repair_order, build_store, day, evidence_fleet

from pipeline.features.freshness import fresh_days
from pipeline.features.materialised import (
    DayRange,
    compute_daily_features,
    materialise_daily_features,
    write_daily_features,
)
from pipeline.ml.scoring import score_fleet
from pipeline.ml.training import train_and_register
from pipeline.store.connection import connect

AS_OF = day(50)
DAYS = DayRange(day(40), day(50))
"""Failing vehicles stop reporting on their failure day (42 onwards): their latest days
fall inside this range, so every vehicle's latest row is materialised."""


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trained") / "fleet.duckdb"
    con = build_store(path, evidence_fleet(("brakes",), healthy=5), 80)
    train_and_register(con, horizon_days=30, seed=0)
    con.close()
    return path


@pytest.fixture
def con(trained_store: Path, tmp_path: Path) -> duckdb.DuckDBPyConnection:
    copy = tmp_path / "fleet.duckdb"
    shutil.copy(trained_store, copy)
    return connect(copy)


def _scores(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return con.execute("SELECT vehicle_id, component, probability, model_id, explanation::TEXT"
                       " FROM scores WHERE as_of = ? ORDER BY ALL", [AS_OF]).fetchall()


def test_scores_from_materialised_rows_equal_scores_built_from_telemetry(
        con: duckdb.DuckDBPyConnection) -> None:
    built = score_fleet(con, as_of=AS_OF)
    from_build = _scores(con)
    assert built.materialised_vehicles == 0 and len(from_build) > 10
    materialise_daily_features(con, DAYS)
    read = score_fleet(con, as_of=AS_OF, chunk_vehicles=7)
    vehicles = con.execute("SELECT count(DISTINCT vehicle_id) FROM telemetry").fetchone()
    assert vehicles is not None and read.materialised_vehicles == vehicles[0]
    assert _scores(con) == from_build
    assert read.rows == built.rows


def test_chunked_materialisation_writes_what_one_build_gives(
        con: duckdb.DuckDBPyConnection) -> None:
    written = materialise_daily_features(con, DAYS, chunk_vehicles=3)
    stored = con.sql("SELECT vehicle_id, day, feature, value FROM daily_features").pl()
    once = compute_daily_features(con, DAYS)
    assert written == once.height == stored.height
    assert stored.sort(pl.all()).equals(once.sort(pl.all()))
    materialise_daily_features(con, DAYS, chunk_vehicles=5)
    again = con.sql("SELECT vehicle_id, day, feature, value FROM daily_features").pl()
    assert again.sort(pl.all()).equals(stored.sort(pl.all())), "a re-run replaces, never adds"
    assert fresh_days(con, DAYS.days()) == set(DAYS.days())


def test_the_freshness_check_leaves_no_result_open_on_the_connection(
        con: duckdb.DuckDBPyConnection) -> None:
    materialise_daily_features(con, DAYS)
    assert fresh_days(con, DAYS.days()) == set(DAYS.days())
    # DuckDB refuses a relation while an execute()'s result is not fetched to its end
    assert con.sql("SELECT count(*) AS n FROM daily_feature_inputs").pl()["n"].item() > 0


def test_late_telemetry_makes_the_days_whose_lookback_it_reaches_stale(
        con: duckdb.DuckDBPyConnection) -> None:
    materialise_daily_features(con, DAYS)
    late = START + dt.timedelta(days=46, hours=3)
    con.execute("INSERT INTO telemetry VALUES ('ok1', ?, 'Vehicle.Speed', 42.0, 'late-msg')",
                [late])
    assert fresh_days(con, DAYS.days()) == {day(i) for i in range(40, 46)}
    report = score_fleet(con, as_of=AS_OF)
    assert report.materialised_vehicles == 0, "the latest days are stale: built instead"


def test_an_erased_vehicle_a_new_fault_code_or_repair_order_makes_days_stale(
        con: duckdb.DuckDBPyConnection) -> None:
    materialise_daily_features(con, DAYS)
    add_dtc(con, "ok2", 48, "C1234")
    assert fresh_days(con, DAYS.days()) == {day(i) for i in range(40, 48)}
    materialise_daily_features(con, DAYS)
    add_repair_order(con, "ok3", "brakes", 30, kind="scheduled")
    assert fresh_days(con, DAYS.days()) == set(), "repair orders reach every day"
    materialise_daily_features(con, DAYS)
    con.execute("DELETE FROM telemetry WHERE vehicle_id = 'ok4'")
    assert fresh_days(con, DAYS.days()) == set()


def test_rows_written_without_their_inputs_are_never_read_for_scoring(
        con: duckdb.DuckDBPyConnection) -> None:
    materialise_daily_features(con, DAYS)
    write_daily_features(con, compute_daily_features(con, DAYS), DAYS)
    assert fresh_days(con, DAYS.days()) == set()
    assert score_fleet(con, as_of=AS_OF).materialised_vehicles == 0


def test_a_vehicle_silent_too_long_for_an_exact_row_makes_its_chunk_build(
        con: duckdb.DuckDBPyConnection) -> None:
    """Scoring 100 days on, most vehicles' latest rows lie under 62 days inside the window,
    where a build from the window's telemetry would read less than the materialised row did."""
    materialise_daily_features(con, DAYS)
    report = score_fleet(con, as_of=day(120))
    assert report.materialised_vehicles == 0 and report.rows > 0


def test_each_chunk_replaces_the_rows_of_every_id_up_to_the_next_chunk(
        con: duckdb.DuckDBPyConnection) -> None:
    """Rows of vehicles with no telemetry left (before, between and after the chunks' ids)
    are replaced too: the chunks' spans cover every id."""
    ids = [r[0] for r in con.execute("SELECT DISTINCT vehicle_id FROM telemetry ORDER BY 1")
           .fetchall()]
    strays = ["", ids[2] + "-gone", "zzz"]
    con.executemany("INSERT INTO daily_features VALUES (?, ?, 'soh', 1.0)",
                    [(v, day(45)) for v in strays])
    materialise_daily_features(con, DAYS, chunk_vehicles=2)
    stored = con.sql("SELECT vehicle_id, day, feature, value FROM daily_features").pl()
    assert stored.sort(pl.all()).equals(compute_daily_features(con, DAYS).sort(pl.all()))


def test_a_run_that_fails_part_way_leaves_whole_vehicles_and_unmarked_days(
        con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.features.materialised as materialised

    materialise_daily_features(con, DAYS)
    before = con.sql("SELECT * FROM daily_features").pl()
    real, calls = materialised.compute_daily_features, []

    def fail_on_third(*args: object, **kwargs: object) -> pl.DataFrame:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk gone")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(materialised, "compute_daily_features", fail_on_third)
    with pytest.raises(OSError):
        materialise_daily_features(con, DAYS, chunk_vehicles=2)
    assert fresh_days(con, DAYS.days()) == set(), "nothing marked fresh after a failed run"
    assert score_fleet(con, as_of=AS_OF).materialised_vehicles == 0
    after = con.sql("SELECT * FROM daily_features").pl()
    assert after.sort(pl.all()).equals(before.sort(pl.all())), "each vehicle's rows whole"

"""Scores carry their explanation: the features that moved each probability most."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pytest
from synth_fleet import build_store, day, evidence_fleet

from pipeline.features.daily import COMPONENT_FEATURES, CONTEXT_FEATURES
from pipeline.ml import scoring
from pipeline.ml.scoring import TOP_FEATURES, score_fleet
from pipeline.ml.training import train_and_register


def test_each_score_names_its_top_contributing_features(tmp_path: Path) -> None:
    con = build_store(tmp_path / "fleet.duckdb", evidence_fleet(("brakes",), healthy=5), 80)
    train_and_register(con, horizon_days=30, seed=0)
    assert score_fleet(con, as_of=day(50)).rows > 0
    rows = con.execute("SELECT vehicle_id, probability, explanation FROM scores"
                       " WHERE component = 'brakes' AND as_of = ?", [day(50)]).fetchall()
    allowed = set(COMPONENT_FEATURES["brakes"]) | set(CONTEXT_FEATURES)
    for _, _, explanation in rows:
        reasons = json.loads(explanation)
        assert len(reasons) == TOP_FEATURES
        assert {r["feature"] for r in reasons} <= allowed
        sizes = [abs(r["contribution"]) for r in reasons]
        assert sizes == sorted(sizes, reverse=True)
    by_vehicle = {v: (p, json.loads(e)) for v, p, e in rows}
    proba, reasons = by_vehicle["brk0"]
    assert proba > 0.5
    assert reasons[0]["feature"].startswith("pad_wear") and reasons[0]["contribution"] > 0


def _day_scores(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return con.execute("SELECT vehicle_id, component, probability, model_id, explanation::TEXT"
                       " FROM scores WHERE as_of = ? ORDER BY ALL", [day(50)]).fetchall()


def test_scoring_in_chunks_of_vehicles_writes_what_one_chunk_writes(tmp_path: Path) -> None:
    con = build_store(tmp_path / "fleet.duckdb", evidence_fleet(("brakes",), healthy=5), 80)
    train_and_register(con, horizon_days=30, seed=0)
    whole = score_fleet(con, as_of=day(50), chunk_vehicles=10_000)
    once = _day_scores(con)
    chunked = score_fleet(con, as_of=day(50), chunk_vehicles=2)
    assert chunked == whole and whole.rows == len(once) > 2
    assert _day_scores(con) == once


def test_a_later_chunks_failure_leaves_the_days_scores_as_they_were(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    con = build_store(tmp_path / "fleet.duckdb", evidence_fleet(("brakes",), healthy=5), 80)
    train_and_register(con, horizon_days=30, seed=0)
    score_fleet(con, as_of=day(50))
    before = _day_scores(con)
    real_insert = scoring._insert_scores
    calls: list[int] = []

    def insert_then_fail_on_the_second_chunk(c: duckdb.DuckDBPyConnection,
                                             frame: pl.DataFrame) -> None:
        calls.append(frame.height)
        if len(calls) == 2:
            raise duckdb.IOException("disk went away while writing chunk 2")
        real_insert(c, frame)

    monkeypatch.setattr(scoring, "_insert_scores", insert_then_fail_on_the_second_chunk)
    with pytest.raises(duckdb.IOException, match="chunk 2"):
        score_fleet(con, as_of=day(50), chunk_vehicles=2)
    assert calls[0] > 0, "the first chunk had written rows (after the day's DELETE)"
    assert _day_scores(con) == before and len(before) > 2

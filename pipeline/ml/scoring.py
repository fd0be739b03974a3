"""Score every vehicle's latest feature row with the promoted model of each component.

Scores are the bridge between models and advice: one row per (vehicle, component, as_of).
Re-running a day replaces that day's rows, so a retried flow never duplicates them.

A model scores only the vehicles that sent every signal it requires in the scoring window
(:mod:`pipeline.ml.coverage`); the others get no score row, so advice raises no score lead
for them, and the :class:`ScoringReport` names them with the signals they lack.

Features come from the materialised ``daily_features`` rows where they can: a chunk of vehicles
whose latest days are all materialised and still fresh (:mod:`pipeline.features.freshness`: the
store gives the same digest of their inputs) and at least
:data:`~pipeline.features.daily.LOOKBACK_DAYS` inside the window (so a build would give the
same row) is scored from those rows; any other chunk is built from telemetry, as a store without
materialised features always is. The scores are the same either way; only the work differs
(re-reading the window's raw telemetry costs more than the model).

Each score carries its ``explanation``: the :data:`TOP_FEATURES` inputs that moved the
log-odds most for that vehicle, as JSON ``[{"feature", "value", "contribution"}, ...]``,
largest magnitude first (a positive contribution pushes towards a warning).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import duckdb
import numpy as np
import polars as pl

from pipeline.features import daily as feature_build
from pipeline.features.daily import (
    CHUNK_VEHICLES,
    build_daily_features,
    model_features,
    vehicle_ranges,
)
from pipeline.features.daily_sql import UTC_DAY
from pipeline.features.freshness import fresh_days
from pipeline.features.inputs import ModelInputs, alternatives
from pipeline.ml.coverage import WINDOW_DAYS, missing_signals, scoring_window
from pipeline.ml.registry import load_model, stored_inputs
from pipeline.store.connection import transaction

log = logging.getLogger(__name__)

_PLAIN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TOP_FEATURES: Final = 3
"""How many contributing features each score's explanation lists."""
LOOKBACK_DAYS: Final = WINDOW_DAYS
"""Telemetry read when scoring a day (the scoring window of :mod:`pipeline.ml.coverage`)."""


@dataclass(frozen=True, slots=True)
class SkippedVehicles:
    """Vehicles a model did not score, all for want of the same required signals."""

    missing_signals: tuple[str, ...]
    vehicle_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ComponentScoring:
    """What one component's promoted model did.

    Attributes:
        component: the component scored.
        model_id: the promoted model.
        scored: vehicles scored (one score row each).
        skipped: the vehicles with telemetry in the window it did not score, grouped by the
            required signals they lack.
    """

    component: str
    model_id: str
    scored: int
    skipped: tuple[SkippedVehicles, ...]

    @property
    def n_skipped(self) -> int:
        """How many vehicles were skipped."""
        return sum(len(s.vehicle_ids) for s in self.skipped)


@dataclass(frozen=True, slots=True)
class ScoringReport:
    """What one :func:`score_fleet` run wrote and left out.

    Attributes:
        as_of: the day scored (None: the store holds no telemetry).
        rows: score rows written.
        components: one entry per promoted model, by component.
        materialised_vehicles: vehicles whose features came from ``daily_features``.
    """

    as_of: dt.date | None
    rows: int
    components: tuple[ComponentScoring, ...]
    materialised_vehicles: int = 0
    """Vehicles whose features were read from materialised rows rather than built."""


def score_fleet(con: duckdb.DuckDBPyConnection, *, as_of: dt.date | None = None,
                chunk_vehicles: int = CHUNK_VEHICLES) -> ScoringReport:
    """Write ``scores`` for ``as_of`` from each vehicle's latest feature row on or before it.

    Args:
        con: an open store.
        as_of: the day to score for (default: the latest day with telemetry in the store,
            which for replayed or simulated fleets is not today's date). Each vehicle is
            scored on its latest feature row in the :data:`LOOKBACK_DAYS` up to that day, by
            each promoted model whose required signals it all sent in those days.
        chunk_vehicles: vehicles whose features are built and scored at once (ranges of
            sorted ids, :func:`pipeline.features.daily.iter_daily_features`): memory follows
            the chunk, not the fleet. Every chunk's rows go into one transaction, so a failure
            leaves the day's previous scores as they were; the result does not depend on it.

    Returns:
        The rows written (0 when no model is promoted or no data exists) and, per component,
        how many vehicles were scored and which were skipped for which missing signals.
    """
    day = as_of or _latest_telemetry_day(con)
    if day is None:
        log.warning("nothing to score: no telemetry")
        return ScoringReport(None, 0, ())
    since, until = scoring_window(day)
    models = con.execute(
        "SELECT model_id, component, features, required_signals, optional_signals, metrics,"
        " artifact FROM model_registry WHERE promoted ORDER BY component").fetchall()
    ranges = vehicle_ranges(con, chunk_vehicles, until=until, since=since)
    if not ranges:
        log.warning("nothing to score: no telemetry in the %d days up to %s", LOOKBACK_DAYS, day)
        return ScoringReport(day, 0, ())
    scorers = [_Scorer(m, c, stored_inputs(f, r, o, c), json.loads(metrics), load_model(art))
               for m, c, f, r, o, metrics, art in models]
    required = sorted({name for sc in scorers for s in sc.inputs.required
                       for name in alternatives(s)})
    wanted = sorted({str(n) for sc in scorers for n in _feature_names(sc)})
    usable = _usable_days(con, since, day)
    parts: list[list[ComponentScoring]] = [[] for _ in scorers]
    rows = from_store = 0
    with transaction(con):
        con.execute("DELETE FROM scores WHERE as_of = ? AND list_contains(?, component)",
                    [day, [sc.component for sc in scorers]])
        for first, last in ranges:
            activity = _activity(con, since, until, (first, last))
            latest = _materialised_latest(con, activity, usable, wanted, (first, last))
            if latest is None:
                latest = build_daily_features(con, until=until, since=since,
                                              vehicles=(first, last), latest_only=True)
            else:
                from_store += latest.height
            chunk_seen = (activity.filter(pl.col("signal").is_in(required))
                          .select("vehicle_id", "signal"))
            for i, sc in enumerate(scorers):
                frame, part = _score_component(latest, chunk_seen, day, sc)
                _insert_scores(con, frame)
                parts[i].append(part)
                rows += frame.height
    report = ScoringReport(day, rows, tuple(_merge_component(p) for p in parts), from_store)
    for r in report.components:
        if r.skipped:
            log.info("%s: %d vehicles not scored (missing required signals): %s",
                        r.component, r.n_skipped,
                        "; ".join(f"{len(s.vehicle_ids)} lack {', '.join(s.missing_signals)}"
                                  for s in r.skipped))
    log.info("scored %d (vehicle, component) pairs as of %s (%d vehicles from materialised"
             " features)", rows, day, from_store)
    return report


def merge_reports(reports: Iterable[ScoringReport]) -> ScoringReport:
    """One report of scoring run per vehicle partition (each partition's vehicles are its own).

    Raises:
        ValueError: the reports are of different days.
    """
    reports = list(reports)
    days = {r.as_of for r in reports if r.as_of is not None}
    if len(days) > 1:
        raise ValueError(f"cannot merge scoring reports of different days: {sorted(days)}")
    by_component: dict[str, list[ComponentScoring]] = {}
    for r in reports:
        for c in r.components:
            by_component.setdefault(c.component, []).append(c)
    return ScoringReport(next(iter(days), None), sum(r.rows for r in reports), tuple(
        _merge_component(parts) for _, parts in sorted(by_component.items())),
        sum(r.materialised_vehicles for r in reports))


def _merge_component(parts: list[ComponentScoring]) -> ComponentScoring:
    groups: dict[tuple[str, ...], list[str]] = {}
    for part in parts:
        for s in part.skipped:
            groups.setdefault(s.missing_signals, []).extend(s.vehicle_ids)
    return ComponentScoring(parts[0].component, parts[0].model_id,
                            sum(p.scored for p in parts),
                            tuple(SkippedVehicles(m, tuple(sorted(v)))
                                  for m, v in sorted(groups.items())))


def _latest_telemetry_day(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    rows = con.execute("SELECT CAST(timezone('UTC', max(ts)) AS DATE) FROM telemetry").fetchall()
    return rows[0][0] if rows and rows[0][0] is not None else None


@dataclass(frozen=True, slots=True)
class _Scorer:
    """A promoted model, loaded once and used on every chunk."""

    model_id: str
    component: str
    inputs: ModelInputs
    metrics: dict[str, Any]
    model: Any


def _feature_names(sc: _Scorer) -> list[str]:
    return [str(n) for n in getattr(sc.model, "feature_names_in_",
                                    model_features(sc.component))]


def _usable_days(con: duckdb.DuckDBPyConnection, since: dt.datetime, day: dt.date
                 ) -> set[dt.date]:
    """The days whose materialised rows scoring may read: fresh, and late enough in the
    window that a build from the window's telemetry gives the same row (its lookback fits)."""
    earliest = (since + dt.timedelta(days=feature_build.LOOKBACK_DAYS + 1)).date()
    if earliest > day:
        return set()
    recorded = [d for (d,) in con.execute(
        "SELECT day FROM daily_feature_inputs WHERE day BETWEEN ? AND ?",
        [earliest, day]).fetchall()]
    return fresh_days(con, recorded)


def _activity(con: duckdb.DuckDBPyConnection, since: dt.datetime, until: dt.datetime,
              vehicles: tuple[str, str]) -> pl.DataFrame:
    """``vehicle_id, signal, day``: each signal a chunk's vehicles sent in the window and the
    last UTC day they sent it (one grouped scan: what coverage needs and which day is each
    vehicle's latest)."""
    rel = con.sql(
        f"SELECT vehicle_id, signal, {UTC_DAY} AS day FROM (SELECT vehicle_id, signal,"
        " max(ts) AS ts FROM telemetry WHERE ts <= $until AND ts >= $since"
        " AND vehicle_id >= $first AND vehicle_id <= $last GROUP BY ALL)",
        params={"since": since, "until": until, "first": vehicles[0], "last": vehicles[1]})
    return rel.pl().cast({"vehicle_id": pl.String, "signal": pl.String, "day": pl.Date})


def _materialised_latest(con: duckdb.DuckDBPyConnection, activity: pl.DataFrame,
                         usable: set[dt.date], wanted: list[str], vehicles: tuple[str, str]
                         ) -> pl.DataFrame | None:
    """Each vehicle's latest feature row read from ``daily_features``, or None when one of the
    chunk's latest days is not usable (the chunk is then built from telemetry)."""
    latest = activity.group_by("vehicle_id").agg(pl.col("day").max())
    if latest.is_empty() or not set(latest["day"].unique().to_list()) <= usable:
        return None
    columns = ", ".join(
        f"max(f.value) FILTER (WHERE f.feature = '{_identifier(n)}') AS \"{_identifier(n)}\""
        for n in wanted)
    con.register("_latest_days", latest)
    try:
        wide = con.sql(
            f"SELECT l.vehicle_id, l.day{', ' if columns else ''}{columns} FROM _latest_days l"
            " LEFT JOIN (SELECT * FROM daily_features WHERE day BETWEEN $lo AND $hi"
            " AND vehicle_id >= $first AND vehicle_id <= $last) f"
            " ON l.vehicle_id = f.vehicle_id AND l.day = f.day GROUP BY ALL ORDER BY 1",
            params={"lo": latest["day"].min(), "hi": latest["day"].max(),
                    "first": vehicles[0], "last": vehicles[1]}).pl()
    finally:
        con.unregister("_latest_days")
    return wide.cast({"vehicle_id": pl.String, "day": pl.Date})


def _identifier(name: str) -> str:
    """``name`` if it is a plain feature name (letters, digits, underscores), for SQL text."""
    if not _PLAIN.fullmatch(name):
        raise ValueError(f"not a plain feature name: {name!r}")
    return name


def _score_component(latest: pl.DataFrame, seen: pl.DataFrame, day: dt.date, sc: _Scorer
                     ) -> tuple[pl.DataFrame, ComponentScoring]:
    missing = missing_signals(latest["vehicle_id"], seen, sc.inputs.required)
    can = missing.filter(pl.col("missing").list.len() == 0)["vehicle_id"]
    rows = latest.filter(pl.col("vehicle_id").is_in(can.implode()))
    skipped = _skipped(missing.filter(pl.col("missing").list.len() > 0))
    scores = _scores(rows, day, sc)
    return scores, ComponentScoring(sc.component, sc.model_id, scores.height, skipped)


def _skipped(missing: pl.DataFrame) -> tuple[SkippedVehicles, ...]:
    """Skipped vehicles grouped by the signals they lack (vehicles of one make lack the same)."""
    groups = (missing.group_by("missing").agg(pl.col("vehicle_id").sort())
              .sort(pl.col("missing").list.join("\x1f")))
    return tuple(SkippedVehicles(tuple(m), tuple(v)) for m, v in groups.iter_rows())


def _scores(rows: pl.DataFrame, day: dt.date, sc: _Scorer) -> pl.DataFrame:
    model = sc.model
    names = _feature_names(sc)
    X = rows.select(pl.col(names).cast(pl.Float64))
    proba = model.predict_proba(X)[:, 1] if rows.height else np.empty(0)
    why = (model.explain_json(X, top=TOP_FEATURES) if rows.height
           else pl.Series([], dtype=pl.String))
    horizon = int(sc.metrics["horizon_days"])
    return pl.DataFrame({
        "vehicle_id": rows["vehicle_id"], "component": sc.component, "as_of": day,
        "probability": pl.Series(proba, dtype=pl.Float64), "horizon_days": horizon,
        "model_id": sc.model_id, "explanation": why,
    }, schema_overrides={"as_of": pl.Date, "horizon_days": pl.Int32,
                         "explanation": pl.String})


def _insert_scores(con: duckdb.DuckDBPyConnection, scores: pl.DataFrame) -> None:
    """Append one chunk's scores (inside :func:`score_fleet`'s transaction, after its DELETE)."""
    if not scores.height:
        return
    con.register("_new_scores", scores)
    try:
        con.execute(
            "INSERT INTO scores (vehicle_id, component, as_of, probability, horizon_days,"
            " model_id, explanation) SELECT vehicle_id, component, as_of, probability,"
            " horizon_days, model_id, explanation::JSON FROM _new_scores")
    finally:
        con.unregister("_new_scores")

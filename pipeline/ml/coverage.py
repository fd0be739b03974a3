"""Which promoted model can score which vehicle, and which signals each vehicle lacks.

The rule, shared by scoring and ``fleetcare fleet coverage``: a model can score a vehicle as of
day D when the vehicle sent at least one reading of **every required signal** of the model
(:mod:`pipeline.features.inputs`, stored with the model in the registry; an input made of
alternatives has a reading when any of its signals has one) in the scoring window, the
:data:`WINDOW_DAYS` days up to the end of D. A vehicle that misses one is not scored by that
model: its score would be the training median of the features that signal
feeds, not a statement about the vehicle. Missing optional signals are listed too; the model
scores without them and imputes the features they feed.

Everything is computed per fleet in DuckDB and polars (one grouped scan of the window's
telemetry), never in a Python loop over vehicles.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import duckdb
import polars as pl

from pipeline.features.inputs import ModelInputs, alternatives
from pipeline.features.materialised import latest_telemetry_day
from pipeline.ml.registry import stored_inputs

WINDOW_DAYS: Final = 90
"""The scoring window: telemetry read when scoring a day (features need 62 days; a vehicle
silent for longer than this is not scored, its latest features would describe a stale state)."""


@dataclass(frozen=True, slots=True)
class PromotedInputs:
    """A promoted model and the signals it reads."""

    model_id: str
    component: str
    inputs: ModelInputs


@dataclass(frozen=True, slots=True)
class ModelCoverage:
    """Whether one promoted model can score one vehicle, and what the vehicle lacks for it.

    Attributes:
        component: the component the model scores.
        model_id: the promoted model.
        can_score: every required signal has a reading in the window.
        missing_required: required signals with no reading (why it cannot score).
        missing_optional: optional signals with no reading (the model imputes their features).
    """

    component: str
    model_id: str
    can_score: bool
    missing_required: tuple[str, ...]
    missing_optional: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VehicleCoverage:
    """One vehicle against every promoted model."""

    vehicle_id: str
    model: str | None
    models: tuple[ModelCoverage, ...]

    @property
    def can_score(self) -> tuple[str, ...]:
        """The components whose promoted model can score the vehicle."""
        return tuple(m.component for m in self.models if m.can_score)

    def as_json(self) -> dict[str, Any]:
        """Plain JSON values, with the components that can score it."""
        return {"vehicle_id": self.vehicle_id, "model": self.model,
                "can_score": list(self.can_score),
                "models": [{"component": m.component, "model_id": m.model_id,
                            "can_score": m.can_score,
                            "missing_required": list(m.missing_required),
                            "missing_optional": list(m.missing_optional)}
                           for m in self.models]}


@dataclass(frozen=True, slots=True)
class FleetCoverage:
    """Every registered vehicle against every promoted model, as of one day.

    Attributes:
        as_of: the day scored (None: the store holds no telemetry).
        window_days: the scoring window's length.
        models: the promoted models and their inputs, by component.
        vehicles: one entry per vehicle in the register, by vehicle id.
    """

    as_of: dt.date | None
    window_days: int
    models: tuple[PromotedInputs, ...]
    vehicles: tuple[VehicleCoverage, ...]

    def as_json(self) -> dict[str, Any]:
        """Plain JSON values (what ``fleet coverage --json`` prints)."""
        return {"as_of": None if self.as_of is None else self.as_of.isoformat(),
                "window_days": self.window_days,
                "models": [{"component": m.component, "model_id": m.model_id,
                            "required_signals": list(m.inputs.required),
                            "optional_signals": list(m.inputs.optional)}
                           for m in self.models],
                "vehicles": [v.as_json() for v in self.vehicles]}


def scoring_window(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """``(since, until)`` of the telemetry read to score ``day`` (UTC, both included)."""
    until = dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)
    return until - dt.timedelta(days=WINDOW_DAYS), until


def promoted_inputs(con: duckdb.DuckDBPyConnection) -> list[PromotedInputs]:
    """The promoted model of each component with the signals it reads, by component.

    A store opened read-only before migration 015 has no stored signals: they are derived
    from each model's features, as for a model registered before that migration.
    """
    stored = _has_stored_signals(con)
    columns = "required_signals, optional_signals" if stored else "NULL, NULL"
    rows = con.execute(f"SELECT model_id, component, features, {columns} FROM model_registry"
                       " WHERE promoted ORDER BY component").fetchall()
    return [PromotedInputs(m, c, stored_inputs(f, r, o, c)) for m, c, f, r, o in rows]


def _has_stored_signals(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database()"
        " AND table_name = 'model_registry' AND column_name = 'required_signals'").fetchall()
    return bool(rows[0][0])


def signals_seen(con: duckdb.DuckDBPyConnection, since: dt.datetime, until: dt.datetime,
                 signals: Sequence[str], vehicles: tuple[str, str] | None = None
                 ) -> pl.DataFrame:
    """``vehicle_id, signal``: which of ``signals`` each vehicle sent in ``[since, until]``
    (an input of alternatives is looked up signal by signal).

    ``vehicles`` (first, last id, both included) limits it to one chunk of the fleet: over a
    whole fleet the frame has a row per vehicle and required signal, twelve million at a
    million vehicles, so scoring asks chunk by chunk and its memory follows the chunk."""
    schema = {"vehicle_id": pl.String, "signal": pl.String}
    names = sorted({name for s in signals for name in alternatives(s)})
    if not names:
        return pl.DataFrame(schema=schema)
    params: dict[str, object] = {"since": since, "until": until, "signals": names}
    chunk = ""
    if vehicles is not None:
        chunk = " AND vehicle_id >= $first AND vehicle_id <= $last"
        params |= {"first": vehicles[0], "last": vehicles[1]}
    rel = con.sql(
        "SELECT DISTINCT vehicle_id, signal FROM telemetry"
        " WHERE ts <= $until AND ts >= $since AND signal IN (SELECT unnest($signals))" + chunk,
        params=params)
    return rel.pl().cast(schema)


def missing_signals(vehicles: pl.Series, seen: pl.DataFrame,
                    signals: Sequence[str]) -> pl.DataFrame:
    """``vehicle_id, missing``: per vehicle (each once), the inputs among ``signals`` it sent
    no reading of, sorted (an empty list when it sent them all); an input of alternatives is
    missing when none of its signals was sent."""
    ids = pl.DataFrame({"vehicle_id": vehicles.cast(pl.String)}).unique()
    inputs = sorted(set(signals))
    wanted = pl.DataFrame({"input": inputs, "signal": [list(alternatives(i)) for i in inputs]},
                          schema={"input": pl.String, "signal": pl.List(pl.String)})
    met = (wanted.explode("signal").join(seen, on="signal", how="inner")
           .select("vehicle_id", "input").unique())
    gaps = (ids.join(wanted.select("input"), how="cross")
            .join(met, on=["vehicle_id", "input"], how="anti")
            .group_by("vehicle_id").agg(pl.col("input").sort().alias("missing")))
    return (ids.join(gaps, on="vehicle_id", how="left")
            .with_columns(pl.col("missing").fill_null(pl.lit([], dtype=pl.List(pl.String))))
            .sort("vehicle_id"))


def fleet_coverage(con: duckdb.DuckDBPyConnection, *, as_of: dt.date | None = None,
                   vehicle_ids: Sequence[str] | None = None) -> FleetCoverage:
    """Which promoted model can score each vehicle in the register as of ``as_of``.

    Args:
        con: an open store (the one-file store, or the serving store with the landing
            snapshot behind its views).
        as_of: the day (default: the newest telemetry day, what scoring defaults to).
        vehicle_ids: only these vehicles, whether in the register or not (default: every
            vehicle in the register).
    """
    day = as_of or latest_telemetry_day(con)
    models = promoted_inputs(con)
    register = _register(con, vehicle_ids)
    signals = sorted({s for m in models for s in m.inputs.signals})
    if day is None:
        seen = pl.DataFrame(schema={"vehicle_id": pl.String, "signal": pl.String})
    else:
        since, until = scoring_window(day)
        seen = signals_seen(con, since, until, signals)
    missing = missing_signals(register["vehicle_id"], seen, signals)
    gaps = dict(zip(missing["vehicle_id"].to_list(), missing["missing"].to_list(), strict=True))
    vehicles = tuple(
        VehicleCoverage(v, model, tuple(_model_coverage(m, set(gaps[v])) for m in models))
        for v, model in register.iter_rows())
    return FleetCoverage(day, WINDOW_DAYS, tuple(models), vehicles)


def vehicle_coverage(con: duckdb.DuckDBPyConnection, vehicle_id: str, *,
                     as_of: dt.date | None = None) -> VehicleCoverage:
    """Which promoted models can score ``vehicle_id`` (what ``fleet show`` lists)."""
    return fleet_coverage(con, as_of=as_of, vehicle_ids=[vehicle_id]).vehicles[0]


def _model_coverage(model: PromotedInputs, gaps: set[str]) -> ModelCoverage:
    required = tuple(s for s in model.inputs.required if s in gaps)
    optional = tuple(s for s in model.inputs.optional if s in gaps)
    return ModelCoverage(model.component, model.model_id, not required, required, optional)


def _register(con: duckdb.DuckDBPyConnection, vehicle_ids: Sequence[str] | None
              ) -> pl.DataFrame:
    """``vehicle_id, model`` of the register (or of ``vehicle_ids``), by vehicle id."""
    schema = {"vehicle_id": pl.String, "model": pl.String}
    if vehicle_ids is None:
        rows = con.execute("SELECT vehicle_id, model FROM vehicles ORDER BY vehicle_id").fetchall()
    else:
        rows = con.execute(
            "SELECT w.vehicle_id, v.model FROM (SELECT DISTINCT unnest(?::VARCHAR[]) AS"
            " vehicle_id) w LEFT JOIN vehicles v USING (vehicle_id) ORDER BY w.vehicle_id",
            [list(vehicle_ids)]).fetchall()
    return pl.DataFrame(rows, schema=schema, orient="row")

"""The model registry: skops artifacts with their metadata, and promotion by the hold-out.

Every trained model is stored, promoted or not, with what a data engineer needs to trust or
reproduce it: the data window, the features and the telemetry signals they are computed from
(required and optional, :mod:`pipeline.features.inputs`), the vehicles it trained on and the
ones it was judged on, package versions, the code version and its held-out metrics. Scoring
uses the one promoted model per component.

A new model replaces the promoted one only when it beats it on the *same* hold-out: the
candidate's held-out vehicles that the promoted model never trained on either. Lower
misclassification cost wins; equal cost goes to the lower Brier score; a tie keeps the
incumbent. Artifacts are serialised with ``skops.io``, and loading accepts only the types in
:data:`TRUSTED_TYPES`, so a tampered row cannot run code.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Final

import duckdb
import skops.io as sio

from models import FaultWarningClassifier
from pipeline.errors import TerminalPipelineError
from pipeline.features.inputs import ModelInputs, model_inputs
from pipeline.store.connection import transaction

TRUSTED_TYPES: Final = (
    "models._boosted.BoostedWarningClassifier",
    "models._fault_warning.FaultWarningClassifier",
    "models._no_start.NoStartRiskClassifier",
    "models._no_start._append_margin",
    "models._transforms.SignedLog1p",
    "numpy.dtype",
)
"""Types beyond skops' defaults that a registry artifact may contain. The boosted model is
stored as its own fields plus LightGBM's text format of the booster (a string parsed on
loading), so no LightGBM type needs trusting: a tampered booster text can fail to parse or
predict nonsense, but it cannot name code to run."""


class UntrustedArtifactError(TerminalPipelineError):
    """A registry artifact holds types outside :data:`TRUSTED_TYPES`; it is not loaded."""


class UnknownModelError(TerminalPipelineError):
    """No model with that id is in the registry."""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One registry row without its artifact bytes (what ``models list``/``show`` print)."""

    model_id: str
    component: str
    created_at: dt.datetime
    promoted: bool
    estimator: str | None
    features: list[str]
    metrics: dict[str, Any]
    data_from: dt.date | None
    data_to: dt.date | None
    train_vehicles: list[str]
    holdout_vehicles: list[str]
    package_versions: dict[str, Any]
    code_version: str | None
    promoted_at: dt.datetime | None
    promotion: dict[str, Any] | None
    required_signals: list[str]
    optional_signals: list[str]


@dataclass(frozen=True, slots=True)
class NewModel:
    """What :func:`save_model` stores besides the artifact."""

    model_id: str
    component: str
    features: list[str]
    metrics: dict[str, Any]
    data_window: tuple[dt.date | None, dt.date | None]
    train_vehicles: list[str]
    holdout_vehicles: list[str]
    package_versions: dict[str, str]
    code_version: str


_COLUMNS: Final = (
    "model_id, component, created_at, promoted, estimator, features, metrics, data_from,"
    " data_to, train_vehicles, holdout_vehicles, package_versions, code_version, promoted_at,"
    " promotion, required_signals, optional_signals")


def _entry(row: tuple[Any, ...]) -> ModelEntry:
    def js(v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v

    inputs = stored_inputs(row[5], row[15], row[16], row[1])
    return ModelEntry(row[0], row[1], row[2], bool(row[3]), row[4], list(row[5] or []),
                      js(row[6]) or {}, row[7], row[8], list(row[9] or []), list(row[10] or []),
                      js(row[11]) or {}, row[12], row[13], js(row[14]), list(inputs.required),
                      list(inputs.optional))


def stored_inputs(features: list[str] | None, required: list[str] | None,
                  optional: list[str] | None, component: str | None = None) -> ModelInputs:
    """A registry row's input signals: as stored, or for a model registered before they were
    stored (NULL), derived from its features (and component) with today's declaration."""
    if required is None:
        return model_inputs(list(features or []), component)
    return ModelInputs(tuple(required), tuple(optional or ()))


def _first(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]
           ) -> tuple[Any, ...] | None:
    """The first row of a query, reading the result to its end (DuckDB wants it finished)."""
    rows = con.execute(sql, params).fetchall()
    return rows[0] if rows else None


def list_models(con: duckdb.DuckDBPyConnection, component: str | None = None
                ) -> list[ModelEntry]:
    """Every registered model (of ``component``), newest first."""
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM model_registry WHERE ? IS NULL OR component = ?"
        " ORDER BY created_at DESC, model_id DESC", [component, component]).fetchall()
    return [_entry(r) for r in rows]


def get_model(con: duckdb.DuckDBPyConnection, model_id: str) -> ModelEntry:
    """One registry entry.

    Raises:
        UnknownModelError: no such model id.
    """
    row = _first(con, f"SELECT {_COLUMNS} FROM model_registry WHERE model_id = ?", [model_id])
    if row is None:
        raise UnknownModelError(f"no model {model_id!r} in the registry (see `models list`)")
    return _entry(row)


def promoted_model(con: duckdb.DuckDBPyConnection, component: str) -> ModelEntry | None:
    """The model that scores ``component`` now (None before the first training)."""
    row = _first(con, f"SELECT {_COLUMNS} FROM model_registry WHERE promoted"
                 " AND component = ?", [component])
    return _entry(row) if row else None


def load_artifact(con: duckdb.DuckDBPyConnection, model_id: str) -> FaultWarningClassifier:
    """The fitted estimator of ``model_id`` (refusing untrusted types)."""
    row = _first(con, "SELECT artifact FROM model_registry WHERE model_id = ?", [model_id])
    if row is None:
        raise UnknownModelError(f"no model {model_id!r} in the registry (see `models list`)")
    return load_model(row[0])


def save_model(con: duckdb.DuckDBPyConnection, new: NewModel,
               model: FaultWarningClassifier) -> None:
    """Store a model, not promoted (see :func:`set_promoted`), with the signals its features
    read (:func:`pipeline.features.inputs.model_inputs`), so that a later change of the
    declaration does not change what this model needs."""
    inputs = model_inputs(new.features, new.component)
    con.execute(
        "INSERT INTO model_registry (model_id, component, created_at, features, metrics,"
        " artifact, promoted, estimator, data_from, data_to, train_vehicles, holdout_vehicles,"
        " package_versions, code_version, required_signals, optional_signals)"
        " VALUES (?, ?, now(), ?, ?, ?, false, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [new.model_id, new.component, new.features, json.dumps(new.metrics), sio.dumps(model),
         type(model).__name__, *new.data_window, new.train_vehicles, new.holdout_vehicles,
         json.dumps(new.package_versions), new.code_version, list(inputs.required),
         list(inputs.optional)])


def set_promoted(con: duckdb.DuckDBPyConnection, model_id: str,
                 promotion: dict[str, Any]) -> None:
    """Make ``model_id`` its component's only promoted model, recording why, atomically."""
    entry = get_model(con, model_id)
    with transaction(con):
        con.execute("UPDATE model_registry SET promoted = false WHERE component = ? AND promoted",
                    [entry.component])
        con.execute("UPDATE model_registry SET promoted = true, promoted_at = now(),"
                    " promotion = ? WHERE model_id = ?", [json.dumps(promotion), model_id])


def beats(candidate: dict[str, Any], incumbent: dict[str, Any]) -> bool:
    """Does the candidate's report on the shared hold-out beat the incumbent's?

    Lower cost wins; at equal cost a Brier score lower by more than 0.1 % (not rounding
    noise) wins; anything else keeps the incumbent.
    """
    if candidate["cost"] != incumbent["cost"]:
        return bool(candidate["cost"] < incumbent["cost"])
    return bool(candidate["brier"] < incumbent["brier"] * (1.0 - 1e-3))


def load_model(artifact: bytes) -> FaultWarningClassifier:
    """Deserialise a registry artifact, refusing any type outside :data:`TRUSTED_TYPES`.

    Raises:
        UntrustedArtifactError: the artifact holds a type we did not put there.
    """
    untrusted = sio.get_untrusted_types(data=artifact)
    unknown = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if unknown:
        raise UntrustedArtifactError(f"model artifact holds untrusted types {unknown}")
    model = sio.loads(artifact, trusted=list(untrusted))
    if not isinstance(model, FaultWarningClassifier):
        raise UntrustedArtifactError(f"artifact is a {type(model).__name__}, not a model")
    return model

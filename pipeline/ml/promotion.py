"""Promote a model only on evidence: enough failures it never saw, and a win on them.

A component's first model is promoted when its own hold-out holds at least
:data:`~pipeline.ml.events.MIN_EVIDENCE_FAILURES` failures of the component; with fewer it is
registered, not promoted, and says so. A later model must beat the promoted one on the same
hold-out: the candidate's held-out vehicles minus every vehicle the incumbent trained on,
rows neither model has seen, labelled from today's store. That shared hold-out must hold as
many failures too. Both are judged by their calls (:mod:`pipeline.ml.events`) at their own
thresholds and the candidate's costs: a false onset costs ``cost_fp``, a failure not warned a
day ahead ``cost_fn``; equal cost goes to the lower Brier score. Both are judged at the
candidate's horizon, the promise the product makes now: after a horizon change the incumbent,
tuned for its old horizon, is held to the new one.
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl

from models import FaultWarningClassifier
from models.evaluate import classification_report
from models.warnings import WarningFigures
from pipeline.features.daily import attach_labels, build_daily_features, label_column
from pipeline.features.labels import horizons
from pipeline.ml import registry
from pipeline.ml.events import MIN_EVIDENCE_FAILURES, held_out_events, life_events


def first_model_decision(component: str, failures: int) -> dict[str, Any]:
    """Whether a component's first model may be promoted on ``failures`` in its hold-out."""
    if failures >= MIN_EVIDENCE_FAILURES:
        return {"promoted": True, "reason": f"first model of the component, judged on "
                                            f"{failures} failures among its held-out vehicles"}
    return {"promoted": False, "evidence_failures": failures,
            "reason": f"registered, not promoted: its held-out vehicles hold {failures} "
                      f"{component} failure(s) and promotion needs at least "
                      f"{MIN_EVIDENCE_FAILURES} (train on more vehicles or a longer history, "
                      "or promote it by hand: fleetcare models promote --force)"}


def _report(model: FaultWarningClassifier, rows: pl.DataFrame, features: list[str],
            label: str, costs: tuple[float, float], events: WarningFigures) -> dict[str, Any]:
    """The row-wise report with the calls' cost in place of the rows' (and the calls)."""
    X = rows.select(pl.col(features).cast(pl.Float64))
    proba = model.predict_proba(X)[:, 1]
    rowwise = classification_report(rows[label].to_numpy().astype(bool), proba,
                                    model.threshold_, *costs)
    return {**rowwise, "row_cost": rowwise["cost"], "cost": events.cost(*costs),
            "events": events.as_json(), "onsets": events.counts()}


def compare_on_shared_holdout(
    con: duckdb.DuckDBPyConnection, candidate_holdout: list[str], candidate_features: list[str],
    candidate: FaultWarningClassifier, incumbent: registry.ModelEntry, rows: pl.DataFrame,
    horizon_days: int,
) -> dict[str, Any]:
    """Whether the candidate beats ``incumbent`` on the shared hold-out, and the evidence.

    ``rows`` are the component's labelled feature rows. Returns a JSON-ready dict with
    ``promoted``, ``reason``, ``against`` and, when compared, ``shared_vehicles``,
    ``shared_failures`` and both ``candidate``/``incumbent`` reports.
    """
    base: dict[str, Any] = {"against": incumbent.model_id}
    if not incumbent.train_vehicles:
        return {**base, "promoted": True,
                "reason": "the promoted model has no recorded split (registered before "
                          "migration 005), so nothing is unseen by it"}
    missing = sorted(set(incumbent.features) - set(rows.columns))
    if missing:
        return {**base, "promoted": True,
                "reason": f"the promoted model's features are no longer built: {missing}"}
    shared = sorted(set(candidate_holdout) - set(incumbent.train_vehicles))
    label = label_column(incumbent.component)
    sel = rows.filter(pl.col("vehicle_id").is_in(shared) & pl.col(label).is_not_null())
    events = life_events(con, incumbent.component)
    cand_events = held_out_events(candidate, sel, candidate_features, events, horizon_days)
    failures = cand_events.failures
    if failures < MIN_EVIDENCE_FAILURES:
        return {**base, "promoted": False, "shared_vehicles": len(shared),
                "shared_failures": failures,
                "reason": f"{failures} failure(s) among the {len(shared)} held-out vehicles "
                          f"unseen by both models, and telling them apart needs at least "
                          f"{MIN_EVIDENCE_FAILURES}; kept the promoted one"}
    costs = (float(candidate.cost_fp), float(candidate.cost_fn))
    old = registry.load_artifact(con, incumbent.model_id)
    cand = _report(candidate, sel, candidate_features, label, costs, cand_events)
    inc = _report(old, sel, incumbent.features, label, costs,
                  held_out_events(old, sel, incumbent.features, events, horizon_days))
    won = registry.beats(cand, inc)
    verdict = "beats" if won else "does not beat"
    return {**base, "promoted": won, "shared_vehicles": len(shared),
            "shared_failures": failures, "candidate": cand, "incumbent": inc,
            "reason": f"{verdict} the promoted model on {len(shared)} shared held-out vehicles "
                      f"with {failures} failures (cost of its calls {cand['cost']:g} vs "
                      f"{inc['cost']:g}, Brier {cand['brier']:.4f} vs {inc['brier']:.4f})"}


def promote(con: duckdb.DuckDBPyConnection, model_id: str, *, force: bool = False
            ) -> dict[str, Any]:
    """Promote a registered model if it beats the promoted one, or, with none promoted, if
    its hold-out held enough failures (or when ``force``d, whatever the evidence).

    Returns:
        The decision, as stored in ``model_registry.promotion`` when it promotes.
    """
    entry = registry.get_model(con, model_id)
    incumbent = registry.promoted_model(con, entry.component)
    if entry.promoted:
        return {"promoted": True, "reason": "already the promoted model"}
    horizon = int(entry.metrics.get("horizon_days", horizons()[entry.component]))
    if force:
        decision = {"promoted": True, "against": incumbent.model_id if incumbent else None,
                    "reason": "forced by an operator"}
    elif incumbent is None:
        held = entry.metrics.get("events") or {}
        decision = first_model_decision(entry.component, int(held.get("failures", 0)))
    else:
        labelled = attach_labels(build_daily_features(con), con, {entry.component: horizon})
        decision = compare_on_shared_holdout(
            con, entry.holdout_vehicles, entry.features, registry.load_artifact(con, model_id),
            incumbent, labelled, horizon)
    if decision["promoted"]:
        registry.set_promoted(con, model_id, decision)
    return decision

"""Promote a model only when it beats the promoted one on the same hold-out.

"The same hold-out" is the candidate's held-out vehicles minus every vehicle the incumbent
trained on: rows neither model has seen, labelled from today's store, so both are judged on
identical evidence at their own thresholds and the candidate's costs.
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl

from models import FaultWarningClassifier
from models.evaluate import classification_report
from pipeline.features.daily import attach_labels, build_daily_features, label_column
from pipeline.ml import registry


def _report(model: FaultWarningClassifier, rows: pl.DataFrame, features: list[str],
            label: str, costs: tuple[float, float]) -> dict[str, Any]:
    X = rows.select(pl.col(features).cast(pl.Float64))
    proba = model.predict_proba(X)[:, 1]
    return classification_report(rows[label].to_numpy().astype(bool), proba,
                                 model.threshold_, *costs)


def compare_on_shared_holdout(
    con: duckdb.DuckDBPyConnection, candidate_holdout: list[str], candidate_features: list[str],
    candidate: FaultWarningClassifier, incumbent: registry.ModelEntry, rows: pl.DataFrame,
) -> dict[str, Any]:
    """Whether the candidate beats ``incumbent`` on the shared hold-out, and the evidence.

    ``rows`` are the component's labelled feature rows. Returns a JSON-ready dict with
    ``promoted``, ``reason``, ``against`` and, when compared, ``shared_vehicles`` and both
    ``candidate``/``incumbent`` reports.
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
    if sel.is_empty() or not sel[label].any():
        return {**base, "promoted": False, "shared_vehicles": len(shared),
                "reason": "no failure among the held-out vehicles unseen by both models, so "
                          "they cannot be told apart; kept the promoted one"}
    costs = (float(candidate.cost_fp), float(candidate.cost_fn))
    old = registry.load_artifact(con, incumbent.model_id)
    cand = _report(candidate, sel, candidate_features, label, costs)
    inc = _report(old, sel, incumbent.features, label, costs)
    won = registry.beats(cand, inc)
    verdict = "beats" if won else "does not beat"
    return {**base, "promoted": won, "shared_vehicles": len(shared), "candidate": cand,
            "incumbent": inc,
            "reason": f"{verdict} the promoted model on {len(shared)} shared held-out vehicles "
                      f"(cost {cand['cost']:g} vs {inc['cost']:g}, "
                      f"Brier {cand['brier']:.4f} vs {inc['brier']:.4f})"}


def promote(con: duckdb.DuckDBPyConnection, model_id: str, *, force: bool = False
            ) -> dict[str, Any]:
    """Promote a registered model if it beats the promoted one (or when ``force``d).

    Returns:
        The decision, as stored in ``model_registry.promotion`` when it promotes.
    """
    entry = registry.get_model(con, model_id)
    incumbent = registry.promoted_model(con, entry.component)
    if entry.promoted:
        return {"promoted": True, "reason": "already the promoted model"}
    if incumbent is None or force:
        decision = {"promoted": True, "against": incumbent.model_id if incumbent else None,
                    "reason": "forced by an operator" if force else "no promoted model yet"}
    else:
        horizon = int(entry.metrics.get("horizon_days", 30))
        labelled = attach_labels(build_daily_features(con), con, horizon)
        decision = compare_on_shared_holdout(
            con, entry.holdout_vehicles, entry.features, registry.load_artifact(con, model_id),
            incumbent, labelled)
    if decision["promoted"]:
        registry.set_promoted(con, model_id, decision)
    return decision

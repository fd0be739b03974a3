"""The maintenance flow: features → train → score → advise → deliver, on one DuckDB file.

This is the one-file mode the demo and the end-to-end test use: ingest is stopped before the
flow runs, so the flow may open the landing store itself. The scheduled deployments
(``fleetcare flows serve``) use the serving store instead (:mod:`flows.scheduled.common`).

Each task is a thin shell: it opens the store, calls one plain function of ``pipeline``, and
returns that function's record. All tasks run in this one process and one at a time, so the
DuckDB file has one writer. Only transient errors are retried; a terminal error fails the run
with the function's own message.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prefect import flow, task

from flows.scheduled.common import RETRIES, STORE_TAG
from pipeline.config import load_pipeline_settings
from pipeline.crm import outbox
from pipeline.leads import advice
from pipeline.ml import scoring, training
from pipeline.store import connection as store

__all__ = ["STORE_TAG", "maintenance_flow"]


@task(tags=[STORE_TAG])
def train(db_path: str, horizon_days: int | None, seed: int) -> list[dict[str, Any]]:
    """Fit, evaluate on held-out vehicles and register one model per component (``horizon_days``
    None: each component's own horizon, :data:`pipeline.features.labels.HORIZON_DAYS`)."""
    with store.connect(db_path) as con:
        reports = training.train_and_register(con, horizon_days=horizon_days, seed=seed)
    return [dataclasses.asdict(r) for r in reports]


@task(tags=[STORE_TAG])
def score(db_path: str) -> dict[str, Any]:
    """Score every vehicle's latest day with the promoted models; the report names the
    vehicles each model skipped for want of its required signals."""
    with store.connect(db_path) as con:
        return dataclasses.asdict(scoring.score_fleet(con))


@task(tags=[STORE_TAG])
def advise(db_path: str) -> dict[str, Any]:
    """Turn scores and fault codes into deduplicated leads and outbox rows."""
    with store.connect(db_path) as con:
        return dataclasses.asdict(advice.advise(con))


@task(tags=[STORE_TAG], **RETRIES)
def deliver(db_path: str, crm_url: str) -> dict[str, Any]:
    """Send due outbox rows to the CRM as signed webhooks."""
    secret = load_pipeline_settings().crm_secret.get_secret_value()
    with store.connect(db_path) as con:
        return dataclasses.asdict(outbox.deliver_outbox(con, url=crm_url, secret=secret))


@flow(name="maintenance", log_prints=False)
def maintenance_flow(db_path: str, crm_url: str, horizon_days: int | None = None,
                     seed: int = 0) -> dict[str, Any]:
    """Train on what landed, score the fleet, advise and deliver leads to the CRM.

    The CRM signing secret comes from ``FLEETCARE_PIPELINE__CRM_SECRET`` (never a parameter,
    so it is not stored with the run).
    """
    models = train(db_path, horizon_days, seed)
    scoring_report = score(db_path)
    leads = advise(db_path)
    delivered = deliver(db_path, crm_url)
    return {"models": models, "scored": scoring_report["rows"], "scoring": scoring_report,
            "advice": leads, "delivery": delivered}

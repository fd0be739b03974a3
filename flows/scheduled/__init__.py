"""The scheduled Prefect flows and their deployments: thin shells over :mod:`pipeline`
functions. Nothing here may import :mod:`pipeline.sandbox` (import-linter checks it).
"""

from flows.scheduled.campaigns import campaigns_flow
from flows.scheduled.common import RETRIES, STORE_TAG
from flows.scheduled.config import load_flow_settings
from flows.scheduled.delivery import deliver_leads_flow
from flows.scheduled.deployments import (
    SCHEDULES,
    build_deployments,
    ensure_writer_limit,
    flow_parameters,
    serve_all,
)
from flows.scheduled.export import export_cold_flow
from flows.scheduled.features import backfill_flow, features_flow
from flows.scheduled.health import UNHEALTHY_EVENT, health_flow
from flows.scheduled.partitioned import on_dask
from flows.scheduled.score import score_and_advise_flow
from flows.scheduled.train import train_flow

__all__ = [
    "RETRIES",
    "SCHEDULES",
    "STORE_TAG",
    "UNHEALTHY_EVENT",
    "backfill_flow",
    "build_deployments",
    "campaigns_flow",
    "deliver_leads_flow",
    "ensure_writer_limit",
    "export_cold_flow",
    "features_flow",
    "flow_parameters",
    "health_flow",
    "load_flow_settings",
    "on_dask",
    "score_and_advise_flow",
    "serve_all",
    "train_flow",
]

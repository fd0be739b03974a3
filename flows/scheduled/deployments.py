"""Every scheduled flow as a deployment, and ``serve`` for all of them.

One table (:data:`SCHEDULES`) says which flow runs when; :func:`flow_parameters` fills in
where the stores are (from :class:`flows.scheduled.config.FlowSettings`), so
``fleetcare flows serve`` and ``fleetcare flows run NAME`` run the same flows with the same
parameters. Serving first creates the ``duckdb-writer`` concurrency limit (1), so tasks of
overlapping flow runs take turns on the serving store, and bounds the flow runs in progress
at once by ``PREFECT_RUNNER_PROCESS_LIMIT``. The schedules only fire where the Prefect server's
scheduler service works: pyproject.toml pins the SQLAlchemy it needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from prefect import Flow, serve
from prefect.client.orchestration import get_client
from prefect.settings import get_current_settings

from flows.scheduled.campaigns import campaigns_flow
from flows.scheduled.common import STORE_TAG
from flows.scheduled.config import FlowSettings
from flows.scheduled.delivery import deliver_leads_flow
from flows.scheduled.export import export_cold_flow
from flows.scheduled.features import backfill_flow, features_flow
from flows.scheduled.health import health_flow
from flows.scheduled.score import score_and_advise_flow
from flows.scheduled.train import train_flow


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a flow runs: a cron line, an interval in seconds, or only on demand."""

    flow: Flow[Any, Any]
    cron: str | None = None
    interval_s: float | None = None
    description: str = ""


SCHEDULES: Final[dict[str, Schedule]] = {
    "features": Schedule(features_flow, cron="30 1 * * *", description="daily, 01:30"),
    "train": Schedule(train_flow, cron="0 3 * * 0", description="weekly, Sunday 03:00"),
    "score_and_advise": Schedule(score_and_advise_flow, cron="5 * * * *",
                                 description="hourly, at :05"),
    "deliver_leads": Schedule(deliver_leads_flow, interval_s=60, description="every minute"),
    "export_cold": Schedule(export_cold_flow, cron="0 2 * * *",
                            description="nightly 02:00, only with ingest stopped"),
    "campaigns": Schedule(campaigns_flow, cron="0 7 * * *", description="daily, 07:00"),
    "health": Schedule(health_flow, interval_s=300, description="every five minutes"),
    "backfill": Schedule(backfill_flow, description="on demand (start, end)"),
}
"""Deployment name → flow and schedule (UTC)."""


def flow_parameters(name: str, settings: FlowSettings, crm_url: str) -> dict[str, Any]:
    """The parameters deployment ``name`` runs with, from ``settings``."""
    stores: dict[str, Any] = {"serving_path": str(settings.serving_path),
                              "snapshot_path": settings.snapshot_param}
    exports = str(settings.export_dir) if settings.export_dir else None
    if name == "export_cold":
        if exports is None:
            raise ValueError("export_cold needs an export folder: --export-dir or "
                             "FLEETCARE_FLOWS__EXPORT_DIR")
        if isinstance(settings.snapshot_path, list):
            raise ValueError("export_cold works on one landing store and rewrites its one "
                             "snapshot: run it once per ingest worker, each with that "
                             "worker's --landing and --snapshot")
        return {"landing_path": str(settings.landing_path), "export_dir": exports,
                "snapshot_path": str(settings.snapshot_path)}
    if name == "deliver_leads":
        inbox = str(settings.inbox_path) if settings.inbox_path else None
        return {**stores, "crm_url": crm_url, "inbox_path": inbox}
    params = {**stores, "export_dir": exports}
    if name in ("features", "score_and_advise"):
        params["buckets"] = settings.buckets
    if name == "health":
        params["check_broker"] = True  # the broker's drop counter, with the settings' login
    return params


def build_deployments(settings: FlowSettings, crm_url: str,
                      names: tuple[str, ...] | None = None,
                      interval_s: float | None = None) -> list[Any]:
    """Runner deployments for ``names`` (default: every flow but ``export_cold``, which only
    works while ingest is stopped; ``backfill`` has no schedule and takes its dates per run).

    ``interval_s`` replaces the schedule of every scheduled deployment with that interval, so
    a schedule can be watched firing within seconds (trying a deployment out, or the test that
    Prefect's scheduler works); on-demand deployments stay on demand, since they need
    parameters per run.

    Raises:
        ValueError: ``interval_s`` is not a positive number of seconds, or ``export_cold`` is
            chosen without an export folder.
    """
    if interval_s is not None and not (math.isfinite(interval_s) and interval_s > 0):
        raise ValueError(f"a schedule interval must be a positive number of seconds, "
                         f"not {interval_s!r}")
    chosen = names or tuple(n for n in SCHEDULES if n != "export_cold")
    deployments = []
    for name in chosen:
        schedule = SCHEDULES[name]
        cron, interval = schedule.cron, schedule.interval_s
        description = schedule.description
        if interval_s is not None and (cron or interval):
            cron, interval = None, interval_s
            description = f"every {interval_s:g} s (overridden; normally {description})"
        deployments.append(schedule.flow.to_deployment(
            name=name, cron=cron, interval=interval,
            parameters=flow_parameters(name, settings, crm_url),
            tags=["fleetcare"], description=description))
    return deployments


def ensure_writer_limit(limit: int = 1) -> int:
    """Create (or reset) the tag concurrency limit on :data:`STORE_TAG`; returns the limit."""
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=STORE_TAG, concurrency_limit=limit)
        return int(client.read_concurrency_limit_by_tag(STORE_TAG).concurrency_limit)


def serve_all(settings: FlowSettings, crm_url: str,
              names: tuple[str, ...] | None = None,
              interval_s: float | None = None) -> None:
    """Serve the deployments on the configured Prefect API until interrupted (``interval_s``:
    see :func:`build_deployments`).

    At most ``PREFECT_RUNNER_PROCESS_LIMIT`` flow runs (default 5) run at once: ``serve``
    itself would start a process for every due run, and after an outage, or on a schedule
    shorter than a run, those pile up until the machine thrashes (each run is a Python
    process importing the whole backend). Runs beyond the limit wait, late, for a free slot.
    """
    deployments = build_deployments(settings, crm_url, names, interval_s)
    ensure_writer_limit()
    serve(*deployments, limit=get_current_settings().runner.process_limit)

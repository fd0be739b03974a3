"""``health`` (every five minutes): are the long-running services healthy?

Edge agents and ingest are services, not flows, so this flow watches what they leave in the
store (:mod:`pipeline.ops.health`: heartbeat age, ingest lag and snapshot age, dead-letter
growth, outbox backlog). For every unhealthy check it emits a Prefect event
(``fleetcare.health.unhealthy``, resource ``fleetcare.health.<check>``, for automations and
notifications) and then fails the run with one message naming each problem and its threshold.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Final

from prefect import flow, task
from prefect.events import emit_event

from flows.scheduled.common import RETRIES, STORE_TAG, serving_store
from pipeline.ops.health import Check, HealthReport, Thresholds, check_health, record_health

UNHEALTHY_EVENT: Final = "fleetcare.health.unhealthy"


class ServiceUnhealthyError(RuntimeError):
    """At least one service is unhealthy; the message names each problem."""


@task(tags=[STORE_TAG], **RETRIES)
def run_checks(serving_path: str, snapshot_path: str, export_dir: str | None,
               thresholds: Thresholds, now: dt.datetime | None) -> HealthReport:
    """Measure every service and record the result (the next run's baseline)."""
    with serving_store(serving_path, snapshot_path, export_dir) as con:
        report = check_health(con, now=now, snapshot_path=snapshot_path, thresholds=thresholds)
        record_health(con, report)
    return report


def _resource(check: Check) -> dict[str, str]:
    return {"prefect.resource.id": f"fleetcare.health.{check.name}",
            "prefect.resource.name": check.name}


@task
def raise_alarms(report: HealthReport) -> list[str]:
    """One Prefect event per unhealthy check; returns the events' ids."""
    ids = []
    for check in report.unhealthy:
        event = emit_event(UNHEALTHY_EVENT, resource=_resource(check), occurred=report.checked_at,
                           payload={"message": check.message, "value": check.value,
                                    "threshold": check.threshold, "detail": check.detail})
        if event is not None:
            ids.append(str(event.id))
    return ids


@flow(name="health")
def health_flow(serving_path: str, snapshot_path: str, export_dir: str | None = None,
                thresholds: Thresholds | None = None,
                now: dt.datetime | None = None) -> dict[str, Any]:
    """Check, record, alarm; fails the run when a service is unhealthy.

    Raises:
        ServiceUnhealthyError: names every unhealthy check with its value and threshold.
    """
    report = run_checks(serving_path, snapshot_path, export_dir, thresholds or Thresholds(),
                        now)
    if report.unhealthy:
        raise_alarms(report)
        raise ServiceUnhealthyError(f"unhealthy: {report.summary()}")
    return {"checks": [dataclasses.asdict(c) for c in report.checks]}

"""``health`` (every five minutes): are the long-running services healthy?

Edge agents and ingest are services, not flows, so this flow watches what they leave in the
store (:mod:`pipeline.ops.health`: heartbeat age, ingest lag and snapshot age, dead-letter
growth, outbox backlog) and, with ``check_broker`` (as deployed), the broker's own count of
messages it acknowledged and dropped, read from its ``$SYS`` topics at
``FLEETCARE_PIPELINE__BROKER_URL`` with the backend's login from the same settings (on the
mutual-TLS broker: a ``fleetcare-monitor`` certificate, never ingest's). For every unhealthy
check it emits a Prefect event
(``fleetcare.health.unhealthy``, resource ``fleetcare.health.<check>``, for automations and
notifications) and then fails the run with one message naming each problem and its threshold.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from functools import partial
from typing import Any, Final

from prefect import flow, task
from prefect.events import emit_event

from flows.scheduled.common import RETRIES, STORE_TAG, SnapshotParam, serving_store
from pipeline.broker.counters import BrokerCounters
from pipeline.ops.health import Check, HealthReport, Thresholds, check_health, record_health

UNHEALTHY_EVENT: Final = "fleetcare.health.unhealthy"


class ServiceUnhealthyError(RuntimeError):
    """At least one service is unhealthy; the message names each problem."""


def broker_reader() -> Callable[[], BrokerCounters]:
    """Reads the counters of the broker the pipeline settings name, with their login.

    Secrets stay in the settings (environment or ``*_FILE``), never in flow parameters.
    """
    from pipeline.broker.auth import credentials_from_settings, tls_from_settings
    from pipeline.broker.counters import read_broker_counters
    from pipeline.config import load_pipeline_settings

    settings = load_pipeline_settings()
    return partial(read_broker_counters, settings.broker_url,
                   credentials=credentials_from_settings(settings),
                   tls=tls_from_settings(settings))


@task(tags=[STORE_TAG], **RETRIES)
def run_checks(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None,
               thresholds: Thresholds, now: dt.datetime | None,
               check_broker: bool = False) -> HealthReport:
    """Measure every service and record the result (the next run's baseline)."""
    broker = broker_reader() if check_broker else None
    with serving_store(serving_path, snapshot_path, export_dir) as con:
        report = check_health(con, now=now, snapshot_path=snapshot_path, thresholds=thresholds,
                              broker=broker)
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
def health_flow(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None = None,
                thresholds: Thresholds | None = None,
                now: dt.datetime | None = None, check_broker: bool = False) -> dict[str, Any]:
    """Check, record, alarm; fails the run when a service is unhealthy.

    ``check_broker`` adds the broker's drop counter (the deployment and ``fleetcare flows run
    health`` set it; a direct call leaves the broker alone).

    Raises:
        ServiceUnhealthyError: names every unhealthy check with its value and threshold.
    """
    report = run_checks(serving_path, snapshot_path, export_dir, thresholds or Thresholds(),
                        now, check_broker)
    if report.unhealthy:
        raise_alarms(report)
        raise ServiceUnhealthyError(f"unhealthy: {report.summary()}")
    return {"checks": [dataclasses.asdict(c) for c in report.checks]}

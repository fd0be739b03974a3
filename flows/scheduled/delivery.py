"""``deliver_leads`` (every minute): apply the CRM's status updates, then send due outbox rows.

Status updates come from the durable inbox ``fleetcare crm inbound`` appends to; applying them
is idempotent on ``update_id``. Delivery signs each row (Standard Webhooks) and the CRM
deduplicates on its ``webhook-id``, so a repeated run sends nothing twice; the outbox keeps
its own per-row backoff, and the task is retried only on transient errors.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prefect import flow, task

from flows.scheduled.common import RETRIES, STORE_TAG, SnapshotParam, serving_store
from pipeline.config import load_pipeline_settings
from pipeline.crm import outbox
from pipeline.leads.lifecycle import apply_inbound


@task(tags=[STORE_TAG], **RETRIES)
def apply_status_updates(serving_path: str, snapshot_path: SnapshotParam, inbox_path: str
                         ) -> dict[str, Any]:
    """Apply every status update in the inbox not applied before."""
    with serving_store(serving_path, snapshot_path) as con:
        return dataclasses.asdict(apply_inbound(con, inbox_path))


@task(tags=[STORE_TAG], **RETRIES)
def deliver(serving_path: str, snapshot_path: SnapshotParam, crm_url: str,
            payload_format: str) -> dict[str, Any]:
    """Send due outbox rows; the secret comes from FLEETCARE_PIPELINE__CRM_SECRET."""
    secret = load_pipeline_settings().crm_secret.get_secret_value()
    with serving_store(serving_path, snapshot_path) as con:
        return dataclasses.asdict(outbox.deliver_outbox(
            con, url=crm_url, secret=secret, payload_format=payload_format))


@flow(name="deliver_leads")
def deliver_leads_flow(serving_path: str, snapshot_path: SnapshotParam, crm_url: str,
                       inbox_path: str | None = None,
                       payload_format: str = "json") -> dict[str, Any]:
    """Inbound updates first (a lead the advisor closed is not re-sent), then delivery.

    The signing secret is never a parameter, so it is not stored with the run.
    """
    inbound = (apply_status_updates(serving_path, snapshot_path, inbox_path)
               if inbox_path else None)
    delivered = deliver(serving_path, snapshot_path, crm_url, payload_format)
    return {"inbound": inbound, "delivery": delivered}

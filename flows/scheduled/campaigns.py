"""``campaigns`` (daily): pre-winter 12 V checks, 90-day visit reminders, post-visit follow-ups.

Each campaign records whom it contacted with the outbox row, in one transaction, so a repeated
run contacts nobody twice (:mod:`pipeline.leads.campaigns`); ``deliver_leads`` sends the rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from prefect import flow, task

from flows.scheduled.common import RETRIES, STORE_TAG, SnapshotParam, serving_store
from pipeline.leads import campaigns


@task(tags=[STORE_TAG], **RETRIES)
def run_campaign(name: str, serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None,
                 now: dt.datetime) -> dict[str, Any]:
    """One campaign by name: ``winter``, ``reminders`` or ``follow_ups``."""
    run = {"winter": campaigns.pre_winter_battery_check, "reminders": campaigns.visit_reminders,
           "follow_ups": campaigns.send_follow_ups}[name]
    with serving_store(serving_path, snapshot_path, export_dir) as con:
        return dataclasses.asdict(run(con, now=now))


@flow(name="campaigns")
def campaigns_flow(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None = None,
                   now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Every campaign, in turn (``now`` defaults to the current time)."""
    at = now or dt.datetime.now(dt.UTC)
    return [run_campaign(name, serving_path, snapshot_path, export_dir, at)
            for name in ("winter", "reminders", "follow_ups")]
